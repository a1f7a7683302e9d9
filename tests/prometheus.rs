//! Root end-to-end test against a real Prometheus server (Debian's package,
//! unpacked by scripts/fetch-prometheus.sh): what Prometheus stores equals
//! the bytes the test moved, and every PromQL expression shipped in
//! grafana/dashboards and prometheus/rules.yml parses and returns data.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::traffic::Pair;
use support::{free_port, http_get, temp_path, tools, Exporter};

const JOB: &str = "tcp-flow-exporter";

/// A Prometheus server scraping `targets` every second, with our rules.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(binary: &Path, targets: &[SocketAddr]) -> Prometheus {
        let dir = temp_path("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus/rules.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [{}]\n",
            rules.display(),
            targets.join(", ")
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

    fn wait_for(&self, timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
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
    fn wait_until(
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
    fn rules_healthy(&self) -> Result<(), String> {
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
    fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
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
    fn value(&self, promql: &str) -> Option<u64> {
        let result = self.query(promql).ok()?;
        let [series] = &result[..] else { return None };
        series["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()
            .map(|v| v as u64)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where an expression comes from, and the expression.
struct Shipped {
    origin: String,
    expr: String,
    /// An alert's condition: it may rightly be empty on a healthy system.
    alert: bool,
}

fn dashboard_exprs() -> Vec<Shipped> {
    fn walk(value: &Value, origin: &str, out: &mut Vec<Shipped>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    out.push(Shipped {
                        origin: origin.to_owned(),
                        expr: expr.clone(),
                        alert: false,
                    });
                }
                map.values().for_each(|v| walk(v, origin, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, origin, out)),
            _ => {}
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("grafana/dashboards") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            walk(&json, &path.display().to_string(), &mut out);
        }
    }
    out
}

fn rule_exprs() -> Vec<Shipped> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus/rules.yml");
    let docs = yaml_rust2::YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("prometheus/rules.yml is YAML");
    let mut out = Vec::new();
    for group in docs[0]["groups"].as_vec().expect("rule groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let alert = rule["alert"].as_str();
            let name = alert.or(rule["record"].as_str()).expect("record or alert");
            out.push(Shipped {
                origin: format!("rules.yml {name}"),
                expr: rule["expr"].as_str().expect("expr").to_owned(),
                alert: alert.is_some(),
            });
        }
    }
    out
}

/// Grafana's variables replaced the way a dashboard with every filter at
/// "All" would: template variables only ever sit in `=~"$var"` matchers.
fn substitute(expr: &str) -> String {
    let mut text = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m");
    while let Some(start) = text.find('$') {
        let rest = &text[start + 1..];
        let len = if rest.starts_with('{') {
            rest.find('}').map_or(rest.len(), |i| i + 1)
        } else {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
        };
        text.replace_range(start..start + 1 + len, ".*");
    }
    text
}

/// `lhs OP number` split at its top-level comparison, for alert conditions.
fn condition_lhs(expr: &str) -> Option<&str> {
    let bytes = expr.as_bytes();
    let mut depth = 0i32;
    let mut split = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'>' | b'<' | b'=' | b'!' if depth == 0 && split.is_none() => split = Some(i),
            _ => {}
        }
    }
    let at = split?;
    let rhs = expr[at..].trim_start_matches(['>', '<', '=', '!']).trim();
    rhs.parse::<f64>().ok().map(|_| expr[..at].trim())
}

