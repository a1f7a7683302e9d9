//! The human-facing views of a snapshot: the landing page and /api/flows.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::flows::key::shown_port;
use crate::flows::{Flow, Snapshot};
use crate::identity::labels::Identity;

mod units;
use units::human_bytes;

/// Flows shown on the landing page.
const LANDING_TOP: usize = 25;

#[derive(Serialize)]
struct FlowsView<'a> {
    backend: &'a str,
    /// Flows in the map; `flows` may hold fewer when `limit` is set.
    total_flows: usize,
    overflow: OverflowView,
    flows: Vec<FlowView<'a>>,
}

#[derive(Serialize)]
struct OverflowView {
    sent_bytes: u64,
    received_bytes: u64,
}

#[derive(Serialize)]
struct FlowView<'a> {
    src_ip: String,
    /// null for the client's port under --flows.ports=server.
    src_port: Option<u16>,
    dst_ip: String,
    dst_port: Option<u16>,
    /// Which end the local socket is: client, server or unknown.
    role: &'static str,
    /// Who each end is, and the path: the identity labels, by name.
    src_namespace: &'a str,
    src_pod: &'a str,
    src_workload: &'a str,
    dst_kind: &'static str,
    dst_namespace: &'a str,
    dst_name: &'a str,
    dst_workload: &'a str,
    path: &'static str,
    sent_bytes: u64,
    received_bytes: u64,
    /// Wall-clock time of the latest counted send or receive, Unix milliseconds.
    last_activity_unix_ms: u64,
}

/// Flows ordered by total bytes, busiest first, at most `limit` of them.
fn busiest(snapshot: &Snapshot, limit: usize) -> Vec<&Flow> {
    let mut flows: Vec<&Flow> = snapshot.flows.iter().collect();
    let limit = limit.min(flows.len());
    if limit < flows.len() {
        flows.select_nth_unstable_by_key(limit, |f| std::cmp::Reverse(f.total_bytes()));
        flows.truncate(limit);
    }
    flows.sort_unstable_by_key(|f| std::cmp::Reverse(f.total_bytes()));
    flows
}

/// Wall-clock time of a CLOCK_MONOTONIC instant seen at `snapshot.taken_at_ns`.
fn wall_clock_ms(snapshot: &Snapshot, monotonic_ns: u64) -> u64 {
    let age = Duration::from_nanos(snapshot.taken_at_ns.saturating_sub(monotonic_ns));
    SystemTime::now()
        .checked_sub(age)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// `/api/flows`: every flow (or the `limit` busiest) as JSON.
pub fn flows_json(snapshot: &Snapshot, backend: &str, limit: Option<usize>) -> String {
    let view = FlowsView {
        backend,
        total_flows: snapshot.flow_count as usize,
        overflow: OverflowView {
            sent_bytes: snapshot.overflow().sent,
            received_bytes: snapshot.overflow().received,
        },
        flows: busiest(snapshot, limit.unwrap_or(usize::MAX))
            .into_iter()
            .map(|f| FlowView {
                src_ip: f.local.ip().to_string(),
                src_port: shown_port(f.local.port()),
                dst_ip: f.remote.ip().to_string(),
                dst_port: shown_port(f.remote.port()),
                role: f.role.as_str(),
                src_namespace: &f.identity.local.namespace,
                src_pod: &f.identity.local.pod,
                src_workload: &f.identity.local.workload,
                dst_kind: f.identity.peer.kind.as_str(),
                dst_namespace: &f.identity.peer.namespace,
                dst_name: &f.identity.peer.name,
                dst_workload: &f.identity.peer.workload,
                path: f.identity.path.as_str(),
                sent_bytes: f.sent,
                received_bytes: f.received,
                last_activity_unix_ms: wall_clock_ms(snapshot, f.last_seen_ns),
            })
            .collect(),
    };
    serde_json::to_string(&view).expect("plain structs serialize")
}

/// `/`: a small page with the busiest flows and links to the machine views.
pub fn landing_html(snapshot: &Snapshot, backend: &str, telemetry_path: &str) -> String {
    let mut rows = String::new();
    for f in busiest(snapshot, LANDING_TOP) {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td>{}{}<td class=n>{}</td></tr>",
            html_escape(&local_name(&f.identity)),
            f.local.ip(),
            any_port(f.local.port()),
            f.identity.peer.kind.as_str(),
            html_escape(&peer_name(&f.identity)),
            f.remote.ip(),
            any_port(f.remote.port()),
            f.identity.path.as_str(),
            f.role.as_str(),
            bytes_cell(f.sent),
            bytes_cell(f.received),
            age(snapshot, f.last_seen_ns)
        );
    }
    let overflow = snapshot.overflow();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>tcp-flow-exporter</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{padding:.25em .75em;border-bottom:1px solid #ddd;text-align:left}}.n{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}</style>
</head><body>
<h1>tcp-flow-exporter</h1>
<p>Backend: <b>{backend}</b> &middot; {total} flows &middot; <a href="{metrics}">{metrics}</a> &middot; <a href="/api/flows">/api/flows</a> (JSON) &middot; <a href="/healthz">/healthz</a></p>
<h2>Top flows by bytes</h2>
<p>Refreshes every 10 s. <b>src</b> is the socket on this node, <b>dst</b> its peer; <b>*</b> is the client's port, folded under --flows.ports=server. Byte counts are in binary units; hover for the exact number.</p>
<table><thead><tr><th>src (local)</th><th>src address</th><th>dst kind</th><th>dst (peer)</th><th>dst address</th><th>path</th><th>role (local)</th><th class=n>sent</th><th class=n>received</th><th class=n>last active</th></tr></thead>
<tbody>{rows}</tbody></table>
<p>Overflow flow (bytes without a flow of their own): {overflow_sent} sent, {overflow_received} received.</p>
</body></html>
"#,
        backend = backend,
        total = snapshot.flow_count,
        overflow_sent = overflow.sent,
        overflow_received = overflow.received,
        metrics = html_escape(telemetry_path),
        rows = rows,
    )
}

