//! The exporter under test, run as its own process, and its flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::scrape::{http_get, Scrape};
use super::{free_port, probe_under_test, temp_path, BIN};

/// The flag that scopes an exporter to the flows of one server port, so the
/// node's other traffic cannot add to what a test checks.
pub fn only_port(port: u16) -> String {
    format!("--filter.port.include={port}")
}

/// A running exporter, stopped with SIGTERM when dropped.
pub struct Exporter {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Exporter {
    /// Starts the exporter with the backend under test plus `args`, and waits
    /// until it serves /healthz.
    pub fn start(args: &[&str]) -> Exporter {
        let probe = format!("--probe={}", probe_under_test());
        let mut all = vec![probe.as_str()];
        all.extend_from_slice(args);
        Self::start_raw(&all)
    }

    /// Starts the exporter with exactly `args` (plus a free listen address).
    pub fn start_raw(args: &[&str]) -> Exporter {
        Self::start_until(args, |addr| {
            matches!(http_get(addr, "/healthz", &[]), Ok((200, _)))
        })
    }

    /// Starts the exporter with exactly `args` (plus a free listen address),
    /// and waits until `ready` says it serves (for TLS and auth, which a
    /// plain GET of /healthz cannot pass).
    pub fn start_until(args: &[&str], ready: impl Fn(SocketAddr) -> bool) -> Exporter {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = temp_path("exporter.log");
        let child = Command::new(BIN)
            .arg(format!("--web.listen-address={addr}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn the exporter");
        let mut exporter = Exporter {
            child: Some(child),
            addr,
            log,
        };
        exporter.wait_ready(ready);
        exporter
    }

    fn wait_ready(&mut self, ready: impl Fn(SocketAddr) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "exporter exited with {status} before serving:\n{}",
                    self.log()
                );
            }
            if ready(self.addr) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "exporter did not serve /healthz within 60 s:\n{}",
            self.log()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        self.get_with(path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
        http_get(self.addr, path, headers).expect("HTTP GET")
    }

    pub fn scrape(&self) -> Scrape {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        Scrape::parse(&String::from_utf8(body).unwrap())
    }

    /// Sends `signal` and waits for the exit status and log.
    pub fn stop_with(mut self, signal: i32) -> (ExitStatus, String) {
        let status = self.terminate(signal);
        (status, self.log())
    }

    fn terminate(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill() on our own child's pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("exporter ignored signal {signal} for 20 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate(libc::SIGTERM);
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
