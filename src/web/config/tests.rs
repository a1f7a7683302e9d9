//! The web config: what exporter-toolkit files mean here, and that every
//! mistake names its key.

use super::*;
use proptest::prelude::*;

fn parse_here(text: &str) -> Result<WebConfig, ConfigError> {
    parse(text, Path::new("/etc/tfe"))
}

fn err(text: &str) -> ConfigError {
    parse_here(text).expect_err("a bad config")
}

#[test]
fn empty_file_means_plain_http_without_auth() {
    assert_eq!(parse_here("").unwrap(), WebConfig::default());
    assert_eq!(parse_here("# nothing\n").unwrap(), WebConfig::default());
}

#[test]
fn toolkit_example_reads_with_defaults_and_relative_paths() {
    let hash = bcrypt::hash("secret", 4).unwrap();
    let text = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
         basic_auth_users:\n  prometheus: '{hash}'\n"
    );
    let config = parse_here(&text).unwrap();
    assert_eq!(
        config.tls,
        Some(TlsSettings {
            cert_file: "/etc/tfe/server.crt".into(),
            key_file: "/abs/server.key".into(),
            client_auth: ClientAuth::RequireAndVerifyClientCert,
            client_ca_file: Some("/etc/tfe/ca.crt".into()),
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            cipher_suites: vec![],
            curves: vec![],
            prefer_server_cipher_suites: false,
        })
    );
    assert_eq!(config.users.get("prometheus"), Some(&hash));
}

#[test]
fn every_client_auth_type_of_the_toolkit() {
    for (text, want) in [
        ("NoClientCert", ClientAuth::NoClientCert),
        ("RequestClientCert", ClientAuth::RequestClientCert),
        ("RequireAnyClientCert", ClientAuth::RequireAnyClientCert),
        ("RequireClientCert", ClientAuth::RequireAnyClientCert),
        (
            "VerifyClientCertIfGiven",
            ClientAuth::VerifyClientCertIfGiven,
        ),
        (
            "RequireAndVerifyClientCert",
            ClientAuth::RequireAndVerifyClientCert,
        ),
    ] {
        let text = format!(
            "tls_server_config: {{cert_file: c, key_file: k, client_ca_file: ca, \
             client_auth_type: {text}}}"
        );
        assert_eq!(parse_here(&text).unwrap().tls.unwrap().client_auth, want);
    }
}

#[test]
fn versions_suites_and_curves() {
    let text = "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS13\n  \
                cipher_suites: [TLS_AES_128_GCM_SHA256]\n  curve_preferences: [X25519, CurveP256]\n  \
                prefer_server_cipher_suites: true\n";
    let tls = parse_here(text).unwrap().tls.unwrap();
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    assert_eq!(tls.curves, vec![Curve::X25519, Curve::P256]);
    assert!(tls.prefer_server_cipher_suites);
    let text = "tls_server_config:\n  cert_file: c\n  key_file: k\n  \
                cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n";
    assert_eq!(
        parse_here(text).unwrap().tls.unwrap().cipher_suites,
        vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
    );
}

