//! --web.config.file: the exporter-toolkit web configuration (TLS and basic
//! auth), read with the same keys and meanings, and checked whole at start so
//! that a mistake stops the exporter with the key it is in.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A web configuration that failed to load: the key it is about, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("web config {key}: {message}")]
pub struct ConfigError {
    /// The dotted key, e.g. `tls_server_config.client_auth_type`; the file
    /// itself when the YAML does not parse.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// What the web config asks for. Both parts are optional: an empty file
/// serves plain HTTP without authentication, as no file does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// User name → bcrypt hash.
    pub users: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// IANA names of the allowed suites; all of the provider's when empty.
    pub cipher_suites: Vec<String>,
    /// Key exchange groups in order of preference; the provider's when empty.
    pub curves: Vec<Curve>,
    pub prefer_server_cipher_suites: bool,
}

/// exporter-toolkit's `client_auth_type` values (Go's tls.ClientAuthType).
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    /// Asks for a certificate, and accepts the connection without one.
    RequestClientCert,
    /// Needs a certificate, but does not check who signed it.
    RequireAnyClientCert,
    /// Checks a certificate against client_ca_file if one is sent.
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

const CLIENT_AUTH_VALUES: &str = "NoClientCert, RequestClientCert, RequireAnyClientCert, \
                                  VerifyClientCertIfGiven, RequireAndVerifyClientCert";

impl ClientAuth {
    fn parse(text: &str) -> Result<ClientAuth, String> {
        Ok(match text {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // exporter-toolkit takes both spellings.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => {
                return Err(format!(
                    "unknown value {other:?} (expected one of {CLIENT_AUTH_VALUES})"
                ))
            }
        })
    }

    /// Whether certificates are checked against client_ca_file.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

#[derive(Debug, Copy, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn parse(text: &str) -> Result<TlsVersion, String> {
        match text {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            "TLS10" | "TLS11" => Err(format!(
                "{text} is not supported: rustls speaks only TLS12 and TLS13"
            )),
            other => Err(format!("unknown value {other:?} (expected TLS12 or TLS13)")),
        }
    }
}

/// exporter-toolkit's `curve_preferences` names that ring offers.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum Curve {
    X25519,
    P256,
    P384,
}

impl Curve {
    fn parse(text: &str) -> Result<Curve, String> {
        match text {
            "X25519" => Ok(Curve::X25519),
            "CurveP256" => Ok(Curve::P256),
            "CurveP384" => Ok(Curve::P384),
            "CurveP521" => Err("CurveP521 is not supported by the TLS library (ring)".into()),
            other => Err(format!(
                "unknown value {other:?} (expected one of X25519, CurveP256, CurveP384)"
            )),
        }
    }
}

/// The file as written, before any check but the YAML's shape.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    tls_server_config: Option<RawTls>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    http_server_config: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

/// Reads and checks `path`. Relative file names in it are relative to the
/// file's own directory, as in exporter-toolkit.
pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, dir)
}

/// Parses and checks a web config's text; `dir` anchors relative paths.
pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(yaml_error)?
    };
    if raw.http_server_config.is_some() {
        return Err(ConfigError::new(
            "http_server_config",
            "not supported: the exporter serves HTTP/1.1 only and adds no headers; remove it",
        ));
    }
    let users = raw.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        check_user(user, hash)?;
    }
    let tls = raw.tls_server_config.map(|t| tls(t, dir)).transpose()?;
    Ok(WebConfig { tls, users })
}

/// serde_yaml_ng's message names the path (`a.b: unknown field ...`) but
/// for errors at the top; both become one key and a message.
fn yaml_error(e: serde_yaml_ng::Error) -> ConfigError {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((key, message)) if is_key_path(key) => ConfigError::new(key, message),
        _ => ConfigError::new("(top level)", text),
    }
}

fn is_key_path(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '-'))
}

fn check_user(user: &str, hash: &str) -> Result<(), ConfigError> {
    let key = format!("basic_auth_users.{user}");
    if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
        return Err(ConfigError::new(
            key,
            "a user name must be non-empty, without ':' or control characters",
        ));
    }
    // A hash bcrypt cannot read would refuse every password: say so now.
    let prefix_ok = ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| hash.starts_with(p));
    if !prefix_ok || hash.parse::<bcrypt::HashParts>().is_err() {
        return Err(ConfigError::new(
            key,
            "not a bcrypt hash (expected $2y$<cost>$<53 characters>, e.g. from htpasswd -nBC 10)",
        ));
    }
    Ok(())
}

