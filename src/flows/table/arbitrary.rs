//! FlowTable fed by machines: arbitrary kernel keys (any family, any role,
//! any bytes) and arbitrary counts through every [`FlowSink`] call. Nothing
//! panics, an undecodable key is counted as such, and, when the calls
//! follow the kernel's rules (an entry only grows until a drain takes it),
//! every byte of a decodable key is shown exactly once, in a flow or in the
//! overflow flow.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::kernel::skel::key_bytes;
use crate::source::FlowSink;
use crate::test_support::counted;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Any key bytes; a known family most of the time, so flows get made.
fn any_key() -> impl Strategy<Value = FlowKeyBytes> {
    let len = std::mem::size_of::<FlowKeyBytes>();
    let family = prop_oneof![3 => Just(AF_INET), 3 => Just(AF_INET6), 1 => any::<u16>()];
    (proptest::collection::vec(any::<u8>(), len), family).prop_map(|(bytes, family)| {
        let mut key: FlowKey = from_bytes(&bytes);
        key.family = family;
        key_bytes(&key)
    })
}

fn decodable(key: &FlowKeyBytes) -> bool {
    decode_key(&from_bytes::<FlowKey>(key)).is_some()
}

/// What a source does, by the kernel's rules.
#[derive(Clone, Debug)]
enum Step {
    /// The probes count bytes on key number `.0` of the table they write.
    Grow(usize, u32, u32),
    /// A scrape credits every entry of the written table.
    Scrape,
    /// A drain settles every entry of the table the probes left.
    Drain,
    /// The socket backend adds a growth straight away.
    Add(usize, u32, u32),
    Expire(u64),
}

fn step(keys: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..keys, any::<u32>(), any::<u32>()).prop_map(|(k, s, r)| Step::Grow(k, s, r)),
        1 => Just(Step::Scrape),
        1 => Just(Step::Drain),
        2 => (0..keys, any::<u32>(), any::<u32>()).prop_map(|(k, s, r)| Step::Add(k, s, r)),
        1 => (0u64..100).prop_map(Step::Expire),
    ]
}

/// Everything the table shows: its flows and the overflow flow.
fn shown(table: &FlowTable) -> (u64, u64) {
    table.series().fold(
        (table.overflow.sent, table.overflow.received),
        |(s, r), series| (s + series.sent, r + series.received),
    )
}

proptest! {
    #[test]
    fn any_key_and_any_count_never_panic(
        calls in proptest::collection::vec(
            (any_key(), 0u8..4, any::<u64>(), any::<u64>(), any::<u64>()), 0..40),
        limit in 1usize..5,
    ) {
        let mut table = FlowTable::new(limit, 10);
        for (key, call, sent, received, at) in calls {
            match call {
                0 => table.add(&key, sent, received, at),
                1 => table.credit(&key, &counted(sent, received, at)),
                2 => table.settle(&key, &counted(sent, received, at)),
                _ => table.expire(at),
            }
            prop_assert!(table.len() <= limit);
        }
        table.table_drained();
        let _ = table.flows();
    }

    #[test]
    fn every_byte_of_a_decodable_key_is_shown_once(
        keys in proptest::collection::vec(any_key(), 1..8),
        steps in proptest::collection::vec(step(8), 0..60),
        limit in 1usize..6,
    ) {
        // Expiry at a timeout of 1000 ns never drops a flow here (the clock
        // stays below it): what is shown only grows.
        let mut table = FlowTable::new(limit, 1_000);
        let mut written: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
        let (mut moved, mut undecodable) = ((0u64, 0u64), 0u64);
        let mut before = (0, 0);
        for step in steps {
            match step {
                Step::Grow(k, s, r) => {
                    let k = k % keys.len();
                    let entry = written.entry(k).or_default();
                    *entry = (entry.0 + u64::from(s), entry.1 + u64::from(r));
                }
                Step::Scrape => {
                    for (&k, &(s, r)) in &written {
                        table.credit(&keys[k], &counted(s, r, 1));
                    }
                }
                Step::Drain => {
                    for (k, (s, r)) in std::mem::take(&mut written) {
                        table.settle(&keys[k], &counted(s, r, 1));
                        if decodable(&keys[k]) {
                            moved = (moved.0 + s, moved.1 + r);
                        } else {
                            undecodable += 1;
                        }
                    }
                    table.table_drained();
                }
                Step::Add(k, s, r) => {
                    let key = &keys[k % keys.len()];
                    table.add(key, u64::from(s), u64::from(r), 1);
                    if decodable(key) {
                        moved = (moved.0 + u64::from(s), moved.1 + u64::from(r));
                    } else {
                        undecodable += 1;
                    }
                }
                Step::Expire(now) => table.expire(now),
            }
            let now = shown(&table);
            prop_assert!(now.0 >= before.0 && now.1 >= before.1, "{before:?} -> {now:?}");
            before = now;
        }
        // The last drain settles what is still written.
        for (k, (s, r)) in std::mem::take(&mut written) {
            table.settle(&keys[k], &counted(s, r, 1));
            if decodable(&keys[k]) {
                moved = (moved.0 + s, moved.1 + r);
            } else {
                undecodable += 1;
            }
        }
        prop_assert_eq!(shown(&table), moved);
        prop_assert_eq!(table.undecodable, undecodable);
    }
}
