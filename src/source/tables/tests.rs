//! PerEventTables' unit tests, with the two kernel flow tables in memory:
//! a drain that fails partway loses no byte and counts none twice, checked
//! against every byte the test's probes counted.

use std::collections::BTreeMap;

use super::*;
use crate::flows::FlowTable;
use crate::kernel::skel::as_bytes;
use crate::test_support::{key_with_port, totals_by_port, FakeHashMap};

/// Entries each batch call asks for: a dozen flows take several calls.
const BATCH_LEN: u32 = 2;
/// Flows the tests start with, on ports 1 to FLOWS.
const FLOWS: u16 = 12;

/// The kernel's two flow tables and the slot that points the probes at one.
#[derive(Debug)]
struct FakeKernel {
    tables: [FakeHashMap; 2],
    /// The table the probes write.
    active: usize,
}

impl KernelTables for FakeKernel {
    fn point_probes_at(&mut self, table: usize) -> io::Result<()> {
        self.active = table;
        Ok(())
    }

    fn read(&mut self, table: usize, size_hint: usize) -> io::Result<MapEntries> {
        let read = self.tables[table].walk(size_hint, BATCH_LEN, false);
        read.map_err(|partial| partial.error)
    }

    fn take(&mut self, table: usize, size_hint: usize) -> Result<MapEntries, PartialTake> {
        self.tables[table].walk(size_hint, BATCH_LEN, true)
    }

    fn health(&self) -> io::Result<SourceHealth> {
        Ok(SourceHealth::default())
    }
}

/// The probes, the source and the running totals, and what the probes
/// counted: the ground truth.
struct Setup {
    tables: PerEventTables<FakeKernel>,
    totals: FlowTable,
    /// Every byte the probes counted, per flow: port -> (sent, received).
    counted: BTreeMap<u16, (u64, u64)>,
}

impl Setup {
    fn new() -> Setup {
        let table = || FakeHashMap::new(64, size_of::<FlowKeyBytes>(), size_of::<FlowBytes>());
        let kernel = FakeKernel {
            tables: [table(), table()],
            active: 1,
        };
        Setup {
            tables: PerEventTables::new(kernel).unwrap(),
            totals: FlowTable::new(100, u64::MAX),
            counted: BTreeMap::new(),
        }
    }

    fn kernel(&mut self) -> &mut FakeKernel {
        &mut self.tables.kernel
    }

    /// A probe counting bytes of the flow on `port` into the table it writes.
    fn count(&mut self, port: u16, sent: u64, received: u64) {
        let kernel = self.kernel();
        let table = &mut kernel.tables[kernel.active];
        let key = key_with_port(port);
        let mut value: FlowBytes = table.get(&key).map(from_bytes).unwrap_or_default();
        value.sent += sent;
        value.received += received;
        value.last_seen_ns = 1;
        table.update(&key, as_bytes(&value));
        let counted = self.counted.entry(port).or_default();
        counted.0 += sent;
        counted.1 += received;
    }

    /// Makes the `n`th batch call from now on kernel table `table` fail.
    fn fail_take(&mut self, table: usize, n: usize) {
        self.kernel().tables[table].fail_call(n, libc::EINTR);
    }

    fn scrape(&mut self) -> io::Result<()> {
        self.tables.read(&mut self.totals)
    }

    fn maintain(&mut self) -> io::Result<()> {
        self.tables.maintain(&mut self.totals)
    }

    /// The exported totals, as (port, sent, received).
    fn exported(&self) -> Vec<(u16, u64, u64)> {
        totals_by_port(&self.totals)
    }

    /// What the probes counted, as (port, sent, received).
    fn counted(&self) -> Vec<(u16, u64, u64)> {
        let counted = self.counted.iter();
        counted.map(|(&port, &(s, r))| (port, s, r)).collect()
    }

    /// No flow exported more than the probes counted of it.
    fn assert_nothing_counted_twice(&self) {
        for (port, sent, received) in self.exported() {
            let (s, r) = self.counted[&port];
            assert!(sent <= s && received <= r, "flow {port} counted twice");
        }
    }

    /// Flows counted, scraped, grown after the scrape; then a drain whose
    /// third batch call fails, after the first two took part of the table.
    fn failed_drain() -> Setup {
        let mut s = Setup::new();
        for port in 1..=FLOWS {
            s.count(port, 100 * u64::from(port), 10 * u64::from(port));
        }
        s.scrape().unwrap();
        assert_eq!(s.exported(), s.counted());
        for port in (1..=FLOWS).step_by(2) {
            s.count(port, 7, 3);
        }
        s.fail_take(0, 3);
        s.maintain().unwrap_err();
        let left = s.kernel().tables[0].len();
        assert!(0 < left && left < FLOWS as usize, "{left} entries left");
        s.assert_nothing_counted_twice();
        // The probes write the other table now, also for flows whose entry
        // is still in the first; and two new flows.
        assert_eq!(s.kernel().active, 1);
        for port in 1..=FLOWS + 2 {
            s.count(port, 5, 1);
        }
        s
    }
}

#[test]
fn a_scrape_finishes_a_failed_drain_before_it_credits() {
    let mut s = Setup::failed_drain();
    // The scrape's retry of the drain fails at once: nothing is credited,
    // since each flow's taken bytes still describe the undrained entry.
    let before = s.exported();
    s.fail_take(0, 1);
    s.scrape().unwrap_err();
    assert_eq!(s.exported(), before);
    // The next scrape empties the first table, then credits the second.
    s.scrape().unwrap();
    assert_eq!(s.kernel().tables[0].len(), 0);
    assert_eq!(s.exported(), s.counted());
    // Exact across the drains that follow, too.
    for port in 1..=FLOWS + 2 {
        s.count(port, 1, 2);
    }
    s.maintain().unwrap();
    assert_eq!(s.exported(), s.counted());
    for port in 1..=3 {
        s.count(port, 2, 2);
    }
    s.scrape().unwrap();
    assert_eq!(s.exported(), s.counted());
    s.maintain().unwrap();
    s.maintain().unwrap();
    assert_eq!(s.exported(), s.counted());
}

#[test]
fn the_probes_never_go_back_to_a_table_a_drain_left_entries_in() {
    let mut s = Setup::failed_drain();
    // The next drain's retry fails too: the probes stay where they are.
    s.fail_take(0, 2);
    s.maintain().unwrap_err();
    assert_eq!(s.kernel().active, 1);
    s.assert_nothing_counted_twice();
    for port in 1..=FLOWS {
        s.count(port, 3, 3);
    }
    s.scrape().unwrap();
    assert_eq!(s.exported(), s.counted());
    // Both tables empty after the next drain, every byte counted once.
    for port in 1..=FLOWS {
        s.count(port, 1, 1);
    }
    s.maintain().unwrap();
    assert_eq!(s.kernel().active, 0);
    let (first, second) = (s.kernel().tables[0].len(), s.kernel().tables[1].len());
    assert_eq!((first, second), (0, 0));
    assert_eq!(s.exported(), s.counted());
}
