//! Exposition: the flow table and one snapshot as metric families, in the
//! format the scraper asked for, written into a response body that is sent
//! while it is written.
//!
//! - [`format`]: text 0.0.4 or OpenMetrics, and gzip, from the request.
//! - [`flow_families`]: the flow counters, written straight into the text.
//! - [`self_metrics`]: the exporter's metrics about itself.
//! - [`chunked`]: the body, sent chunk by chunk (gzip on several cores)
//!   from buffers kept warm between scrapes.
//!
//! Flow counters are the flow table's u64 totals, written as they are at
//! scrape time: the table is the only place that accumulates, so the output
//! can never drift from it.

pub mod chunked;
pub mod config_metrics;
pub mod flow_families;
pub mod format;
pub mod identity_metrics;
pub mod self_metrics;
pub mod walk_metrics;

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::flows::{FlowTable, Snapshot};
use chunked::ChunkedText;
pub use flow_families::{OVERFLOW_LABELS, OVERFLOW_MARKER};
pub use format::Format;
pub use self_metrics::ExporterInfo;

/// Appends the flow families and the self-metrics, in `format`, to `out`.
pub fn encode(
    out: &mut ChunkedText,
    flows: &FlowTable,
    snapshot: Arc<Snapshot>,
    info: &ExporterInfo,
    format: Format,
) {
    let overflow = flow_families::OverflowTotals {
        bytes: snapshot.overflow(),
        cost: flows.overflow_cost,
    };
    flow_families::write(out, flows, overflow, format);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SelfMetrics {
        snapshot,
        info: info.clone(),
    }));
    // The self-metrics are a few dozen series: prometheus-client's encoder is
    // plenty fast for them, and it ends OpenMetrics with its `# EOF`.
    let encoded = match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(out, &registry),
    };
    encoded.expect("writing into memory cannot fail");
}

/// The self-metrics as a prometheus-client collector.
#[derive(Debug)]
struct SelfMetrics {
    snapshot: Arc<Snapshot>,
    info: ExporterInfo,
}

impl prometheus_client::collector::Collector for SelfMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self_metrics::encode(&mut encoder, &self.snapshot, &self.info)?;
        identity_metrics::encode(&mut encoder, &self.snapshot, &self.info.identity)?;
        if let Some(walks) = &self.snapshot.source.walks {
            walk_metrics::encode(&mut encoder, walks)?;
        }
        match &self.info.cost {
            Some(stats) => config_metrics::cost(&mut encoder, &self.snapshot, stats),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
