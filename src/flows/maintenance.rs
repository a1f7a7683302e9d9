//! The background loop that keeps the kernel's maps from filling between
//! scrapes. It runs beside the web server, never inside it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::warn;

use super::reader::{lock, FlowReader};

/// How often sources do their slower work (the per-event tables are
/// switched and drained, closed connections collected) between scrapes.
/// The kernel tables only have to hold the flows active within one
/// interval, and idle flows expire with this granularity.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Runs [`FlowReader::maintain`] every [`INTERVAL`], off the async
/// runtime: a drain waits for an RCU grace period and takes syscalls.
pub async fn run(reader: Arc<Mutex<FlowReader>>) {
    let mut interval = tokio::time::interval(INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let reader = reader.clone();
        let result = tokio::task::spawn_blocking(move || {
            if let Err(e) = lock(&reader).maintain() {
                warn!(error = %e, "draining the kernel flow table failed");
            }
        })
        .await;
        if let Err(e) = result {
            warn!(error = %e, "the drain task failed");
        }
    }
}