/// The local end as people name it: namespace/pod (workload), or the
/// unit or container on a plain host.
fn local_name(identity: &Identity) -> String {
    let local = &identity.local;
    match (local.pod.is_empty(), local.workload.is_empty()) {
        (false, false) => format!("{}/{} ({})", local.namespace, local.pod, local.workload),
        (false, true) => format!("{}/{}", local.namespace, local.pod),
        (true, _) => local.workload.to_string(),
    }
}

/// The peer as people name it: namespace/name (workload).
fn peer_name(identity: &Identity) -> String {
    let peer = &identity.peer;
    let mut name = match peer.namespace.is_empty() {
        true => peer.name.to_string(),
        false => format!("{}/{}", peer.namespace, peer.name),
    };
    if !peer.workload.is_empty() && *peer.workload != *peer.name {
        let _ = write!(name, " ({})", peer.workload);
    }
    name
}

/// A byte count in binary units, the exact number on hover.
fn bytes_cell(bytes: u64) -> String {
    format!(
        "<td class=n title=\"{bytes} bytes\">{}</td>",
        human_bytes(bytes)
    )
}

/// How long ago a CLOCK_MONOTONIC instant was, as of the snapshot: "4 s ago".
fn age(snapshot: &Snapshot, monotonic_ns: u64) -> String {
    let secs = snapshot.taken_at_ns.saturating_sub(monotonic_ns) / 1_000_000_000;
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// A port folded away (the client's, under --flows.ports=server) shows as `*`.
fn any_port(port: u16) -> String {
    shown_port(port).map_or_else(|| "*".into(), |port| port.to_string())
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::Role;
    use crate::identity::labels::{Local, Path, Peer};
    use crate::identity::PeerKind;

    fn flow(port: u16, sent: u64) -> Flow {
        let local = Local {
            namespace: "shop".into(),
            pod: "web-7f9c-x2".into(),
            workload: "web".into(),
        };
        let peer = Peer {
            kind: PeerKind::Pod,
            namespace: "db".into(),
            name: "postgres-0".into(),
            workload: "postgres".into(),
        };
        Flow {
            local: format!("127.0.0.1:{port}").parse().unwrap(),
            remote: "[::1]:80".parse().unwrap(),
            role: Role::Client,
            identity: std::sync::Arc::new(Identity::new(local, peer, Path::CrossZone)),
            sent,
            received: 1,
            last_seen_ns: 0,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            flows: vec![flow(1, 10), flow(2, 30), flow(3, 20), flow(0, 5)],
            flow_count: 4,
            ..Snapshot::default()
        }
    }

    #[test]
    fn json_lists_busiest_first_and_honours_limit() {
        let json: serde_json::Value =
            serde_json::from_str(&flows_json(&snapshot(), "fentry", Some(2))).unwrap();
        assert_eq!(json["backend"], "fentry");
        assert_eq!(json["total_flows"], 4);
        let ports: Vec<u64> = json["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["src_port"].as_u64().unwrap())
            .collect();
        assert_eq!(ports, [2, 3]);
        assert_eq!(json["flows"][0]["sent_bytes"], 30);
        assert_eq!(json["flows"][0]["dst_ip"], "::1");
        assert_eq!(json["flows"][0]["role"], "client");
        assert_eq!(json["flows"][0]["src_pod"], "web-7f9c-x2");
        assert_eq!(json["flows"][0]["dst_kind"], "pod");
        assert_eq!(json["flows"][0]["dst_name"], "postgres-0");
        assert_eq!(json["flows"][0]["dst_workload"], "postgres");
        assert_eq!(json["flows"][0]["path"], "cross_zone");
        let all: serde_json::Value =
            serde_json::from_str(&flows_json(&snapshot(), "fentry", None)).unwrap();
        assert_eq!(all["flows"][3]["src_port"], serde_json::Value::Null);
    }

    #[test]
    fn landing_page_links_and_lists_flows() {
        let html = landing_html(&snapshot(), "tracepoint", "/metrics");
        assert!(html.contains(r#"<a href="/metrics">"#));
        assert!(html.contains(r#"<a href="/api/flows">"#));
        assert!(
            html.contains(
                "<td>shop/web-7f9c-x2 (web)</td><td>127.0.0.1:2</td><td>pod</td>\
             <td>db/postgres-0 (postgres)</td><td>::1:80</td><td>cross_zone</td><td>client</td>\
             <td class=n title=\"30 bytes\">30 B</td>"
            ),
            "{html}"
        );
        assert!(html.contains("<td>127.0.0.1:*</td>"), "{html}");
    }
}