fn tls(raw: RawTls, dir: &Path) -> Result<TlsSettings, ConfigError> {
    let key = |name: &str| format!("tls_server_config.{name}");
    for (name, given) in [
        ("cert", raw.cert.is_some()),
        ("key", raw.key.is_some()),
        ("client_ca", raw.client_ca.is_some()),
    ] {
        if given {
            return Err(ConfigError::new(
                key(name),
                format!("inline PEM is not supported; use {name}_file"),
            ));
        }
    }
    if raw.client_allowed_sans.is_some() {
        return Err(ConfigError::new(
            key("client_allowed_sans"),
            "not supported; use a client CA that signs only the allowed clients",
        ));
    }
    let path = |name: &str, value: Option<String>| -> Result<Option<PathBuf>, ConfigError> {
        match value {
            Some(v) if v.is_empty() => Err(ConfigError::new(key(name), "must not be empty")),
            Some(v) => Ok(Some(dir.join(v))),
            None => Ok(None),
        }
    };
    let cert_file = path("cert_file", raw.cert_file)?
        .ok_or_else(|| ConfigError::new(key("cert_file"), "required"))?;
    let key_file = path("key_file", raw.key_file)?
        .ok_or_else(|| ConfigError::new(key("key_file"), "required"))?;
    let client_ca_file = path("client_ca_file", raw.client_ca_file)?;
    let client_auth = ClientAuth::parse(raw.client_auth_type.as_deref().unwrap_or(""))
        .map_err(|m| ConfigError::new(key("client_auth_type"), m))?;
    if client_auth.verifies() && client_ca_file.is_none() {
        return Err(ConfigError::new(
            key("client_ca_file"),
            format!("required by client_auth_type {client_auth:?}"),
        ));
    }
    let version = |name: &str, value: Option<String>, default| match value {
        None => Ok(default),
        Some(v) => TlsVersion::parse(&v).map_err(|m| ConfigError::new(key(name), m)),
    };
    let min_version = version("min_version", raw.min_version, TlsVersion::Tls12)?;
    let max_version = version("max_version", raw.max_version, TlsVersion::Tls13)?;
    if min_version > max_version {
        return Err(ConfigError::new(key("min_version"), "is above max_version"));
    }
    let cipher_suites = raw.cipher_suites.unwrap_or_default();
    check_cipher_suites(&cipher_suites, min_version)
        .map_err(|m| ConfigError::new(key("cipher_suites"), m))?;
    let curves = raw
        .curve_preferences
        .unwrap_or_default()
        .iter()
        .map(|c| Curve::parse(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| ConfigError::new(key("curve_preferences"), m))?;
    Ok(TlsSettings {
        cert_file,
        key_file,
        client_auth,
        client_ca_file,
        min_version,
        max_version,
        cipher_suites,
        curves,
        prefer_server_cipher_suites: raw.prefer_server_cipher_suites.unwrap_or(false),
    })
}

/// The TLS 1.2 suites the TLS library (rustls with ring) offers, by IANA
/// name, as Go and so exporter-toolkit name them.
pub fn tls12_cipher_suites() -> Vec<&'static str> {
    rustls::crypto::ring::DEFAULT_CIPHER_SUITES
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .filter_map(|s| s.suite().as_str())
        .collect()
}

/// As in Go, the list chooses among TLS 1.2 suites only; TLS 1.3 names are
/// accepted and every TLS 1.3 suite stays on.
fn check_cipher_suites(names: &[String], min_version: TlsVersion) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let tls12 = tls12_cipher_suites();
    // rustls says TLS13_AES_128_GCM_SHA256 where IANA and Go say TLS_...
    let tls13: Vec<String> = rustls::crypto::ring::DEFAULT_CIPHER_SUITES
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .filter_map(|s| s.suite().as_str())
        .map(|n| n.replacen("TLS13_", "TLS_", 1))
        .collect();
    if let Some(unknown) = names
        .iter()
        .find(|n| !tls12.contains(&n.as_str()) && !tls13.contains(n))
    {
        return Err(format!(
            "unknown or unsupported suite {unknown:?} (supported: {})",
            tls12.join(", ")
        ));
    }
    if min_version == TlsVersion::Tls12 && !names.iter().any(|n| tls12.contains(&n.as_str())) {
        return Err("names no TLS 1.2 suite, but min_version allows TLS12".into());
    }
    Ok(())
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        })
    }
}

#[cfg(test)]
mod tests;
