//! Root test: the landing page renders in headless Chromium (Debian's
//! `chromium` package) and shows a flow the test created. Leaves a
//! screenshot in target/artifacts/landing-page.png.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::traffic::Pair;
use support::{temp_path, tools, Exporter};

/// Runs headless Chromium with `args` on `url`, killing it after 90 s.
fn headless(binary: &Path, profile: &Path, args: &[&str], url: &str) -> Output {
    let mut child = Command::new(binary)
        .args([
            "--headless",
            // Root cannot use Chromium's sandbox; the page is our own.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_landing_page_shows_our_flow_in_headless_chromium() {
    support::require_root();
    let Some(binary) = tools::chromium() else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let server_port = server.port();
    let exporter = Exporter::start(&[&format!("--filter.port.include={server_port}")]);
    let mut pair = Pair::through(&listener, server);
    pair.exchange(2_500, 3_500);
    let url = format!("http://{}/", exporter.addr);
    let profile = temp_path("chromium-profile");

    let dom = headless(&binary, &profile, &["--dump-dom"], &url);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success() && html.contains("<h1>tcp-flow-exporter</h1>"),
        "chromium could not render the page: {}\n{html}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let row = format!(
        "<td>127.0.0.1</td><td>*</td><td>127.0.0.1</td><td>{server_port}</td><td>client</td>\
         <td class=\"n\">2500</td><td class=\"n\">3500</td>"
    );
    assert!(html.contains(&row), "row {row:?} missing from\n{html}");

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("landing-page.png");
    let _ = std::fs::remove_file(&png);
    let shot = headless(
        &binary,
        &profile,
        &[
            "--window-size=1280,720",
            &format!("--screenshot={}", png.display()),
        ],
        &url,
    );
    let image = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&shot.stderr)
        )
    });
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n") && image.len() > 5_000);
    eprintln!("landing page screenshot: {}", png.display());
    let _ = std::fs::remove_dir_all(&profile);
}
