//! The system limits the bench needs, raised for the run and restored
//! after it (on a panic too), and whether memory allows a connection count.

use std::path::PathBuf;

/// sysctl settings raised for the run, restored when dropped.
pub struct Raised {
    saved: Vec<(PathBuf, String)>,
}

/// What `connections` open loopback connections need beyond the defaults:
/// two open files each, node-wide. The per-process limit stays as it is
/// (each holder has at most 18,000 files), and so does the ephemeral port
/// range: each holder has a listener of its own, so no (source,
/// destination, port) tuple carries more than 9,000 connections.
pub fn raise(connections: usize) -> Raised {
    let files = (2 * connections + 262_144) as u64;
    let mut raised = Raised { saved: Vec::new() };
    raised.at_least("fs/file-max", files);
    raised
}

impl Raised {
    fn at_least(&mut self, key: &str, want: u64) {
        let path = PathBuf::from("/proc/sys").join(key);
        let old = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{key}: {e}"));
        if old.trim().parse::<u64>().is_ok_and(|v| v >= want) {
            return;
        }
        std::fs::write(&path, want.to_string()).unwrap_or_else(|e| panic!("{key}: {e}"));
        eprintln!("{key}: {} -> {want} for the run", old.trim());
        self.saved.push((path, old));
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        for (path, old) in self.saved.drain(..).rev() {
            if let Err(e) = std::fs::write(&path, old.trim()) {
                eprintln!("could not restore {}: {e}", path.display());
            }
        }
    }
}

/// Memory one idle loopback connection may cost, both sockets with their
/// files and the exporter's share: MemAvailable fell by 5.4–11 KB per
/// connection here; with room to spare.
const KERNEL_BYTES_PER_CONNECTION: u64 = 16 << 10;

/// MemAvailable, in bytes.
pub fn available() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("MemAvailable in /proc/meminfo")
        * 1024
}

/// Whether the machine has the memory for `connections`.
pub fn room_for(connections: usize) -> bool {
    available() > connections as u64 * KERNEL_BYTES_PER_CONNECTION
}
