//! A real Prometheus server (Debian's package, unpacked by
//! scripts/fetch-prometheus.sh) scraping the targets a test gives it every
//! second, with prometheus/rules.yml loaded, and its HTTP API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{free_port, http_get, temp_path};

pub const JOB: &str = "tcp-flow-exporter";

/// A Prometheus server scraping `targets` every second, with our rules.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    pub fn start(binary: &Path, targets: &[SocketAddr]) -> Prometheus {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let job = format!(
            "  - job_name: {JOB}\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        Self::start_jobs(binary, &job)
    }

    /// A Prometheus server with our rules and `jobs`, the YAML list items
    /// of scrape_configs (indented by two spaces).
    pub fn start_jobs(binary: &Path, jobs: &str) -> Prometheus {
        let dir = temp_path("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus/rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\n\
             scrape_configs:\n{jobs}",
            rules.display(),
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, addr, dir };
        prometheus.wait_for(Duration::from_secs(60), "ready", || {
            matches!(http_get(addr, "/-/ready", &[]), Ok((200, _)))
        });
        prometheus
    }

    pub fn wait_for(&self, timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
        self.wait_until(timeout, what, || {
            if done() {
                Ok(())
            } else {
                Err("not yet".into())
            }
        });
    }

    /// Polls `check` until it passes; after `timeout`, fails with its last
    /// complaint and Prometheus's log.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> Result<(), String>,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let why = match check() {
                Ok(()) => return,
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                panic!(
                    "prometheus: not {what} within {timeout:?}: {why}\nlog:\n{}",
                    std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every rule's health, last error and last evaluation, from the rules
    /// API: Err with the rules that are not healthy (never evaluated, or
    /// failing) and why.
    pub fn rules_healthy(&self) -> Result<(), String> {
        let (_, body) = http_get(self.addr, "/api/v1/rules", &[]).map_err(|e| e.to_string())?;
        let reply: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let groups = reply["data"]["groups"]
            .as_array()
            .ok_or_else(|| format!("no rule groups: {reply}"))?;
        let unhealthy: Vec<String> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["health"] != "ok")
            .map(|r| {
                format!(
                    "{} health {} (last evaluation {}, error {:?})",
                    r["name"], r["health"], r["lastEvaluation"], r["lastError"]
                )
            })
            .collect();
        if groups.is_empty() || !unhealthy.is_empty() {
            return Err(format!(
                "rules not healthy: {unhealthy:?} of {} groups",
                groups.len()
            ));
        }
        Ok(())
    }

    /// An instant query: Err with Prometheus's message if it fails.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (_, body) = http_get(self.addr, &path, &[]).map_err(|e| e.to_string())?;
        let reply: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if reply["status"] != "success" {
            return Err(reply["error"].as_str().unwrap_or("?").to_owned());
        }
        Ok(reply["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The single value of a query that must return exactly one series.
    pub fn value(&self, promql: &str) -> Option<u64> {
        self.float(promql).map(|v| v as u64)
    }

    /// As [`Prometheus::value`], as Prometheus stores it (money is no
    /// whole number).
    pub fn float(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql).ok()?;
        let [series] = &result[..] else { return None };
        series["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
