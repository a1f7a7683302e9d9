//! FlowTable's unit tests: each byte is added exactly once, whether a
//! scrape credited it or a drain settled it.

use super::*;
use crate::cost::Prices;
use crate::source::FlowSink;
use crate::test_support::{counted, key_with_port, totals_by_port};

/// A drained kernel entry (the probes no longer write its table).
fn add(table: &mut FlowTable, port: u16, sent: u64, received: u64, at: u64) {
    table.settle(&key_with_port(port), &counted(sent, received, at));
}

/// A scrape's read of the kernel table the probes write.
fn credit(table: &mut FlowTable, port: u16, sent: u64, received: u64, at: u64) {
    table.credit(&key_with_port(port), &counted(sent, received, at));
}

fn totals(table: &FlowTable) -> Vec<(u16, u64, u64)> {
    totals_by_port(table)
}

#[test]
fn deltas_accumulate_per_flow() {
    let mut table = FlowTable::new(10, 1_000);
    add(&mut table, 1, 10, 0, 5);
    add(&mut table, 2, 0, 7, 5);
    add(&mut table, 1, 5, 3, 6);
    assert_eq!(totals(&table), vec![(1, 15, 3), (2, 0, 7)]);
}

#[test]
fn flows_beyond_the_limit_go_to_overflow() {
    let mut table = FlowTable::new(1, 1_000);
    add(&mut table, 1, 10, 1, 5);
    add(&mut table, 2, 20, 2, 5);
    add(&mut table, 1, 1, 0, 6);
    assert_eq!(totals(&table), vec![(1, 11, 1)]);
    assert_eq!(
        table.overflow,
        Overflow {
            sent: 20,
            received: 2
        }
    );
}

#[test]
fn idle_flows_expire_and_free_room() {
    let mut table = FlowTable::new(1, 100);
    add(&mut table, 1, 10, 0, 1_000);
    table.expire(1_100);
    assert_eq!(table.len(), 1, "idle for exactly the timeout: kept");
    table.expire(1_101);
    assert_eq!((table.len(), table.expired), (0, 1));
    add(&mut table, 2, 4, 0, 1_200);
    assert_eq!(totals(&table), vec![(2, 4, 0)]);
    assert_eq!(table.overflow, Overflow::default());
}

#[test]
fn a_new_flow_older_than_every_kept_one_still_expires_on_time() {
    let mut table = FlowTable::new(10, 100);
    add(&mut table, 1, 10, 0, 1_000);
    // Nothing can be idle before 1_100 now; this pass learns that.
    table.expire(1_050);
    // A kernel entry last written long ago, first read now.
    add(&mut table, 2, 5, 0, 500);
    table.expire(601);
    assert_eq!(totals(&table), vec![(1, 10, 0)]);
    assert_eq!(table.expired, 1);
}

#[test]
fn each_byte_is_added_once_across_scrape_reads_and_the_drain() {
    let mut table = FlowTable::new(10, u64::MAX);
    credit(&mut table, 1, 10, 0, 5);
    assert_eq!(totals(&table), vec![(1, 10, 0)]);
    // Read again: only the growth counts, and a new entry in full.
    credit(&mut table, 1, 15, 2, 6);
    credit(&mut table, 2, 7, 0, 6);
    assert_eq!(totals(&table), vec![(1, 15, 2), (2, 7, 0)]);
    // The drain holds what the probes wrote after the last read, too.
    add(&mut table, 1, 20, 2, 7);
    add(&mut table, 2, 7, 1, 7);
    add(&mut table, 3, 4, 4, 7);
    assert_eq!(totals(&table), vec![(1, 20, 2), (2, 7, 1), (3, 4, 4)]);
    // The next kernel table starts from nothing.
    credit(&mut table, 1, 5, 0, 8);
    add(&mut table, 1, 6, 0, 9);
    add(&mut table, 2, 1, 0, 9);
    assert_eq!(totals(&table), vec![(1, 26, 2), (2, 8, 1), (3, 4, 4)]);
}

