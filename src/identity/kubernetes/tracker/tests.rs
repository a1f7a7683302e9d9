use std::io::Write;
use std::net::IpAddr;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::Status;

use super::*;
use crate::identity::kubernetes::health::KindHealth;
use crate::identity::kubernetes::objects::SlimPod;

fn slim_pod(uid: &str, ip: &str) -> SlimPod {
    let pod = serde_json::json!({
        "metadata": {"name": format!("pod-{uid}"), "namespace": "shop", "uid": uid, "resourceVersion": "1"},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
    });
    serde_json::from_value(pod).unwrap()
}

fn pod_update(event: Event<SlimPod>) -> Update {
    Update {
        kind: ResourceKind::Pod,
        result: Ok(Change::from_event(event, |pod| {
            pod.into_facts().map(Facts::Pod)
        })),
    }
}

fn marker(kind: ResourceKind, change: Change) -> Update {
    Update {
        kind,
        result: Ok(Some(change)),
    }
}

fn forbidden(kind: ResourceKind) -> Update {
    let status = Status::failure(
        "pods is forbidden: User \"system:serviceaccount:x\"\ncannot list",
        "Forbidden",
    )
    .with_code(403);
    Update {
        kind,
        result: Err(watcher::Error::InitialListFailed(kube::Error::Api(
            status.boxed(),
        ))),
    }
}

fn gone(kind: ResourceKind) -> Update {
    let status = Status::failure("too old resource version", "Expired").with_code(410);
    Update {
        kind,
        result: Err(watcher::Error::WatchError(status.boxed())),
    }
}

fn name_at(builder: &mut IndexBuilder, ip: &str) -> Option<String> {
    let index = builder.snapshot();
    index
        .peer(ip.parse::<IpAddr>().unwrap())
        .map(|peer| peer.name.to_owned())
}

struct Setup {
    tracker: Tracker,
    builder: IndexBuilder,
    health: Arc<KubeHealth>,
    start: Instant,
}

fn setup() -> Setup {
    let health = Arc::new(KubeHealth::new());
    Setup {
        tracker: Tracker::new(health.clone()),
        builder: IndexBuilder::new("node-a"),
        health,
        start: Instant::now(),
    }
}

impl Setup {
    fn feed(&mut self, update: Update) -> Outcome {
        self.feed_at(update, 0)
    }

    fn feed_at(&mut self, update: Update, seconds: u64) -> Outcome {
        let now = self.start + Duration::from_secs(seconds);
        self.tracker
            .handle(update, &mut self.builder, now, 1_700_000_000 + seconds)
    }

    fn pods(&self) -> KindHealth {
        self.health.read()[0].clone()
    }
}

#[test]
fn a_relist_after_410_gone_drops_pods_deleted_while_disconnected() {
    let mut s = setup();
    assert_eq!(s.feed(pod_update(Event::Init)), Outcome::default());
    assert!(
        !s.feed(pod_update(Event::InitApply(slim_pod("a", "10.0.0.1"))))
            .changed
    );
    assert!(
        !s.feed(pod_update(Event::InitApply(slim_pod("b", "10.0.0.2"))))
            .changed
    );
    assert_eq!(s.pods().state, WatchState::Initializing);
    assert!(s.feed_at(pod_update(Event::InitDone), 3).changed);
    assert_eq!(
        s.pods(),
        KindHealth {
            kind: ResourceKind::Pod,
            state: WatchState::Synced,
            last_sync_unix: 1_700_000_003,
            watch_errors: 0,
            objects: 2,
        }
    );
    // The server forgot our resourceVersion; b was deleted meanwhile.
    s.feed(gone(ResourceKind::Pod));
    assert_eq!(
        (s.pods().state, s.pods().watch_errors),
        (WatchState::Synced, 0)
    );
    s.feed(pod_update(Event::Init));
    s.feed(pod_update(Event::InitApply(slim_pod("a", "10.0.0.1"))));
    assert_eq!(
        name_at(&mut s.builder, "10.0.0.2").as_deref(),
        Some("pod-b")
    );
    s.feed(pod_update(Event::InitDone));
    assert_eq!(name_at(&mut s.builder, "10.0.0.2"), None);
    assert_eq!(
        name_at(&mut s.builder, "10.0.0.1").as_deref(),
        Some("pod-a")
    );
    assert_eq!(s.pods().objects, 1);
}

