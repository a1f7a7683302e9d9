//! TLS for the web server: rustls with the ring provider (the one kube's
//! client already uses), configured from the web config. The certificate,
//! key and client CA files are read again at every handshake, as
//! exporter-toolkit does, so a rotated certificate is used for the next
//! connection without a restart.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use tracing::warn;

use super::config::{ClientAuth, ConfigError, Curve, TlsSettings, TlsVersion};

/// The TLS settings and the rustls configuration built from the files as
/// they were at the last handshake.
#[derive(Debug)]
pub struct Tls {
    settings: TlsSettings,
    current: Mutex<Built>,
}

#[derive(Debug)]
struct Built {
    files: Files,
    config: Arc<ServerConfig>,
}

/// The bytes of the files the configuration was built from.
#[derive(Debug, PartialEq, Eq)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Tls {
    /// Reads the files and builds the configuration once, so that a bad
    /// file stops the start with the key that names it.
    pub fn load(settings: TlsSettings) -> Result<Tls, ConfigError> {
        let files = read_files(&settings)?;
        let config = build(&settings, &files)?;
        Ok(Tls {
            settings,
            current: Mutex::new(Built { files, config }),
        })
    }

    /// The configuration for a new connection: rebuilt if a file changed
    /// since the last one. A changed set that does not build (a certificate
    /// written before its key, say) keeps the last good configuration and
    /// is tried again at the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut current = crate::lock::unpoisoned(&self.current);
        match read_files(&self.settings) {
            Ok(files) if files == current.files => {}
            Ok(files) => match build(&self.settings, &files) {
                Ok(config) => *current = Built { files, config },
                Err(e) => warn!(error = %e, "keeping the previous TLS certificate"),
            },
            Err(e) => warn!(error = %e, "keeping the previous TLS certificate"),
        }
        current.config.clone()
    }
}

fn read_files(settings: &TlsSettings) -> Result<Files, ConfigError> {
    let read = |key: &str, path: &Path| {
        std::fs::read(path).map_err(|e| {
            ConfigError::new(
                format!("tls_server_config.{key}"),
                format!("cannot read {}: {e}", path.display()),
            )
        })
    };
    Ok(Files {
        cert: read("cert_file", &settings.cert_file)?,
        key: read("key_file", &settings.key_file)?,
        client_ca: match &settings.client_ca_file {
            Some(path) if settings.client_auth.verifies() => Some(read("client_ca_file", path)?),
            _ => None,
        },
    })
}

fn build(settings: &TlsSettings, files: &Files) -> Result<Arc<ServerConfig>, ConfigError> {
    let error =
        |key: &str, message: String| ConfigError::new(format!("tls_server_config.{key}"), message);
    let certs = CertificateDer::pem_slice_iter(&files.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error("cert_file", format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(error("cert_file", "holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key)
        .map_err(|e| error("key_file", format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(provider(settings));
    let versions: Vec<_> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (settings.min_version..=settings.max_version).contains(v))
    .map(|(_, v)| v)
    .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| error("cipher_suites", e.to_string()))?;
    let verifier = client_verifier(settings, files, provider)?;
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| error("key_file", format!("does not go with cert_file: {e}")))?;
    config.ignore_client_order = settings.prefer_server_cipher_suites;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// ring's provider, narrowed to the configured TLS 1.2 suites and curves.
fn provider(settings: &TlsSettings) -> CryptoProvider {
    let mut provider = ring::default_provider();
    if !settings.cipher_suites.is_empty() {
        provider.cipher_suites.retain(|s| {
            s.version() == &rustls::version::TLS13
                || s.suite()
                    .as_str()
                    .is_some_and(|n| settings.cipher_suites.iter().any(|c| c == n))
        });
    }
    if !settings.curves.is_empty() {
        provider.kx_groups = settings
            .curves
            .iter()
            .map(|c| match c {
                Curve::X25519 => ring::kx_group::X25519,
                Curve::P256 => ring::kx_group::SECP256R1,
                Curve::P384 => ring::kx_group::SECP384R1,
            })
            .collect();
    }
    provider
}

fn client_verifier(
    settings: &TlsSettings,
    files: &Files,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ConfigError> {
    let error = |message: String| ConfigError::new("tls_server_config.client_ca_file", message);
    let verified = |roots: RootCertStore| {
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
    };
    Ok(match settings.client_auth {
        ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert => Arc::new(AnyCertificate {
            mandatory: false,
            provider,
        }),
        ClientAuth::RequireAnyClientCert => Arc::new(AnyCertificate {
            mandatory: true,
            provider,
        }),
        auth @ (ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert) => {
            let pem = files.client_ca.as_deref().unwrap_or_default();
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| error(format!("not a PEM certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| error(format!("not a usable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(error("holds no PEM certificate".into()));
            }
            let builder = verified(roots);
            let builder = match auth {
                ClientAuth::VerifyClientCertIfGiven => builder.allow_unauthenticated(),
                _ => builder,
            };
            builder.build().map_err(|e| error(e.to_string()))?
        }
    })
}

/// RequestClientCert and RequireAnyClientCert: a client certificate is
/// asked for (and, for the second, required) but not checked against any
/// CA, as in Go. The handshake's signature is still checked with the
/// provider's algorithms: the client holds the certificate's key.
#[derive(Debug)]
struct AnyCertificate {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
