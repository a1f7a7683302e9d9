//! Reading the kernel's answer to a get request.
//!
//! The answer comes from the kernel, but it is still read as untrusted
//! bytes: every length is checked against what is left before it is used,
//! so a short or garbled datagram is an error, never a panic or a read
//! past the end.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::message::*;

/// What the kernel said about one request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    Entry(Entry),
    /// ENOENT: conntrack has no entry for the tuple.
    NoEntry,
}

/// A conntrack entry's two directions. `original` is the first packet's
/// tuple as it left its sender; `reply` is what an answer to it looks
/// like, so a DNAT shows as `reply.src` differing from `original.dst`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub original: Tuple,
    pub reply: Tuple,
}

/// The answer to request `seq` in one datagram; None when nothing in it
/// is for `seq` (a late answer to an earlier request that timed out).
pub(super) fn answer(datagram: &[u8], seq: u32) -> io::Result<Option<Answer>> {
    let mut rest = datagram;
    while !rest.is_empty() {
        if rest.len() < NLMSG_HDRLEN {
            return Err(malformed(format!(
                "{} bytes left, too few for a netlink header",
                rest.len()
            )));
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(malformed(format!(
                "netlink message of {len} bytes with {} left",
                rest.len()
            )));
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let msg_seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let body = &rest[NLMSG_HDRLEN..len];
        rest = &rest[align4(len).min(rest.len())..];
        if msg_seq != seq {
            continue;
        }
        return match kind {
            NLMSG_NOOP => continue,
            NLMSG_ERROR => error(body).map(Some),
            CT_NEW => entry(body).map(|entry| Some(Answer::Entry(entry))),
            other => Err(malformed(format!(
                "unexpected netlink message type {other:#06x}"
            ))),
        };
    }
    Ok(None)
}

/// NLMSG_ERROR: a negative errno, then the request it refers to.
fn error(body: &[u8]) -> io::Result<Answer> {
    let Some(errno) = body.get(..4) else {
        return Err(malformed(format!("NLMSG_ERROR of {} bytes", body.len())));
    };
    match -i32::from_ne_bytes([errno[0], errno[1], errno[2], errno[3]]) {
        libc::ENOENT => Ok(Answer::NoEntry),
        // An acknowledgement: the request asked for none, so the kernel
        // answered something that was not a get.
        0 => Err(malformed("an acknowledgement instead of an entry")),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

fn entry(body: &[u8]) -> io::Result<Entry> {
    let Some(attributes) = body.get(NFGENMSG_LEN..) else {
        return Err(malformed(format!(
            "conntrack message of {} bytes",
            body.len()
        )));
    };
    let (mut original, mut reply) = (None, None);
    for attribute in Attributes(attributes) {
        match attribute? {
            (CTA_TUPLE_ORIG, payload) => original = Some(tuple(payload, "original")?),
            (CTA_TUPLE_REPLY, payload) => reply = Some(tuple(payload, "reply")?),
            _ => {}
        }
    }
    match (original, reply) {
        (Some(original), Some(reply)) => Ok(Entry { original, reply }),
        (None, _) => Err(malformed("an entry without its original tuple")),
        (_, None) => Err(malformed("an entry without its reply tuple")),
    }
}

fn tuple(nest: &[u8], which: &str) -> io::Result<Tuple> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    for attribute in Attributes(nest) {
        match attribute? {
            (CTA_TUPLE_IP, ips) => {
                for attribute in Attributes(ips) {
                    match attribute? {
                        (CTA_IP_V4_SRC, a) => {
                            src = Some(IpAddr::V4(Ipv4Addr::from(fixed::<4>(a, "IPv4 source")?)))
                        }
                        (CTA_IP_V4_DST, a) => {
                            dst = Some(IpAddr::V4(Ipv4Addr::from(fixed::<4>(
                                a,
                                "IPv4 destination",
                            )?)))
                        }
                        (CTA_IP_V6_SRC, a) => {
                            src = Some(IpAddr::V6(Ipv6Addr::from(fixed::<16>(a, "IPv6 source")?)))
                        }
                        (CTA_IP_V6_DST, a) => {
                            dst = Some(IpAddr::V6(Ipv6Addr::from(fixed::<16>(
                                a,
                                "IPv6 destination",
                            )?)))
                        }
                        _ => {}
                    }
                }
            }
            (CTA_TUPLE_PROTO, l4) => {
                for attribute in Attributes(l4) {
                    match attribute? {
                        (CTA_PROTO_NUM, a) => proto = Some(fixed::<1>(a, "protocol")?[0]),
                        (CTA_PROTO_SRC_PORT, a) => {
                            sport = Some(u16::from_be_bytes(fixed(a, "source port")?))
                        }
                        (CTA_PROTO_DST_PORT, a) => {
                            dport = Some(u16::from_be_bytes(fixed(a, "destination port")?))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let missing = |what: &str| malformed(format!("the {which} tuple has no {what}"));
    let (src, dst) = (
        src.ok_or_else(|| missing("source address"))?,
        dst.ok_or_else(|| missing("destination address"))?,
    );
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(malformed(format!(
            "the {which} tuple mixes {src} and {dst}"
        )));
    }
    match proto.ok_or_else(|| missing("protocol"))? {
        IPPROTO_TCP => {}
        other => {
            return Err(malformed(format!(
                "the {which} tuple is protocol {other}, not TCP"
            )))
        }
    }
    Ok(Tuple {
        src: SocketAddr::new(src, sport.ok_or_else(|| missing("source port"))?),
        dst: SocketAddr::new(dst, dport.ok_or_else(|| missing("destination port"))?),
    })
}

/// An attribute payload of exactly `N` bytes, as the kernel always sends.
fn fixed<const N: usize>(payload: &[u8], what: &str) -> io::Result<[u8; N]> {
    payload
        .try_into()
        .map_err(|_| malformed(format!("{what} of {} bytes, want {N}", payload.len())))
}

/// The attributes in a run of bytes, as (type without flags, payload).
struct Attributes<'a>(&'a [u8]);

impl<'a> Iterator for Attributes<'a> {
    type Item = io::Result<(u16, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.0;
        if rest.is_empty() {
            return None;
        }
        let Some(header) = rest.get(..4) else {
            self.0 = &[];
            return Some(Err(malformed(format!(
                "{} bytes left, too few for an attribute header",
                rest.len()
            ))));
        };
        let len = u16::from_ne_bytes([header[0], header[1]]) as usize;
        if len < 4 || len > rest.len() {
            self.0 = &[];
            return Some(Err(malformed(format!(
                "attribute of {len} bytes with {} left",
                rest.len()
            ))));
        }
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        self.0 = &rest[align4(len).min(rest.len())..];
        Some(Ok((kind, &rest[4..len])))
    }
}

fn malformed(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed conntrack answer: {what}"),
    )
}