#[test]
fn each_mistake_names_its_key() {
    let tls = |extra: &str| format!("tls_server_config:\n  cert_file: c\n  key_file: k\n{extra}");
    let cases = [
        (
            tls("  client_auth_type: Foo\n"),
            "tls_server_config.client_auth_type",
            "unknown value \"Foo\" (expected one of NoClientCert, RequestClientCert, \
             RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)",
        ),
        (
            tls("  client_auth_type: RequireAndVerifyClientCert\n"),
            "tls_server_config.client_ca_file",
            "required by client_auth_type RequireAndVerifyClientCert",
        ),
        (
            tls("  min_version: TLS10\n"),
            "tls_server_config.min_version",
            "TLS10 is not supported: rustls speaks only TLS12 and TLS13",
        ),
        (
            tls("  max_version: TLS14\n"),
            "tls_server_config.max_version",
            "unknown value \"TLS14\" (expected TLS12 or TLS13)",
        ),
        (
            tls("  min_version: TLS13\n  max_version: TLS12\n"),
            "tls_server_config.min_version",
            "is above max_version",
        ),
        (
            tls("  curve_preferences: [CurveP521]\n"),
            "tls_server_config.curve_preferences",
            "CurveP521 is not supported by the TLS library (ring)",
        ),
        (
            tls("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
            "tls_server_config.cipher_suites",
            "names no TLS 1.2 suite, but min_version allows TLS12",
        ),
        (
            tls("  cert: inline\n"),
            "tls_server_config.cert",
            "inline PEM is not supported; use cert_file",
        ),
        (
            tls("  client_allowed_sans: [a]\n"),
            "tls_server_config.client_allowed_sans",
            "not supported; use a client CA that signs only the allowed clients",
        ),
        (
            "tls_server_config:\n  key_file: k\n".into(),
            "tls_server_config.cert_file",
            "required",
        ),
        (
            "tls_server_config:\n  cert_file: ''\n  key_file: k\n".into(),
            "tls_server_config.cert_file",
            "must not be empty",
        ),
        (
            "basic_auth_users:\n  prometheus: plain-text\n".into(),
            "basic_auth_users.prometheus",
            "not a bcrypt hash (expected $2y$<cost>$<53 characters>, e.g. from htpasswd -nBC 10)",
        ),
        (
            "basic_auth_users:\n  'a:b': '$2y$10$abc'\n".into(),
            "basic_auth_users.a:b",
            "a user name must be non-empty, without ':' or control characters",
        ),
        (
            "http_server_config:\n  http2: false\n".into(),
            "http_server_config",
            "not supported: the exporter serves HTTP/1.1 only and adds no headers; remove it",
        ),
    ];
    for (text, key, message) in cases {
        assert_eq!(err(&text), ConfigError::new(key, message), "{text}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_name_their_key() {
    let e = err("tls_server_config:\n  cert_file: c\n  key_file: k\n  cert_fle: x\n");
    assert_eq!(e.key, "tls_server_config");
    assert!(e.message.starts_with("unknown field `cert_fle`"), "{e}");
    let e = err("basic_auth_user:\n  a: b\n");
    assert!(e.message.contains("unknown field `basic_auth_user`"), "{e}");
    let e = err("tls_server_config:\n  prefer_server_cipher_suites: maybe\n");
    assert_eq!(e.key, "tls_server_config.prefer_server_cipher_suites");
    let e = err("basic_auth_users: [a]\n");
    assert_eq!(e.key, "basic_auth_users");
}

#[test]
fn error_line_reads_as_the_issue_shows() {
    let e = err("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Foo\n");
    assert!(e
        .to_string()
        .starts_with("web config tls_server_config.client_auth_type: unknown value \"Foo\""));
}

/// YAML built from the config's own keys and values, and some that are not.
fn config_text() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "min_version",
        "max_version",
        "cipher_suites",
        "curve_preferences",
        "prefer_server_cipher_suites",
        "cert",
        "nonsense",
    ]);
    let values = prop::sample::select(vec![
        "x",
        "''",
        "TLS12",
        "TLS13",
        "TLS10",
        "RequireAndVerifyClientCert",
        "Foo",
        "[X25519, CurveP521]",
        "[TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]",
        "true",
        "7",
        "{a: b}",
        "~",
    ]);
    let tls = prop::collection::vec((keys, values), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("  {k}: {v}\n"))
            .collect::<String>()
    });
    let users = prop::collection::vec(("[a-z:]{0,4}", "\\PC{0,70}"), 0..3).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(u, h)| format!("  '{u}': {h:?}\n"))
            .collect::<String>()
    });
    (tls, users, any::<bool>()).prop_map(|(tls, users, http)| {
        let mut text = format!("tls_server_config:\n{tls}basic_auth_users:\n{users}");
        if http {
            text.push_str("http_server_config: {}\n");
        }
        text
    })
}

proptest! {
    #[test]
    fn any_text_parses_or_names_a_key(text in "\\PC{0,200}") {
        if let Err(e) = parse_here(&text) {
            prop_assert!(!e.key.is_empty());
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn config_shaped_text_parses_or_names_a_known_key(text in config_text()) {
        match parse_here(&text) {
            Ok(config) => {
                // What parsed holds its promises.
                if let Some(tls) = config.tls {
                    prop_assert!(tls.min_version <= tls.max_version);
                    prop_assert!(!tls.client_auth.verifies() || tls.client_ca_file.is_some());
                }
            }
            Err(e) => prop_assert!(
                ["tls_server_config", "basic_auth_users", "http_server_config", "(top level)"]
                    .iter()
                    .any(|k| e.key.starts_with(k)),
                "{e}"
            ),
        }
    }
}

#[test]
fn shipped_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/secured/web.yml");
    let config = load(&path).unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
    assert_eq!(
        tls.cert_file,
        Path::new("/etc/tcp-flow-exporter/tls/tls.crt")
    );
    assert_eq!(config.users.len(), 1);
}
