//! A query's result as rows, the way a dashboard's table shows it: the
//! values of some labels, and the series' value.

use std::collections::BTreeMap;

use crate::server::Prometheus;
use crate::shipped::{panel_targets, substitute_with};

pub type Rows = BTreeMap<Vec<String>, u64>;

/// Rows of a query's result: the values of `keys` in each series, and the
/// series' value as a whole number (byte counters are). Two series with
/// the same keys fail the test: the keys must tell every row apart.
pub fn rows(prometheus: &Prometheus, promql: &str, keys: &[&str]) -> Rows {
    float_rows(prometheus, promql, keys)
        .into_iter()
        .map(|(key, value)| (key, value as u64))
        .collect()
}

/// As [`rows`], with each value as Prometheus stores it.
pub fn float_rows(
    prometheus: &Prometheus,
    promql: &str,
    keys: &[&str],
) -> BTreeMap<Vec<String>, f64> {
    let result = prometheus
        .query(promql)
        .unwrap_or_else(|e| panic!("{promql}: {e}"));
    let mut out = BTreeMap::new();
    for series in &result {
        let key: Vec<String> = keys
            .iter()
            .map(|k| series["metric"][*k].as_str().unwrap_or_default().to_owned())
            .collect();
        let value: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
        if out.insert(key.clone(), value).is_some() {
            panic!("{promql}: two series with {keys:?} = {key:?}: {result:?}");
        }
    }
    out
}

/// The rows of target `ref_id` of the panel titled `title` in the dashboard
/// file `dashboard`, with the variables in `vars` set (the others at All)
/// and `rate` read as `last_over_time`: each rate is then the counter
/// itself, an exact number of bytes.
pub fn panel_rows(
    prometheus: &Prometheus,
    (dashboard, title, ref_id): (&str, &str, &str),
    vars: &[(&str, &str)],
    keys: &[&str],
) -> Rows {
    let (_, expr) = panel_targets(dashboard, title)
        .into_iter()
        .find(|(r, _)| r == ref_id)
        .unwrap_or_else(|| panic!("{title}: no target {ref_id}"));
    let expr = substitute_with(&expr, vars).replace("rate(", "last_over_time(");
    rows(prometheus, &expr, keys)
}

pub fn expect(pairs: &[(&[&str], u64)]) -> Rows {
    pairs
        .iter()
        .map(|(k, v)| (k.iter().map(|s| s.to_string()).collect(), *v))
        .collect()
}
