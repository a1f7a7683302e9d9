//! A series' own labels (addresses, ports, role) and its sample's tail,
//! each put together on the stack and added to the body in one copy.
//!
//! Written fragment by fragment into the body, a line took about 30 copies
//! of 1 to 20 bytes, each a capacity check and a `memcpy` call in
//! `BytesMut::extend_from_slice`. Here the fixed text between the values is
//! prepared once per scrape ([`FlowTemplate`]), an IPv4 octet is a 3-byte
//! copy from a table, and the body sees four copies per line.
//! `cargo bench --bench exporter -- encode` measures it (BENCHMARKS.md).

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};

use crate::flows::key::shown_port;
use crate::flows::selection::{FlowLabel, LabelSelection, FLOW_LABELS};
use crate::flows::table::series::SeriesLabels;

/// Room for the longest flow-label text: the five names with their quotes
/// and commas (51 bytes), two IPv6 addresses (39 each), two ports (5
/// each), and a role (7): 146 bytes, with room for a 3-byte octet copy past
/// the end.
const ROOM: usize = 192;

/// The text before each chosen flow label's value (`src_ip="`, then
/// `",src_port="`, ...; empty for a label not chosen) and after the last
/// (`"`, or nothing when none is chosen), for one scrape.
pub struct FlowTemplate {
    before: [String; FLOW_LABELS.len()],
    after: &'static str,
}

impl FlowTemplate {
    pub fn new(chosen: LabelSelection) -> FlowTemplate {
        let mut before: [String; FLOW_LABELS.len()] = Default::default();
        let mut separator = "";
        for ((slot, label), name) in before.iter_mut().zip(FlowLabel::ALL).zip(FLOW_LABELS) {
            if chosen.has(label) {
                *slot = format!("{separator}{name}=\"");
                separator = "\",";
            }
        }
        let after = if separator.is_empty() { "" } else { "\"" };
        FlowTemplate { before, after }
    }

    /// Whether any flow label is chosen: the identity's leading comma is
    /// dropped when none is.
    pub fn any(&self) -> bool {
        !self.after.is_empty()
    }

    /// The chosen flow labels of `labels`, without braces. Spelled out
    /// label by label: a loop over [`FlowLabel::ALL`] with a match inside
    /// took the 100k-flow encoder from a median of 13.7 to 16.2 ms (six
    /// interleaved runs of `-- encode`, 2026-12-03).
    pub fn write(&self, labels: &SeriesLabels, text: &mut StackText) {
        let [src_ip, src_port, dst_ip, dst_port, role] = &self.before;
        if !src_ip.is_empty() {
            text.push(src_ip);
            text.ip(labels.local.ip());
        }
        if !src_port.is_empty() {
            text.push(src_port);
            text.port(labels.local.port());
        }
        if !dst_ip.is_empty() {
            text.push(dst_ip);
            text.ip(labels.remote.ip());
        }
        if !dst_port.is_empty() {
            text.push(dst_port);
            text.port(labels.remote.port());
        }
        if !role.is_empty() {
            text.push(role);
            text.push(labels.role.as_str());
        }
        text.push(self.after);
    }
}

/// The digits of each octet, and how many there are.
const OCTETS: [([u8; 3], u8); 256] = {
    let mut table = [([0u8; 3], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let n = i as u8;
        table[i] = if n >= 100 {
            ([b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10], 3)
        } else if n >= 10 {
            ([b'0' + n / 10, b'0' + n % 10, 0], 2)
        } else {
            ([b'0' + n, 0, 0], 1)
        };
        i += 1;
    }
    table
};

/// Text put together on the stack, at most [`ROOM`] bytes minus a little
/// slack; the flow labels and a sample's tail always fit.
pub struct StackText {
    bytes: [u8; ROOM],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            bytes: [0; ROOM],
            len: 0,
        }
    }
}

impl StackText {
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Whole `str`s and ASCII digits: UTF-8.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    #[cfg(test)]
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap()
    }

    #[inline(always)]
    pub fn push(&mut self, text: &str) {
        self.bytes[self.len..self.len + text.len()].copy_from_slice(text.as_bytes());
        self.len += text.len();
    }

    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.ipv4(v4),
            // Rare next to IPv4, and its zero-run compression is best left
            // to std. At most 39 bytes: it fits.
            IpAddr::V6(v6) => {
                let _ = write!(self, "{v6}");
            }
        }
    }

    #[inline(always)]
    fn ipv4(&mut self, ip: Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(".");
            }
            let (digits, n) = OCTETS[usize::from(octet)];
            // Copies all three (a fixed-size store), keeps `n`.
            self.bytes[self.len..self.len + 3].copy_from_slice(&digits);
            self.len += usize::from(n);
        }
    }

    /// A port folded away by the kernel is an empty label value.
    fn port(&mut self, port: u16) {
        if let Some(port) = shown_port(port) {
            self.push(itoa::Buffer::new().format(port));
        }
    }

    /// `} <value>\n`: a sample's end.
    pub fn sample_end(&mut self, value: u64) {
        self.push("} ");
        self.push(itoa::Buffer::new().format(value));
        self.push("\n");
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.len + text.len() > ROOM {
            return Err(fmt::Error);
        }
        self.push(text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::labels::{Identity, Local, Path, Peer};
    use crate::identity::PeerKind;

    #[test]
    fn every_octet_reads_as_std_writes_it() {
        for octet in 0..=255u8 {
            let mut text = StackText::default();
            text.ipv4(Ipv4Addr::new(octet, 0, octet, 255));
            assert_eq!(text.as_str(), format!("{octet}.0.{octet}.255"));
        }
    }

    #[test]
    fn the_longest_labels_fit() {
        let longest: std::net::SocketAddr = "[1111:2222:3333:4444:5555:6666:7777:8888]:65535"
            .parse()
            .unwrap();
        let labels = SeriesLabels {
            local: longest,
            remote: longest,
            role: crate::flows::Role::Unknown,
            identity: std::sync::Arc::new(Identity::new(
                Local::default(),
                Peer::of_kind(PeerKind::Internet),
                Path::Internet,
            )),
        };
        let mut text = StackText::default();
        FlowTemplate::new(LabelSelection::all()).write(&labels, &mut text);
        assert_eq!(text.as_str().len(), 146);
        text.sample_end(u64::MAX);
        assert!(text.as_str().ends_with("\"} 18446744073709551615\n"));
    }
}