#[test]
fn a_new_flow_beyond_the_limit_overflows_once() {
    let mut table = FlowTable::new(1, u64::MAX);
    credit(&mut table, 1, 1, 0, 5);
    credit(&mut table, 2, 10, 0, 5);
    assert_eq!(
        table.overflow,
        Overflow {
            sent: 10,
            received: 0
        }
    );
    credit(&mut table, 2, 12, 0, 5);
    assert_eq!(
        table.overflow,
        Overflow {
            sent: 12,
            received: 0
        }
    );
    add(&mut table, 1, 1, 0, 6);
    add(&mut table, 2, 25, 3, 6);
    assert_eq!(totals(&table), vec![(1, 1, 0)]);
    assert_eq!(
        table.overflow,
        Overflow {
            sent: 25,
            received: 3
        }
    );
}

#[test]
fn a_flow_a_scrape_took_from_stays_until_the_drain() {
    let mut table = FlowTable::new(10, 100);
    credit(&mut table, 1, 10, 0, 1_000);
    table.expire(5_000);
    assert_eq!(table.len(), 1, "idle, but its bytes are not settled");
    add(&mut table, 1, 12, 0, 1_000);
    assert_eq!(totals(&table), vec![(1, 12, 0)]);
    table.expire(5_000);
    assert_eq!((table.len(), table.expired), (0, 1));
}

#[test]
fn a_drain_settled_over_two_tries_adds_each_byte_once() {
    let mut table = FlowTable::new(1, u64::MAX);
    credit(&mut table, 1, 10, 0, 5);
    credit(&mut table, 2, 20, 0, 5);
    // The first try gets only flow 1's entry; flow 2's (overflowed at the
    // scrape) stays in the kernel, and what the scrape took of it is kept.
    add(&mut table, 1, 12, 0, 6);
    // The second try gets the rest, and the drain is complete.
    add(&mut table, 2, 25, 0, 6);
    table.table_drained();
    assert_eq!(totals(&table), vec![(1, 12, 0)]);
    assert_eq!(table.overflow.sent, 25);
}

/// Identity by the key's cgroup, from a script the test changes between
/// generations: cgroup → workload name.
#[derive(Debug, Default)]
struct Scripted {
    workloads: std::collections::HashMap<u64, &'static str>,
    generation: u64,
    interner: crate::identity::labels::Interner,
}

/// The script, shared with the table that owns the identity.
#[derive(Clone, Debug, Default)]
struct Script(std::sync::Arc<std::sync::Mutex<Scripted>>);

impl Script {
    fn set(&self, cgroup: u64, workload: &'static str) {
        let mut scripted = self.0.lock().unwrap();
        scripted.workloads.insert(cgroup, workload);
        scripted.generation += 1;
    }
}

impl crate::identity::resolver::Identify for Script {
    fn refresh(&mut self) -> u64 {
        self.0.lock().unwrap().generation
    }

    fn identify(&mut self, flow: &crate::identity::resolver::FlowEnds) -> Arc<Identity> {
        use crate::identity::labels::{Local, Path, Peer};
        let mut scripted = self.0.lock().unwrap();
        let workload = scripted.workloads.get(&flow.cgroup).copied().unwrap_or("");
        let local = Local {
            workload: workload.into(),
            ..Local::default()
        };
        let peer = Peer::of_kind(crate::identity::PeerKind::Loopback);
        scripted
            .interner
            .intern(Identity::new(local, peer, Path::Loopback))
    }

    fn prune(&mut self) {}
}

fn scripted_table(limit: usize, timeout: u64) -> (FlowTable, Script) {
    let script = Script::default();
    let table = FlowTable::with_identity(limit, timeout, Box::new(script.clone()));
    (table, script)
}

