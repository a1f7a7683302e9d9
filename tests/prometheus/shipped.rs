//! The PromQL expressions the project ships (grafana/dashboards, and
//! prometheus/rules.yml), and Grafana's variables replaced the way a
//! dashboard with every filter at "All" would.

use std::path::Path;

use serde_json::Value;

/// Where an expression comes from, and the expression.
pub struct Shipped {
    pub origin: String,
    pub expr: String,
    /// An alert's condition: it may rightly be empty on a healthy system.
    pub alert: bool,
}

/// Every `expr` in every dashboard of grafana/dashboards.
pub fn dashboard_exprs() -> Vec<Shipped> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("grafana/dashboards") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            out.extend(dashboard_exprs_in(&path));
        }
    }
    out
}

/// Every `expr` in one dashboard file, with the panel's title as origin.
pub fn dashboard_exprs_in(path: &Path) -> Vec<Shipped> {
    fn walk(value: &Value, origin: &str, out: &mut Vec<Shipped>) {
        match value {
            Value::Object(map) => {
                let origin = match map.get("title") {
                    Some(Value::String(title)) => format!("{origin} \"{title}\""),
                    _ => origin.to_owned(),
                };
                if let Some(Value::String(expr)) = map.get("expr") {
                    out.push(Shipped {
                        origin: origin.clone(),
                        expr: expr.clone(),
                        alert: false,
                    });
                }
                map.values().for_each(|v| walk(v, &origin, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, origin, out)),
            _ => {}
        }
    }
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy();
    let mut out = Vec::new();
    walk(&json, &name, &mut out);
    out
}

pub fn rule_exprs() -> Vec<Shipped> {
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
/// Subqueries sampled once an hour are sampled every second instead: they
/// sample at whole hours, and the test's Prometheus has seen none yet.
pub fn substitute(expr: &str) -> String {
    substitute_with(expr, &[])
}

/// As [`substitute`], but the variables named in `values` take the value
/// given, as a dashboard with those filters set. `$1`, `$2`... are left
/// alone: they are label_replace's regex groups, and Grafana leaves them
/// too (no variable is named by a digit).
pub fn substitute_with(expr: &str, values: &[(&str, &str)]) -> String {
    let mut text = expr
        .replace(":1h]", ":1s]")
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m");
    let mut from = 0;
    while let Some(found) = text[from..].find('$') {
        let start = from + found;
        let rest = &text[start + 1..];
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            from = start + 1;
            continue;
        }
        let (len, name) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').unwrap_or(braced.len());
            (end + 2, &braced[..end])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (end, &rest[..end])
        };
        let value = values
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(".*", |(_, v)| *v)
            .to_owned();
        text.replace_range(start..start + 1 + len, &value);
        from = start + value.len();
    }
    text
}

/// An alert's condition `lhs OP rhs` split at its top-level comparison:
/// both sides, the right one without its matching modifiers (`bool`,
/// `on (...)`, `group_left (...)`...). None if there is no comparison.
pub fn condition_sides(expr: &str) -> Option<(&str, &str)> {
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
    let mut rhs = expr[at..].trim_start_matches(['>', '<', '=', '!']).trim();
    'modifiers: loop {
        for modifier in ["bool", "on", "ignoring", "group_left", "group_right"] {
            let Some(rest) = rhs.strip_prefix(modifier) else {
                continue;
            };
            if !rest.starts_with([' ', '(']) {
                continue;
            }
            rhs = rest.trim_start();
            if rhs.starts_with('(') {
                let close = rhs.find(')')?;
                rhs = rhs[close + 1..].trim_start();
            }
            continue 'modifiers;
        }
        break;
    }
    Some((expr[..at].trim(), rhs))
}

/// The (refId, expr) of each target of the panel titled `title` in the
/// dashboard file `name` of grafana/dashboards.
pub fn panel_targets(name: &str, title: &str) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("grafana/dashboards")
        .join(name);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let panel = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("{name}: no panel {title:?}"));
    panel["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            let field = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
            (field("refId"), field("expr"))
        })
        .collect()
}
