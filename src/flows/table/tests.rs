//! FlowTable's unit tests: each byte is added exactly once, whether a
//! scrape credited it or a drain settled it.

use super::*;
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