#[test]
fn live_events_apply_and_delete_by_uid() {
    let mut s = setup();
    s.feed(pod_update(Event::Init));
    s.feed(pod_update(Event::InitDone));
    assert!(
        s.feed_at(pod_update(Event::Apply(slim_pod("a", "10.0.0.1"))), 7)
            .changed
    );
    assert_eq!(s.pods().last_sync_unix, 1_700_000_007);
    assert!(
        s.feed(pod_update(Event::Delete(slim_pod("a", "10.0.0.1"))))
            .changed
    );
    assert_eq!(name_at(&mut s.builder, "10.0.0.1"), None);
    assert_eq!(s.pods().objects, 0);
}

#[test]
fn the_first_full_sync_is_announced_once() {
    let mut s = setup();
    for kind in ResourceKind::ALL {
        s.feed(marker(kind, Change::Relist));
    }
    let (last, others) = ResourceKind::ALL.split_last().unwrap();
    for &kind in others {
        assert!(
            !s.feed(marker(kind, Change::Listed)).first_full_sync,
            "{kind:?}"
        );
    }
    assert!(s.feed(marker(*last, Change::Listed)).first_full_sync);
    s.feed(marker(ResourceKind::Pod, Change::Relist));
    assert!(
        !s.feed(marker(ResourceKind::Pod, Change::Listed))
            .first_full_sync
    );
}

#[test]
fn forbidden_marks_failing_once_keeps_data_and_recovers() {
    let mut s = setup();
    s.feed(pod_update(Event::Init));
    s.feed(pod_update(Event::InitApply(slim_pod("a", "10.0.0.1"))));
    s.feed(pod_update(Event::InitDone));
    let logs = captured_logs(|| {
        s.feed_at(forbidden(ResourceKind::Pod), 10);
        s.feed_at(forbidden(ResourceKind::Pod), 40);
    });
    assert_eq!(logs.matches("watching fails").count(), 1, "{logs}");
    assert!(logs.contains("Forbidden"), "{logs}");
    assert_eq!(logs.lines().count(), 1, "the reason is on one line: {logs}");
    assert_eq!(
        (s.pods().state, s.pods().watch_errors),
        (WatchState::Failing, 2)
    );
    assert_eq!(
        name_at(&mut s.builder, "10.0.0.1").as_deref(),
        Some("pod-a")
    );

    // Quiet for less than QUIET_RECOVERY after the last error: still failing.
    s.tracker
        .recover_quiet(s.start + Duration::from_secs(40) + QUIET_RECOVERY - Duration::from_secs(1));
    assert_eq!(s.pods().state, WatchState::Failing);
    s.tracker
        .recover_quiet(s.start + Duration::from_secs(40) + QUIET_RECOVERY);
    assert_eq!(s.pods().state, WatchState::Synced);

    // A live event proves recovery at once.
    s.feed(forbidden(ResourceKind::Pod));
    s.feed(pod_update(Event::Apply(slim_pod("b", "10.0.0.2"))));
    assert_eq!(
        (s.pods().state, s.pods().watch_errors),
        (WatchState::Synced, 3)
    );
}

#[test]
fn a_kind_that_never_listed_stays_failing_while_it_retries_the_list() {
    let mut s = setup();
    s.feed(marker(ResourceKind::Job, Change::Relist));
    s.feed(forbidden(ResourceKind::Job));
    // kube-rs emits Init before each list attempt.
    s.feed(marker(ResourceKind::Job, Change::Relist));
    s.tracker.recover_quiet(s.start + QUIET_RECOVERY * 2);
    let jobs = &s.health.read()[4];
    assert_eq!(
        (jobs.kind, jobs.state, jobs.watch_errors),
        (ResourceKind::Job, WatchState::Failing, 1)
    );
    s.feed(marker(ResourceKind::Job, Change::Listed));
    assert_eq!(s.health.state(ResourceKind::Job), WatchState::Synced);
}

#[test]
fn deletes_are_keyed_by_the_objects_uid() {
    let delete = Change::from_event(Event::Delete(slim_pod("u-9", "10.0.0.9")), |_| None);
    assert_eq!(delete, Some(Change::Delete("u-9".into())));
    let mut no_uid = Pod {
        metadata: ObjectMeta::default(),
        ..Default::default()
    };
    no_uid.metadata.name = Some("x".into());
    let no_uid: SlimPod = serde_json::from_value(serde_json::to_value(&no_uid).unwrap()).unwrap();
    assert_eq!(Change::from_event(Event::Delete(no_uid), |_| None), None);
}

#[test]
fn one_line_joins_lines_and_spaces() {
    assert_eq!(one_line("bad\n  yaml:\tline 3\n"), "bad yaml: line 3");
}

/// Runs `body` with a subscriber that writes plain log lines to a buffer.
fn captured_logs(body: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::with_default(subscriber, body);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}
