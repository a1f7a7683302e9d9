//! The HTTP endpoint hardened: the exporter-toolkit web config (TLS with
//! certificates made here by openssl, client certificates, basic auth) as
//! curl, openssl and a real Prometheus see it, certificate rotation, a bad
//! config, and abuse that must not stop a well-behaved scrape: 30,000 idle
//! connections, 1 MiB headers, and a client that stops reading a 100k-flow
//! body. Each abuse test bounds the exporter's memory.

mod support;

#[path = "prometheus/server.rs"]
#[allow(dead_code)]
mod server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use server::Prometheus;
use support::pki::{served_serial, Pki};
use support::traffic::Pair;
use support::{http_get, only_port, probe_under_test, tools, Exporter, BIN};

/// One test at a time: the abuse tests measure the exporter's memory and
/// scrape times on a 2-core machine, and planting finds the newest
/// exporter's flow table.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

const USER: &str = "prometheus";
const PASSWORD: &str = "s3cret pass";
const PATHS: [&str; 5] = ["/metrics", "/", "/api/flows", "/healthz", "/no-such-page"];

/// A web config in the PKI's directory with TLS under `client_auth` and
/// one basic-auth user; file names relative to the config, as in the
/// toolkit's examples.
fn web_config(pki: &Pki, client_auth: &str) -> PathBuf {
    let hash = bcrypt::hash(PASSWORD, 10).unwrap();
    let path = pki.path("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: {client_auth}\n  client_ca_file: ca.crt\n  min_version: TLS12\n\
             basic_auth_users:\n  {USER}: '{hash}'\n"
        ),
    )
    .unwrap();
    path
}

/// What curl got: its exit code, the HTTP status ("000" for none), the
/// response headers.
struct Curl {
    exit: i32,
    status: String,
    headers: String,
}

fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "20",
        ])
        .args(args)
        .output()
        .expect("curl (scripts/install-deps.sh --test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (headers, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status: status.trim().to_owned(),
        headers: headers.to_ascii_lowercase(),
    }
}

/// curl's TLS arguments: the CA, and the client's certificate if `cert`.
fn tls_args(pki: &Pki, cert: Option<&str>) -> Vec<String> {
    let mut args = vec!["--cacert".into(), pki.path("ca.crt").display().to_string()];
    if let Some(name) = cert {
        args.push("--cert".into());
        args.push(pki.path(&format!("{name}.crt")).display().to_string());
        args.push("--key".into());
        args.push(pki.path(&format!("{name}.key")).display().to_string());
    }
    args
}

