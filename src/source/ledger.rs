//! The socket backend's connections: their last known totals, so that only
//! growth reaches the flows.
//!
//! Every walk reports each live connection's totals since counting started,
//! and a destroyed connection leaves its final totals once. A connection is
//! named by (socket address, id); the kernel reuses socket addresses, never
//! that pair. Reading a connection twice adds nothing twice.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::FlowSink;
use crate::kernel::skel::{key_bytes, ConnectionTotals, FlowKeyBytes};

/// Walks a connection may be missing from before it is forgotten without a
/// final: its final is written right after it leaves the walk, so by then
/// the final was lost (closed_sockets full) and `finals_dropped` says so.
const MISSED_WALKS_BEFORE_FORGETTING: u8 = 3;

#[derive(Debug)]
struct Known {
    key: FlowKeyBytes,
    sent: u64,
    received: u64,
    /// Walks since this connection last appeared in one.
    missed_walks: u8,
}

#[derive(Debug, Default)]
pub struct Ledger {
    live: HashMap<(u64, u64), Known, RandomState>,
    /// Connections forgotten without a final total.
    pub forgotten: u64,
}

impl Ledger {
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// One walk's totals of every live connection.
    pub fn walked(&mut self, walk: &[ConnectionTotals], sink: &mut dyn FlowSink, now_ns: u64) {
        for known in self.live.values_mut() {
            known.missed_walks = known.missed_walks.saturating_add(1);
        }
        for t in walk {
            let known = self.live.entry((t.socket, t.id)).or_insert_with(|| Known {
                key: key_bytes(&t.key),
                sent: 0,
                received: 0,
                missed_walks: 0,
            });
            known.missed_walks = 0;
            let (sent, received) = growth(known, t);
            if sent | received != 0 {
                sink.add(&known.key, sent, received, now_ns);
            }
        }
        let before = self.live.len();
        self.live
            .retain(|_, k| k.missed_walks < MISSED_WALKS_BEFORE_FORGETTING);
        self.forgotten += (before - self.live.len()) as u64;
    }

    /// Final totals of connections that ended.
    pub fn finished(
        &mut self,
        finals: impl IntoIterator<Item = ConnectionTotals>,
        sink: &mut dyn FlowSink,
        now_ns: u64,
    ) {
        for t in finals {
            let mut known = self.live.remove(&(t.socket, t.id)).unwrap_or(Known {
                key: key_bytes(&t.key),
                sent: 0,
                received: 0,
                missed_walks: 0,
            });
            let (sent, received) = growth(&mut known, &t);
            if sent | received != 0 {
                sink.add(&known.key, sent, received, now_ns);
            }
        }
    }
}

/// What `t` adds to what was known, which it then becomes. Totals never go
/// back; a lower reading is ignored.
fn growth(known: &mut Known, t: &ConnectionTotals) -> (u64, u64) {
    let sent = t.sent.saturating_sub(known.sent);
    let received = t.received.saturating_sub(known.received);
    known.sent += sent;
    known.received += received;
    (sent, received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{connection, key, Recorder, Role};

    fn totals(socket: u64, id: u64, port: u16, sent: u64, received: u64) -> ConnectionTotals {
        let key = key(&format!("10.0.0.1:{port}"), "10.0.0.2:80", Role::Unknown);
        connection(socket, id, &key, sent, received)
    }

    fn flow(table: &Recorder) -> Vec<(u64, u64)> {
        table.totals()
    }

    #[test]
    fn only_growth_reaches_the_flows() {
        let (mut ledger, mut table) = (Ledger::default(), Recorder::default());
        ledger.walked(&[totals(1, 7, 5, 100, 10)], &mut table, 1);
        ledger.walked(&[totals(1, 7, 5, 100, 10)], &mut table, 2);
        assert_eq!(
            flow(&table),
            [(100, 10)],
            "a connection read twice counts once"
        );
        ledger.walked(&[totals(1, 7, 5, 150, 10)], &mut table, 3);
        ledger.walked(&[totals(1, 7, 5, 140, 12)], &mut table, 4);
        assert_eq!(flow(&table), [(150, 12)], "a lower reading adds nothing");
        ledger.finished([totals(1, 7, 5, 160, 20)], &mut table, 5);
        assert_eq!(flow(&table), [(160, 20)]);
        assert!(ledger.is_empty(), "a finished connection is forgotten");
    }

    #[test]
    fn a_reused_socket_address_is_a_new_connection() {
        let (mut ledger, mut table) = (Ledger::default(), Recorder::default());
        ledger.walked(&[totals(1, 7, 5, 100, 0)], &mut table, 1);
        ledger.finished([totals(1, 7, 5, 100, 0)], &mut table, 2);
        ledger.walked(&[totals(1, 8, 5, 30, 0)], &mut table, 3);
        assert_eq!(flow(&table), [(130, 0)]);
    }

    #[test]
    fn a_connection_that_ends_between_walks_counts_in_full() {
        let (mut ledger, mut table) = (Ledger::default(), Recorder::default());
        ledger.finished([totals(3, 9, 5, 42, 24)], &mut table, 1);
        assert_eq!(flow(&table), [(42, 24)]);
        assert_eq!(ledger.len(), 0);
    }

    #[test]
    fn a_connection_missing_from_walks_without_a_final_is_forgotten() {
        let (mut ledger, mut table) = (Ledger::default(), Recorder::default());
        ledger.walked(&[totals(1, 7, 5, 1, 1)], &mut table, 1);
        for now in 2..=3 {
            ledger.walked(&[], &mut table, now);
            assert_eq!(ledger.len(), 1, "kept while its final may still come");
        }
        ledger.walked(&[], &mut table, 4);
        assert_eq!((ledger.len(), ledger.forgotten), (0, 1));
    }
}
