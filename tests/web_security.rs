//! The HTTP endpoint hardened: the exporter-toolkit web config (TLS with
//! certificates made here by openssl, client certificates, basic auth) as
//! curl, openssl and a real Prometheus see it, certificate rotation, a bad
//! config, and abuse that must not stop a well-behaved scrape: 30,000 idle
//! connections, 1 MiB headers, and a client that stops reading a 100k-flow
//! body. Each abuse test bounds the exporter's memory.

mod support;

#[path = "web_security/abuse.rs"]
mod abuse;
#[path = "prometheus/server.rs"]
#[allow(dead_code)]
mod server;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use server::Prometheus;
use support::pki::{served_serial, Pki};
use support::traffic::Pair;
use support::{only_port, probe_under_test, tools, Exporter, BIN};

/// One test at a time: the abuse tests measure the exporter's memory and
/// scrape times on a 2-core machine, and planting finds the newest
/// exporter's flow table.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
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
