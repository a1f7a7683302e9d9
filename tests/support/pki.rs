//! Certificates made by openssl for the TLS tests: a CA, a server
//! certificate for 127.0.0.1 and localhost, a client certificate the CA
//! signed, and one signed by a CA the exporter does not trust.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::temp_path;

pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// A fresh CA, with a server certificate of serial `0x1001`, client
    /// certificates, and a stranger CA's client certificate.
    pub fn new() -> Pki {
        let dir = temp_path("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.ca("ca");
        pki.ca("stranger-ca");
        pki.issue("ca", "server", 0x1001, "serverAuth");
        pki.issue("ca", "client", 0x2001, "clientAuth");
        pki.issue("stranger-ca", "stranger", 0x3001, "clientAuth");
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Issues a new server key and certificate with `serial` and moves
    /// them over server.key and server.crt, each with one rename, as a
    /// certificate manager would.
    pub fn rotate_server(&self, serial: u32) {
        self.issue("ca", "next", serial, "serverAuth");
        std::fs::rename(self.path("next.key"), self.path("server.key")).unwrap();
        std::fs::rename(self.path("next.crt"), self.path("server.crt")).unwrap();
    }

    fn ca(&self, name: &str) {
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }

    fn issue(&self, ca: &str, name: &str, serial: u32, usage: &str) {
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
                 basicConstraints=critical,CA:FALSE\nextendedKeyUsage={usage}\n"
            ),
        )
        .unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-set_serial",
                &serial.to_string(),
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &format!("{name}.crt"),
            ],
        );
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/install-deps.sh --test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// The serial number (hex, as openssl prints it) of the certificate the
/// server at `port` presents to a new connection.
pub fn served_serial(pki: &Pki, port: u16) -> String {
    let connect = format!("127.0.0.1:{port}");
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-showcerts"])
        .arg("-CAfile")
        .arg(pki.path("ca.crt"))
        .arg("-cert")
        .arg(pki.path("client.crt"))
        .arg("-key")
        .arg(pki.path("client.key"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text.find("-----END CERTIFICATE-----").expect("its end") + 25;
    let pem = pki.dir.join("served.pem");
    std::fs::write(&pem, &text[start..end]).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
