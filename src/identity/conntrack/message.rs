//! The ctnetlink request: one IPCTNL_MSG_CT_GET for one original tuple.
//!
//! A netlink message is a 16-byte `nlmsghdr`, then the 4-byte `nfgenmsg`
//! of nfnetlink, then attributes. Each attribute is `{u16 len, u16 type}`
//! and its payload, padded to 4 bytes; a nested attribute's payload is
//! more attributes. All of it is in host byte order except what ctnetlink
//! itself keeps in network order: addresses and ports.
//!
//! The numbers below are the kernel's uapi (linux/netlink.h,
//! linux/netfilter/nfnetlink.h, linux/netfilter/nfnetlink_conntrack.h).

use std::net::{IpAddr, SocketAddr};

pub(super) const NLMSG_HDRLEN: usize = 16;
pub(super) const NLMSG_NOOP: u16 = 1;
pub(super) const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;

/// nfnetlink puts its subsystem in the high byte of the message type.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
/// An entry comes back as a "new" message, as it would in a dump.
pub(super) const CT_NEW: u16 = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW;
const CT_GET: u16 = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET;
pub(super) const NFGENMSG_LEN: usize = 4;

/// Set on nested attributes. The kernel parses ctnetlink's nests either
/// way, but says it, as the conntrack tools do, and masks it off reading.
pub(super) const NLA_F_NESTED: u16 = 1 << 15;
pub(super) const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
pub(super) const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

// enum ctattr_type
pub(super) const CTA_TUPLE_ORIG: u16 = 1;
pub(super) const CTA_TUPLE_REPLY: u16 = 2;
// enum ctattr_tuple
pub(super) const CTA_TUPLE_IP: u16 = 1;
pub(super) const CTA_TUPLE_PROTO: u16 = 2;
// enum ctattr_ip
pub(super) const CTA_IP_V4_SRC: u16 = 1;
pub(super) const CTA_IP_V4_DST: u16 = 2;
pub(super) const CTA_IP_V6_SRC: u16 = 3;
pub(super) const CTA_IP_V6_DST: u16 = 4;
// enum ctattr_l4proto
pub(super) const CTA_PROTO_NUM: u16 = 1;
pub(super) const CTA_PROTO_SRC_PORT: u16 = 2;
pub(super) const CTA_PROTO_DST_PORT: u16 = 3;

pub(super) const IPPROTO_TCP: u8 = 6;

/// One direction of a TCP connection as conntrack keys it. Both ends are
/// of one family (IPv4-mapped IPv6 is made IPv4 before it gets here).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// The request for the entry whose original direction is `tuple`.
pub(super) fn get_request(seq: u32, tuple: &Tuple) -> Vec<u8> {
    let mut out = Builder::default();
    out.bytes(&[0; NLMSG_HDRLEN]); // filled in below, once the length is known
    let family = match tuple.src.ip() {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    // nfgenmsg: family, version NFNETLINK_V0, res_id (big endian) 0.
    out.bytes(&[family as u8, 0, 0, 0]);
    out.nest(CTA_TUPLE_ORIG, |out| {
        out.nest(CTA_TUPLE_IP, |out| {
            let (src, dst) = match family {
                libc::AF_INET => (CTA_IP_V4_SRC, CTA_IP_V4_DST),
                _ => (CTA_IP_V6_SRC, CTA_IP_V6_DST),
            };
            out.attr(src, &octets(tuple.src.ip()));
            out.attr(dst, &octets(tuple.dst.ip()));
        });
        out.nest(CTA_TUPLE_PROTO, |out| {
            out.attr(CTA_PROTO_NUM, &[IPPROTO_TCP]);
            out.attr(CTA_PROTO_SRC_PORT, &tuple.src.port().to_be_bytes());
            out.attr(CTA_PROTO_DST_PORT, &tuple.dst.port().to_be_bytes());
        });
    });
    let mut bytes = out.0;
    let len = bytes.len() as u32;
    bytes[0..4].copy_from_slice(&len.to_ne_bytes());
    bytes[4..6].copy_from_slice(&CT_GET.to_ne_bytes());
    // No NLM_F_ACK: the kernel then answers with either the entry or an
    // NLMSG_ERROR, one message, never both.
    bytes[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in the sender's port id itself.
    bytes
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    }
}

#[derive(Default)]
struct Builder(Vec<u8>);

impl Builder {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn pad(&mut self) {
        self.0.resize(align4(self.0.len()), 0);
    }

    /// A leaf attribute: its length counts the payload, not the padding.
    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = (4 + payload.len()) as u16;
        self.bytes(&len.to_ne_bytes());
        self.bytes(&kind.to_ne_bytes());
        self.bytes(payload);
        self.pad();
    }

    /// A nested attribute: its length counts everything inside, padding
    /// included.
    fn nest(&mut self, kind: u16, inside: impl FnOnce(&mut Builder)) {
        let start = self.0.len();
        self.bytes(&[0, 0]);
        self.bytes(&(kind | NLA_F_NESTED).to_ne_bytes());
        inside(self);
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

/// NLMSG_ALIGN and NLA_ALIGN: both 4.
pub(super) fn align4(len: usize) -> usize {
    (len + 3) & !3
}