fn secured_get(pki: &Pki, addr: SocketAddr, path: &str, credentials: Option<&str>) -> Curl {
    let mut args = tls_args(pki, Some("client"));
    if let Some(c) = credentials {
        args.extend(["-u".into(), c.into()]);
    }
    args.push(format!("https://{addr}{path}"));
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn start_secured(pki: &Pki, config: &Path, extra: &[&str]) -> Exporter {
    let probe = format!("--probe={}", probe_under_test());
    let flag = format!("--web.config.file={}", config.display());
    let mut args = vec![probe.as_str(), flag.as_str()];
    args.extend_from_slice(extra);
    let right = format!("{USER}:{PASSWORD}");
    Exporter::start_until(&args, |addr| {
        secured_get(pki, addr, "/healthz", Some(&right)).status == "200"
    })
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_tls_and_basic_auth_guard_every_path() {
    support::require_root();
    let _serial = one_at_a_time();
    let pki = Pki::new();
    let config = web_config(&pki, "RequireAndVerifyClientCert");
    let exporter = start_secured(&pki, &config, &[]);
    let addr = exporter.addr;
    let right = format!("{USER}:{PASSWORD}");
    for path in PATHS {
        for wrong in [None, Some("prometheus:wrong"), Some("nobody:s3cret pass")] {
            let got = secured_get(&pki, addr, path, wrong);
            assert_eq!(got.status, "401", "{path} with {wrong:?}");
            assert!(
                got.headers
                    .contains("www-authenticate: basic realm=\"tcp-flow-exporter\""),
                "{}",
                got.headers
            );
        }
        let want = if path == "/no-such-page" {
            "404"
        } else {
            "200"
        };
        assert_eq!(
            secured_get(&pki, addr, path, Some(&right)).status,
            want,
            "{path}"
        );
    }

    // Plain HTTP to the TLS port gets no HTTP answer at all.
    let plain = curl(&["-u", &right, &format!("http://{addr}/metrics")]);
    assert_ne!(plain.exit, 0);
    assert_eq!(plain.status, "000");
    // No client certificate, or one from a CA the exporter does not trust:
    // refused in the handshake.
    for cert in [None, Some("stranger")] {
        let mut args = tls_args(&pki, cert);
        args.extend([
            "-u".into(),
            right.clone(),
            format!("https://{addr}/metrics"),
        ]);
        let got = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_ne!(got.exit, 0, "{cert:?}");
        assert_eq!(got.status, "000", "{cert:?}");
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_client_certificates_are_optional_under_verify_if_given() {
    support::require_root();
    let _serial = one_at_a_time();
    let pki = Pki::new();
    let config = web_config(&pki, "VerifyClientCertIfGiven");
    let exporter = start_secured(&pki, &config, &[]);
    let right = format!("{USER}:{PASSWORD}");
    let url = format!("https://{}/metrics", exporter.addr);
    let without = tls_args(&pki, None);
    let mut args: Vec<&str> = without.iter().map(String::as_str).collect();
    args.extend(["-u", &right, &url]);
    assert_eq!(curl(&args).status, "200");
    let stranger = tls_args(&pki, Some("stranger"));
    let mut args: Vec<&str> = stranger.iter().map(String::as_str).collect();
    args.extend(["-u", &right, &url]);
    assert_eq!(curl(&args).status, "000");
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_rotated_certificate_is_served_to_new_connections() {
    support::require_root();
    let _serial = one_at_a_time();
    let pki = Pki::new();
    let config = web_config(&pki, "RequireAndVerifyClientCert");
    let exporter = start_secured(&pki, &config, &[]);
    let port = exporter.addr.port();
    assert_eq!(served_serial(&pki, port), "serial=1001");
    pki.rotate_server(0x1002);
    assert_eq!(served_serial(&pki, port), "serial=1002");
    let right = format!("{USER}:{PASSWORD}");
    assert_eq!(
        secured_get(&pki, exporter.addr, "/metrics", Some(&right)).status,
        "200"
    );
    pki.rotate_server(0x1003);
    assert_eq!(served_serial(&pki, port), "serial=1003");
}

/// A bad web config stops the exporter before anything else, so this
/// needs no root.
#[test]
fn bad_web_config_exits_1_naming_the_key() {
    let pki = Pki::new();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let cases = [
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Foo\n",
            "web config tls_server_config.client_auth_type: unknown value \"Foo\" (expected one of ",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
            "web config tls_server_config.cert_file: cannot read ",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n",
            "web config tls_server_config.key_file: does not go with cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
            "web config tls_server_config.cert_file: holds no PEM certificate",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS11\n",
            "web config tls_server_config.min_version: TLS11 is not supported",
        ),
        (
            "basic_auth_users:\n  prometheus: secret\n",
            "web config basic_auth_users.prometheus: not a bcrypt hash",
        ),
        (
            &format!("basic_auth_user:\n  prometheus: '{hash}'\n"),
            "web config (top level): unknown field `basic_auth_user`",
        ),
    ];
    for (text, want) in cases {
        let path = pki.path("bad.yml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .arg(format!("--web.config.file={}", path.display()))
            .arg(format!(
                "--web.listen-address=127.0.0.1:{}",
                support::free_port()
            ))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        let line = stderr.lines().last().unwrap_or_default();
        assert!(
            line.starts_with(&format!("tcp-flow-exporter: error: {want}")),
            "{text}:\n{stderr}"
        );
    }
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_prometheus_scrapes_over_tls_with_basic_auth() {
    support::require_root();
    let _serial = one_at_a_time();
    let Some(binary) = tools::prometheus() else {
        return;
    };
    let pki = Pki::new();
    let config = web_config(&pki, "RequireAndVerifyClientCert");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let exporter = start_secured(&pki, &config, &[&only_port(server.port())]);
    let password_file = pki.path("password");
    std::fs::write(&password_file, PASSWORD).unwrap();
    let job = format!(
        "  - job_name: secured\n    scheme: https\n    tls_config:\n      ca_file: {}\n      \
         cert_file: {}\n      key_file: {}\n    basic_auth:\n      username: {USER}\n      \
         password_file: {}\n    static_configs:\n      - targets: ['{}']\n",
        pki.path("ca.crt").display(),
        pki.path("client.crt").display(),
        pki.path("client.key").display(),
        password_file.display(),
        exporter.addr
    );
    let prometheus = Prometheus::start_jobs(&binary, &job);
    let mut pair = Pair::through(&listener, server);
    pair.exchange(12_345, 54_321);
    prometheus.wait_for(Duration::from_secs(60), "scraping over TLS", || {
        prometheus.value(r#"up{job="secured"}"#) == Some(1)
    });
    let stored = |role: &str, counter: &str| {
        prometheus.value(&format!(
            r#"tcp_flow_{counter}_bytes_total{{job="secured",src_ip="127.0.0.1",role="{role}"}}"#
        ))
    };
    prometheus.wait_for(Duration::from_secs(60), "holding the bytes moved", || {
        stored("client", "received") == Some(54_321)
    });
    assert_eq!(stored("client", "sent"), Some(12_345));
    assert_eq!(stored("server", "received"), Some(12_345));
}

/// VmRSS of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A full scrape, within `limit`, with the body's flow count checked.
fn scrape_ok(exporter: &Exporter, flows: usize, limit: Duration) {
    let started = Instant::now();
    let (status, body) = http_get(exporter.addr, "/metrics", &[]).expect("a scrape");
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(&format!("\ntcp_flow_exporter_flow_series {flows}\n")),
        "the scrape lacks its {flows} flows"
    );
    assert!(elapsed < limit, "a scrape took {elapsed:?}");
}

const MIB: u64 = 1 << 20;

/// Opens `n` connections from `source` to `target` and holds them until
/// stdin closes; prints how many it opened. A process of its own: the
/// per-process file limit (20,000 here) is below what the test holds.
fn holder(source: &str, target: SocketAddr, n: usize) -> std::process::Child {
    let script = "import socket, sys\n\
        src, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])\n\
        held = []\n\
        for _ in range(n):\n\
        \x20   s = socket.socket()\n\
        \x20   s.bind((src, 0))\n\
        \x20   s.connect((host, port))\n\
        \x20   held.append(s)\n\
        print(len(held), flush=True)\n\
        sys.stdin.read()\n";
    Command::new("python3")
        .args(["-c", script, source, &target.ip().to_string()])
        .arg(target.port().to_string())
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/install-deps.sh --test installs it)")
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_thirty_thousand_idle_connections_leave_room_for_a_scrape() {
    support::require_root();
    let _serial = one_at_a_time();
    // Default limits: this is what a new user runs.
    let exporter = Exporter::start(&["--filter.port.include=1"]);
    let pid = exporter.pid();
    scrape_ok(&exporter, 0, Duration::from_secs(5));
    let (rss_before, fds_before) = (rss(pid), open_fds(pid));
    // 2 × 15,000 from two source addresses: each address has ~28,000
    // ephemeral ports, each process 20,000 files.
    let mut holders: Vec<_> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|src| holder(src, exporter.addr, 15_000))
        .collect();
    // Scrapes while the connections pile up, and once all are held.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut during = 0;
    for h in &mut holders {
        let stdout = h.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
            line
        });
        while !reader.is_finished() {
            assert!(Instant::now() < deadline, "the holders did not connect");
            scrape_ok(&exporter, 0, Duration::from_secs(5));
            during += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(reader.join().unwrap().trim(), "15000");
    }
    for _ in 0..10 {
        scrape_ok(&exporter, 0, Duration::from_secs(5));
    }
    let (rss_after, fds_after) = (rss(pid), open_fds(pid));
    eprintln!(
        "30,000 idle connections: {during} scrapes while they opened; RSS {} → {} KiB, \
         open files {fds_before} → {fds_after}",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(fds_after <= fds_before + 512 + 8, "{fds_after} open files");
    assert!(rss_after <= rss_before + 64 * MIB, "RSS {rss_after}");
    assert!(
        !exporter.log().contains("Too many open files"),
        "{}",
        exporter.log()
    );
    for mut h in holders {
        drop(h.stdin.take());
        let _ = h.kill();
        let _ = h.wait();
    }
}

/// Sends a request whose one header is 1 MiB long, and returns the status
/// line if any answer came before the exporter closed the connection.
fn one_mib_header(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.resize(request.len() + (1 << 20), b'a');
    request.extend_from_slice(b"\r\n\r\n");
    // The exporter stops reading long before the end: writing fails then.
    let _ = stream.write_all(&request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().map(str::to_owned)
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_one_mib_headers_are_refused_without_memory_growth() {
    support::require_root();
    let _serial = one_at_a_time();
    let exporter = Exporter::start(&["--filter.port.include=1"]);
    let pid = exporter.pid();
    scrape_ok(&exporter, 0, Duration::from_secs(5));
    let rss_before = rss(pid);
    // 64 clients at once, 64 MiB of headers in all.
    let addr = exporter.addr;
    let clients: Vec<_> = (0..64)
        .map(|_| std::thread::spawn(move || one_mib_header(addr)))
        .collect();
    for _ in 0..5 {
        scrape_ok(&exporter, 0, Duration::from_secs(5));
    }
    let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let rss_after = rss(pid);
    eprintln!(
        "64 × 1 MiB headers: answers {:?}; RSS {} → {} KiB",
        answers.iter().take(3).collect::<Vec<_>>(),
        rss_before / 1024,
        rss_after / 1024
    );
    // Each got 431, or a reset that cut it off before reading it.
    for answer in &answers {
        assert!(
            answer.is_none()
                || answer.as_deref() == Some("HTTP/1.1 431 Request Header Fields Too Large"),
            "{answer:?}"
        );
    }
    assert!(rss_after <= rss_before + 16 * MIB, "RSS {rss_after}");
    scrape_ok(&exporter, 0, Duration::from_secs(5));
}

/// Flows planted in the kernel table, exported.
const PLANTED: u32 = 100_000;

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_a_reader_that_stops_mid_body_is_dropped_and_scrapes_go_on() {
    support::require_root();
    let _serial = one_at_a_time();
    // Planting needs a per-event backend's flow table. Port 1 keeps the
    // node's own traffic out.
    let exporter = Exporter::start_raw(&[
        "--probe=tracepoint",
        "--flows.max=131072",
        "--filter.port.include=1",
        "--web.write-timeout=5s",
    ]);
    let pid = exporter.pid();
    support::plant::plant(&support::plant::writing_table(), PLANTED);
    let deadline = Instant::now() + Duration::from_secs(30);
    let full = loop {
        let (_, body) = http_get(exporter.addr, "/metrics", &[]).unwrap();
        let text = String::from_utf8_lossy(&body);
        if text.contains(&format!("\ntcp_flow_exporter_flow_series {PLANTED}\n")) {
            break body.len();
        }
        assert!(Instant::now() < deadline, "planted flows missing");
        std::thread::sleep(Duration::from_millis(200));
    };
    scrape_ok(&exporter, PLANTED as usize, Duration::from_secs(10));
    let rss_before = rss(pid);

    // Reads 1 MiB of a body of about 25 MB, then nothing.
    let mut stalled = TcpStream::connect(exporter.addr).unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = vec![0; 1 << 20];
    stalled.read_exact(&mut first).unwrap();
    let stalled_at = Instant::now();

    // Meanwhile, whole scrapes as usual.
    let mut rss_peak = 0;
    for _ in 0..3 {
        scrape_ok(&exporter, PLANTED as usize, Duration::from_secs(10));
        rss_peak = rss_peak.max(rss(pid));
    }
    // After the write timeout the exporter closes the connection: the rest
    // of what the socket buffers held arrives, then the end, well short of
    // the whole body.
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::thread::sleep(Duration::from_secs(7).saturating_sub(stalled_at.elapsed()));
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    let got = first.len() + rest.len();
    let rss_after = rss(pid);
    eprintln!(
        "stalled reader: body {full} B, the stalled client got {got} B; RSS {} KiB before, \
         {} KiB peak while stalled, {} KiB after",
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024
    );
    assert!(got < full, "the stalled client got the whole body");
    // One stalled body at most in memory beside the scrapes'.
    assert!(
        rss_peak <= rss_before + full as u64 + 16 * MIB,
        "RSS peaked at {rss_peak}"
    );
    scrape_ok(&exporter, PLANTED as usize, Duration::from_secs(10));
}
