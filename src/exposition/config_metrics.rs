//! Self-metrics of the files the exporter keeps loaded (--labels.file,
//! --cost.file), and the prices in force.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;

use crate::config_file::FileStats;
use crate::flows::Snapshot;

type NoExemplar = Exemplar<NoLabelSet, u64>;

/// `tcp_flow_exporter_<prefix>_reloads_total{result}` and
/// `..._<prefix>_last_load_timestamp_seconds` of the file behind `flag`.
pub fn file_reloads(
    encoder: &mut DescriptorEncoder,
    prefix: &str,
    flag: &str,
    stats: &FileStats,
) -> fmt::Result {
    let name = format!("tcp_flow_exporter_{prefix}_reloads");
    let help = format!(
        "Reloads of {flag} after the first load, by result; a failed one keeps what was \
         loaded before."
    );
    let mut reloads = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
    for (result, count) in [
        ("success", stats.reloads_succeeded()),
        ("failure", stats.reloads_failed()),
    ] {
        reloads
            .encode_family(&[("result", result)])?
            .encode_counter::<NoLabelSet, _, u64>(&count, None::<&NoExemplar>)?;
    }
    let name = format!("tcp_flow_exporter_{prefix}_last_load_timestamp_seconds");
    let help = format!("Unix time {flag} was last loaded successfully.");
    encoder
        .encode_descriptor(&name, &help, None, MetricType::Gauge)?
        .encode_gauge(&stats.last_load_unix_seconds())?;
    Ok(())
}

/// The cost file's reloads, and one gauge per price it gives.
pub fn cost(encoder: &mut DescriptorEncoder, snap: &Snapshot, stats: &FileStats) -> fmt::Result {
    file_reloads(encoder, "cost", "--cost.file", stats)?;
    let Some(prices) = &snap.prices else {
        return Ok(());
    };
    let help = format!(
        "Price per {} of bytes this node sends (egress) or receives (ingress), by path or \
         named network, from --cost.file.",
        prices.unit.as_str()
    );
    let mut price =
        encoder.encode_descriptor("tcp_flow_exporter_price", &help, None, MetricType::Gauge)?;
    for (label, value, direction, per_unit) in prices.listed() {
        price
            .encode_family(&[
                (label, value),
                ("direction", direction.as_str()),
                ("currency", &prices.currency),
                ("unit", prices.unit.as_str()),
            ])?
            .encode_gauge(&per_unit)?;
    }
    Ok(())
}