#[test]
#[ignore = "needs root to load BPF: scripts/test.sh runs it"]
fn root_prometheus_stores_exact_bytes_and_every_shipped_query_returns_data() {
    support::require_root();
    let Some(binary) = tools::prometheus() else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    // `exact` counts only the test's flows; `cramped` overflows its one-flow
    // table with Prometheus's own scrapes, so the overflow condition has
    // data; the third target is down. (Its socket maps keep their default
    // size: with one slot the socket backend would count one connection,
    // one flow, and never overflow.)
    let exact = Exporter::start(&[&format!("--filter.port.include={}", server.port())]);
    let cramped = Exporter::start(&["--flows.max=1"]);
    let down: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let prometheus = Prometheus::start(&binary, &[exact.addr, cramped.addr, down]);

    let mut pair = Pair::through(&listener, server);
    pair.exchange(123_456, 654_321);
    let instance = exact.addr;
    let stored = |role: &str, counter: &str| {
        prometheus.value(&format!(
            r#"tcp_flow_{counter}_bytes_total{{instance="{instance}",role="{role}"}}"#
        ))
    };
    prometheus.wait_for(Duration::from_secs(60), "holding the bytes moved", || {
        stored("client", "received") == Some(654_321)
    });
    assert_eq!(stored("client", "sent"), Some(123_456));
    assert_eq!(stored("server", "sent"), Some(654_321));
    assert_eq!(stored("server", "received"), Some(123_456));

    // Rates need two samples in their window, recording rules an evaluation
    // over them: wait until both exporters have two samples in a minute,
    // every rule has been evaluated without error, and every recording rule
    // has recorded the flows the test moved (role!="overflow" also matches
    // the rules that have no role label).
    let records: Vec<String> = rule_exprs()
        .into_iter()
        .filter(|r| !r.alert)
        .map(|r| r.origin.trim_start_matches("rules.yml ").to_owned())
        .collect();
    assert!(!records.is_empty(), "no recording rules in rules.yml");
    prometheus.wait_until(
        Duration::from_secs(60),
        "ready for the shipped queries",
        || {
            for target in [exact.addr, cramped.addr] {
                let samples = prometheus.value(&format!(
                    r#"count_over_time(tcp_flow_exporter_build_info{{instance="{target}"}}[1m])"#
                ));
                if samples.unwrap_or(0) < 2 {
                    return Err(format!("{target}: {samples:?} samples in the last minute"));
                }
            }
            prometheus.rules_healthy()?;
            for record in &records {
                let series = format!(r#"{record}{{instance="{instance}",role!="overflow"}}"#);
                match prometheus.query(&series) {
                    Ok(result) if !result.is_empty() => {}
                    other => return Err(format!("{series}: nothing recorded yet ({other:?})")),
                }
            }
            Ok(())
        },
    );
    let shipped: Vec<Shipped> = dashboard_exprs().into_iter().chain(rule_exprs()).collect();
    assert!(
        shipped.len() >= 10,
        "only {} expressions found",
        shipped.len()
    );
    let mut failures = Vec::new();
    for item in &shipped {
        let expr = substitute(&item.expr);
        let outcome = match prometheus.query(&expr) {
            Err(e) => Err(format!("does not run: {e}")),
            Ok(result) if !result.is_empty() => Ok(()),
            Ok(_) if item.alert => match condition_lhs(&expr) {
                // A quiet alert: its condition's left side must still see data.
                Some(lhs) => match prometheus.query(lhs) {
                    Ok(r) if !r.is_empty() => Ok(()),
                    other => Err(format!("condition {lhs:?} has no data: {other:?}")),
                },
                None => Err("empty, and not of the form `expr OP number`".into()),
            },
            Ok(_) => Err("returns no data".into()),
        };
        if let Err(why) = outcome {
            failures.push(format!("{}: {expr}\n    {why}", item.origin));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The conditions the test set up really fire.
    for alert in ["TcpFlowExporterDown", "TcpFlowExporterOverflow"] {
        let rule = shipped
            .iter()
            .find(|s| s.origin.ends_with(alert))
            .unwrap_or_else(|| panic!("no alert {alert}"));
        let result = prometheus.query(&rule.expr).unwrap();
        assert!(!result.is_empty(), "{alert} does not fire: {}", rule.expr);
    }
}

#[test]
fn substitution_and_condition_splitting() {
    assert_eq!(
        substitute(r#"sum(rate(x{a=~"$src", b=~"${role}"}[$__rate_interval]))"#),
        r#"sum(rate(x{a=~".*", b=~".*"}[1m]))"#
    );
    assert_eq!(condition_lhs("rate(x[5m]) > 0"), Some("rate(x[5m])"));
    assert_eq!(
        condition_lhs(r#"max by (map) (y{map=~"a|b"}) >= 0.9"#),
        Some(r#"max by (map) (y{map=~"a|b"})"#)
    );
    assert_eq!(condition_lhs("a > b"), None);
    assert_eq!(percent_encode("a{b=\"c\"}"), "a%7Bb%3D%22c%22%7D");
}