/// Every series as (workload, sent, received), sorted.
fn by_workload(table: &FlowTable) -> Vec<(String, u64, u64)> {
    let mut all: Vec<_> = table
        .series()
        .map(|s| {
            (
                s.labels.identity.local.workload.to_string(),
                s.sent,
                s.received,
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn keys_with_equal_labels_add_into_one_series() {
    use crate::test_support::key_in_cgroup;
    let (mut table, script) = scripted_table(10, u64::MAX);
    // Two containers of one pod: two cgroups, one workload.
    script.set(7, "web");
    script.set(8, "web");
    table.refresh_identity();
    table.add(&key_in_cgroup(1, 7), 10, 1, 5);
    table.add(&key_in_cgroup(1, 8), 20, 2, 5);
    assert_eq!(by_workload(&table), vec![("web".into(), 30, 3)]);
    // A third cgroup on the same addresses is another workload: its own series.
    script.set(9, "batch");
    table.refresh_identity();
    table.add(&key_in_cgroup(1, 9), 4, 0, 6);
    assert_eq!(
        by_workload(&table),
        vec![("batch".into(), 4, 0), ("web".into(), 30, 3)]
    );
}

#[test]
fn a_new_identity_starts_a_new_series_and_no_byte_is_counted_twice() {
    use crate::test_support::key_in_cgroup;
    let (mut table, script) = scripted_table(10, 100);
    let key = key_in_cgroup(1, 7);
    script.set(7, "old");
    table.refresh_identity();
    credit_key(&mut table, &key, 10, 1, 1_000);
    // The facts change between two reads of the same kernel entry: what the
    // entry grew by since goes to the new identity only.
    script.set(7, "new");
    table.refresh_identity();
    credit_key(&mut table, &key, 15, 1, 1_050);
    assert_eq!(
        by_workload(&table),
        vec![("new".into(), 5, 0), ("old".into(), 10, 1)]
    );
    // The drain settles the rest into the new series.
    table.settle(&key, &counted(18, 2, 1_060));
    table.table_drained();
    assert_eq!(
        by_workload(&table),
        vec![("new".into(), 8, 1), ("old".into(), 10, 1)]
    );
    // The old series no longer grows: it expires, and the new one stays.
    table.expire(1_120);
    assert_eq!(by_workload(&table), vec![("new".into(), 8, 1)]);
    assert_eq!(table.expired, 1);
}

#[test]
fn a_new_identity_without_room_overflows_and_the_old_series_keeps_its_bytes() {
    use crate::test_support::key_in_cgroup;
    let (mut table, script) = scripted_table(1, u64::MAX);
    let key = key_in_cgroup(1, 7);
    script.set(7, "old");
    table.refresh_identity();
    credit_key(&mut table, &key, 10, 0, 5);
    script.set(7, "new");
    table.refresh_identity();
    credit_key(&mut table, &key, 14, 0, 6);
    table.settle(&key, &counted(20, 0, 7));
    table.table_drained();
    assert_eq!(by_workload(&table), vec![("old".into(), 10, 0)]);
    assert_eq!(table.overflow.sent, 10, "4 at the scrape, 6 at the drain");
}

#[test]
fn unresolved_counts_follow_flows_as_they_come_and_go() {
    use crate::test_support::key_in_cgroup;
    let (mut table, script) = scripted_table(10, 100);
    script.set(7, "web");
    table.refresh_identity();
    table.add(&key_in_cgroup(1, 7), 1, 0, 1_000);
    table.add(&key_in_cgroup(2, 8), 1, 0, 1_000);
    table.add(&key_in_cgroup(3, 9), 1, 0, 1_050);
    let unresolved = |src| Unresolved { src, dst: 0 };
    assert_eq!(
        table.unresolved(),
        unresolved(2),
        "cgroups 8 and 9 have no name"
    );
    table.expire(1_120);
    assert_eq!(
        table.unresolved(),
        unresolved(1),
        "cgroup 8's series expired"
    );
    table.expire(1_151);
    assert_eq!(table.unresolved(), unresolved(0));
}

fn credit_key(table: &mut FlowTable, key: &FlowKeyBytes, sent: u64, received: u64, at: u64) {
    table.credit(key, &counted(sent, received, at));
}

#[test]
fn flows_that_agree_on_the_chosen_labels_add_into_one_series() {
    use crate::flows::selection::LabelSelection;
    use crate::test_support::key_in_cgroup;
    let (table, script) = scripted_table(10, 100);
    let mut table = table.with_selection(LabelSelection::parse("src_workload,role").unwrap());
    // Two pods of one workload, on other ports, and another workload.
    script.set(7, "web");
    script.set(8, "web");
    script.set(9, "batch");
    table.refresh_identity();
    table.add(&key_in_cgroup(1, 7), 10, 1, 1_000);
    table.add(&key_in_cgroup(2, 8), 20, 2, 1_050);
    table.add(&key_in_cgroup(3, 9), 4, 0, 1_050);
    assert_eq!(
        by_workload(&table),
        vec![("batch".into(), 4, 0), ("web".into(), 30, 3)]
    );
    // One of web's flows ends: the series keeps its bytes and grows on.
    table.expire(1_120);
    table.add(&key_in_cgroup(2, 8), 5, 0, 1_130);
    assert_eq!(
        by_workload(&table),
        vec![("batch".into(), 4, 0), ("web".into(), 35, 3)]
    );
    // A new flow of web joins the same series.
    table.add(&key_in_cgroup(4, 7), 1, 1, 1_140);
    assert_eq!(by_workload(&table)[1], ("web".into(), 36, 4));
    let series = table
        .series()
        .find(|s| &*s.labels.identity.local.workload == "web");
    let labels = &series.unwrap().labels;
    assert_eq!(labels.local.port(), 0, "src_port is not shown");
    assert_eq!(labels.identity.text(), ",src_workload=\"web\"");
}

fn priced_table(limit: usize) -> (FlowTable, watch::Sender<Arc<Prices>>) {
    use crate::cost::{Price, Unit};
    use crate::identity::labels::Path;
    let prices = Prices::new(
        "USD".into(),
        Unit::Gib,
        vec![(
            Path::Loopback,
            Price {
                egress: Some(1.0),
                ingress: Some(2.0),
            },
        )],
        vec![],
    );
    let (publish, feed) = watch::channel(Arc::new(prices));
    let (table, script) = scripted_table(limit, u64::MAX);
    script.set(7, "web");
    let mut table = table.with_prices(feed);
    table.refresh_identity();
    (table, publish)
}

const GIB: u64 = 1 << 30;

#[test]
fn bytes_are_priced_at_the_prices_in_force_when_they_are_read() {
    use crate::cost::{Price, Unit};
    use crate::identity::labels::Path;
    use crate::test_support::key_in_cgroup;
    let (mut table, publish) = priced_table(10);
    let key = key_in_cgroup(1, 7);
    table.add(&key, 2 * GIB, GIB, 5);
    let cost = |table: &FlowTable| table.series().map(|s| s.cost).sum::<f64>();
    assert_eq!(cost(&table), 2.0 * 1.0 + 1.0 * 2.0);
    // Egress costs 3 from now on; what was read before keeps its price.
    publish.send_replace(Arc::new(Prices::new(
        "USD".into(),
        Unit::Gib,
        vec![(
            Path::Loopback,
            Price {
                egress: Some(3.0),
                ingress: None,
            },
        )],
        vec![],
    )));
    table.add(&key, GIB, GIB, 6);
    assert_eq!(
        cost(&table),
        4.0 + (1.0 + 2.0),
        "not refreshed yet: old prices"
    );
    table.refresh_identity();
    table.add(&key, GIB, GIB, 7);
    assert_eq!(cost(&table), 7.0 + 3.0, "ingress left out: 0");
}

#[test]
fn the_overflow_flow_is_priced_too() {
    use crate::test_support::key_in_cgroup;
    let (mut table, _publish) = priced_table(1);
    table.add(&key_in_cgroup(1, 7), GIB, 0, 5);
    // No room: a scrape's credit and the drain both go to the overflow flow.
    let full = key_in_cgroup(2, 7);
    table.credit(&full, &counted(GIB, 0, 5));
    table.settle(&full, &counted(2 * GIB, GIB, 6));
    assert_eq!(table.overflow.sent, 2 * GIB);
    assert_eq!(table.overflow_cost, 2.0 + 2.0);
}
