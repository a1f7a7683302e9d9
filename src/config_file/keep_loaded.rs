//! The background task that keeps a configuration file loaded: on SIGHUP,
//! and when the file changes on disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{Loadable, WatchedFile};

#[cfg(test)]
mod tests;

/// How often the file's metadata is compared: one stat() a second.
const POLL_PERIOD: Duration = Duration::from_secs(1);

/// What a file's task did, for self-metrics.
#[derive(Debug, Default)]
pub struct FileStats {
    reloads_succeeded: AtomicU64,
    reloads_failed: AtomicU64,
    last_load_unix_seconds: AtomicU64,
    entries_loaded: AtomicU64,
}

impl FileStats {
    pub fn new() -> FileStats {
        FileStats::default()
    }

    /// Reloads that replaced the contents (not counting the first load).
    pub fn reloads_succeeded(&self) -> u64 {
        self.reloads_succeeded.load(Ordering::Relaxed)
    }

    /// Reloads that failed and left the old contents in force.
    pub fn reloads_failed(&self) -> u64 {
        self.reloads_failed.load(Ordering::Relaxed)
    }

    /// When the contents in force were loaded, in seconds since the epoch;
    /// 0 before [`keep_loaded`] starts.
    pub fn last_load_unix_seconds(&self) -> u64 {
        self.last_load_unix_seconds.load(Ordering::Relaxed)
    }

    /// How many entries (networks, prices) are in force.
    pub fn entries_loaded(&self) -> u64 {
        self.entries_loaded.load(Ordering::Relaxed)
    }

    fn record_load<T: Loadable>(&self, file: &WatchedFile<T>) {
        let seconds = file
            .loaded_at()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.last_load_unix_seconds
            .store(seconds, Ordering::Relaxed);
        self.entries_loaded
            .store(file.current().entries() as u64, Ordering::Relaxed);
    }
}

/// Reloads `file` on SIGHUP and when it changes on disk (polled once a
/// second), and publishes each new version. A bad file logs one warning and
/// leaves the old version in force. Returns when every receiver is gone.
///
/// The version at start is not published again: the channel is expected to
/// have been created with `file.current()`.
pub async fn keep_loaded<T: Loadable>(
    file: WatchedFile<T>,
    publish: watch::Sender<Arc<T>>,
    stats: Arc<FileStats>,
) {
    let hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(error) => {
            tracing::warn!(
                "cannot handle SIGHUP ({error}); {} is still reloaded when it changes",
                file.path().display()
            );
            None
        }
    };
    keep_loaded_with(file, publish, stats, hangups, POLL_PERIOD).await
}

/// [`keep_loaded`] with its signals and poll period given, for tests: a
/// SIGHUP reaches every handler in the process, so only the test about
/// SIGHUP listens for it.
async fn keep_loaded_with<T: Loadable>(
    mut file: WatchedFile<T>,
    publish: watch::Sender<Arc<T>>,
    stats: Arc<FileStats>,
    mut hangups: Option<Signal>,
    period: Duration,
) {
    stats.record_load(&file);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // File reads here block the runtime briefly: the file is small and
        // local, and nothing is read unless its metadata changed.
        let outcome = tokio::select! {
            _ = ticks.tick() => file.reload_if_changed(),
            Some(()) = next_hangup(&mut hangups) => file.reload(),
            () = publish.closed() => return,
        };
        match outcome {
            Ok(false) => {}
            Ok(true) => {
                stats.reloads_succeeded.fetch_add(1, Ordering::Relaxed);
                stats.record_load(&file);
                tracing::info!(
                    "loaded {} from {}",
                    file.current().summary(),
                    file.path().display()
                );
                publish.send_replace(file.current());
            }
            Err(error) => {
                stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "{} not reloaded, the {} loaded before stay in force: {error}",
                    T::WHAT,
                    file.current().summary()
                );
            }
        }
    }
}

/// The next SIGHUP, or never when it cannot be handled.
async fn next_hangup(hangups: &mut Option<Signal>) -> Option<()> {
    match hangups {
        Some(hangups) => hangups.recv().await,
        None => std::future::pending().await,
    }
}
