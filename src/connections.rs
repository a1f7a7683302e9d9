//! The socket backend's connections: their last known totals, so that only
//! growth reaches the flows.
//!
//! Every walk reports each live connection's totals since counting started,
//! and a destroyed connection leaves its final totals once. A connection is
//! named by (socket address, id); the kernel reuses socket addresses, never
//! that pair. Reading a connection twice adds nothing twice.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::bpf::ConnectionTotals;
use crate::flow_table::FlowTable;

/// Walks a connection may be missing from before it is forgotten without a
/// final: its final is written right after it leaves the walk, so by then
/// the final was lost (closed_sockets full) and `finals_dropped` says so.
const MISSED_WALKS_BEFORE_FORGETTING: u8 = 3;

#[derive(Debug)]
struct Known {
    key: [u8; 40],
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
    pub fn walked(&mut self, walk: &[ConnectionTotals], table: &mut FlowTable, now_ns: u64) {
        for known in self.live.values_mut() {
            known.missed_walks = known.missed_walks.saturating_add(1);
        }
        for t in walk {
            let known = self.live.entry((t.socket, t.id)).or_insert_with(|| Known {
                key: key_bytes(t),
                sent: 0,
                received: 0,
                missed_walks: 0,
            });
            known.missed_walks = 0;
            let (sent, received) = growth(known, t);
            if sent | received != 0 {
                table.add_delta(&known.key, sent, received, now_ns);
            }
        }
        let before = self.live.len();
        self.live
            .retain(|_, k| k.missed_walks < MISSED_WALKS_BEFORE_FORGETTING);
        self.forgotten += (before - self.live.len()) as u64;
    }

    /// Final totals of connections that ended.
    pub fn finished<'a>(
        &mut self,
        finals: impl Iterator<Item = &'a ConnectionTotals>,
        table: &mut FlowTable,
        now_ns: u64,
    ) {
        for t in finals {
            let mut known = self.live.remove(&(t.socket, t.id)).unwrap_or(Known {
                key: key_bytes(t),
                sent: 0,
                received: 0,
                missed_walks: 0,
            });
            let (sent, received) = growth(&mut known, t);
            if sent | received != 0 {
                table.add_delta(&known.key, sent, received, now_ns);
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

fn key_bytes(t: &ConnectionTotals) -> [u8; 40] {
    let mut key = [0u8; 40];
    // SAFETY: FlowKey is a Plain C struct of exactly 40 bytes.
    key.copy_from_slice(unsafe { plain::as_bytes(&t.key) });
    key
}
