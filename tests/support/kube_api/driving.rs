//! Helpers for tests that drive kube-rs in-process against the test API
//! server: a client from its kubeconfig, and waits on watcher streams that
//! fail with what was expected instead of hanging.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::ResourceExt;

use super::KubeApi;

/// How long any one expected thing may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// A kube-rs client configured from `api.kubeconfig()`, as the exporter
/// makes one.
pub async fn client(api: &KubeApi) -> kube::Client {
    let path = api.kubeconfig();
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let options = KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap_or_else(|error| panic!("a client config from {}: {error}", path.display()));
    kube::Client::try_from(config).unwrap_or_else(|error| panic!("a kube client: {error}"))
}

/// `future`'s output, or a panic saying `what` did not come within `WAIT`.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("expected {what} within {WAIT:?}, got nothing"))
}

/// The next watcher event, as `Init`, `InitApply(ns/name)`, `InitDone`,
/// `Apply(ns/name)`, `Delete(ns/name)` or `error: {the error}`, to compare
/// with `assert_eq!`.
pub async fn next_event<K: ResourceExt, S>(stream: &mut S, what: &str) -> String
where
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
{
    let event = within(what, stream.next()).await;
    let name = |k: &K| format!("{}/{}", k.namespace().unwrap_or_default(), k.name_any());
    match event.unwrap_or_else(|| panic!("expected {what}, the watcher ended")) {
        Ok(Event::Init) => "Init".into(),
        Ok(Event::InitApply(k)) => format!("InitApply({})", name(&k)),
        Ok(Event::InitDone) => "InitDone".into(),
        Ok(Event::Apply(k)) => format!("Apply({})", name(&k)),
        Ok(Event::Delete(k)) => format!("Delete({})", name(&k)),
        Err(error) => format!("error: {error}"),
    }
}

/// Polls `events` until the server has one watch open: a watcher sends its
/// requests only while polled, so `KubeApi::wait_for_watchers` alone would
/// wait for ever on the test's own thread. An event meanwhile is a failure.
pub async fn until_watching<S>(api: &KubeApi, events: &mut S, what: &str)
where
    S: Stream + Unpin,
    S::Item: Debug,
{
    let deadline = Instant::now() + WAIT;
    while !api.wait_for_watchers(1, Duration::ZERO) {
        assert!(Instant::now() < deadline, "expected {what} within {WAIT:?}");
        let poll = tokio::time::timeout(Duration::from_millis(20), events.next());
        if let Ok(event) = poll.await {
            panic!("expected {what} and no event, got {event:?}");
        }
    }
}
