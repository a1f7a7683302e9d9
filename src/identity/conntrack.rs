//! Where a connection to a Kubernetes Service really went, from the
//! kernel's connection tracking table.
//!
//! A client that connects to a Service's ClusterIP only ever sees the
//! virtual IP: kube-proxy (iptables, nftables or IPVS mode) rewrites the
//! destination with a DNAT on the way out, and the kernel remembers the
//! rewrite in a conntrack entry. The entry's reply tuple is what the
//! backend's answers look like, so its source is the backend pod. This
//! module asks for that one entry over ctnetlink (a NETLINK_NETFILTER
//! socket, no conntrack(8) binary): one request and one answer per lookup,
//! with a receive timeout so a lookup never holds up a scrape.
//!
//! What it does not cover:
//!
//! - **Cilium and other eBPF kube-proxy replacements.** Socket-level load
//!   balancing rewrites the socket's own destination at connect(), so the
//!   socket already names the backend and no lookup is needed. Where they
//!   translate per packet instead, they keep their own BPF maps, which are
//!   not conntrack: nothing is found and the flow keeps the Service.
//! - **Conntrack zones.** Lookups are in the default zone 0, where
//!   kube-proxy's entries are; a CNI that tracks pods in other zones (OVN,
//!   Open vSwitch) is not seen.
//! - **Where the table lives.** The DNAT happens in the network namespace
//!   of the node (or of a pod whose own rules do it), and each namespace
//!   has its own table. The exporter must run in the host network
//!   namespace or be able to join it (`open(Some("/proc/1/ns/net"))` from
//!   a pod with hostPID, CAP_SYS_ADMIN to setns and CAP_NET_ADMIN for
//!   ctnetlink).
//!
//! IPVS mode also records its translations in conntrack
//! (net.ipv4.vs.conntrack=1, which kube-proxy sets), so it is answered the
//! same way.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod message;
mod parse;
mod socket;

#[cfg(test)]
mod tests;

pub use self::message::Tuple;
use self::parse::Answer;
pub use self::parse::Entry;
use self::socket::{NetlinkSocket, OpenFailure, ANSWER_TIMEOUT};
use crate::kernel::least_privilege::{self, bit, CAP_NET_ADMIN};

/// A conntrack entry's answer fits in about 300 bytes; room for every
/// optional attribute a kernel adds.
const ANSWER_BUFFER: usize = 8192;

/// A ctnetlink socket in one network namespace.
pub struct Conntrack {
    socket: NetlinkSocket,
    seq: u32,
    buffer: Box<[u8]>,
}

impl std::fmt::Debug for Conntrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conntrack").field("seq", &self.seq).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("bad network namespace path {}: {reason}", path.display())]
    BadNetns { path: PathBuf, reason: String },
    #[error("no permission to {action} {place}: needs {capability}")]
    NoPermission {
        action: &'static str,
        place: String,
        capability: &'static str,
    },
    #[error("no nf_conntrack in {place}: the kernel has no ctnetlink (nf_conntrack_netlink) or could not load it ({error})")]
    NoConntrack { place: String, error: io::Error },
    #[error("cannot read conntrack in {place}: {error}")]
    Io { place: String, error: io::Error },
}

impl Conntrack {
    /// A ctnetlink socket in the network namespace `netns` (a path such as
    /// /proc/1/ns/net or /run/netns/x; None: the exporter's own). The
    /// socket is created on a short-lived thread that setns()es there, so
    /// the exporter's threads stay where they are; a socket stays bound to
    /// the namespace it was created in. One lookup of a tuple that cannot
    /// exist checks that conntrack answers and may be read.
    pub fn open(netns: Option<&Path>) -> Result<Conntrack, ConntrackError> {
        let place = match netns {
            Some(path) => format!("the network namespace {}", path.display()),
            None => String::from("this network namespace"),
        };
        let bad_path = |reason: String| ConntrackError::BadNetns {
            path: netns.unwrap_or(Path::new("")).to_path_buf(),
            reason,
        };
        let socket = NetlinkSocket::open(netns).map_err(|failure| match failure {
            OpenFailure::Path(error) => bad_path(error.to_string()),
            OpenFailure::Setns(error) => match error.raw_os_error() {
                Some(libc::EINVAL) => bad_path(String::from("not a network namespace")),
                Some(libc::EPERM) => ConntrackError::NoPermission {
                    action: "join",
                    place: place.clone(),
                    capability: "CAP_SYS_ADMIN",
                },
                _ => bad_path(format!("setns: {error}")),
            },
            // No NETLINK_NETFILTER at all: a kernel without nfnetlink.
            OpenFailure::Socket(error) if error.raw_os_error() == Some(libc::EPROTONOSUPPORT) => {
                ConntrackError::NoConntrack {
                    place: place.clone(),
                    error,
                }
            }
            OpenFailure::Socket(error) => ConntrackError::Io {
                place: place.clone(),
                error,
            },
        })?;
        let mut conntrack = Conntrack {
            socket,
            seq: 0,
            buffer: vec![0; ANSWER_BUFFER].into_boxed_slice(),
        };
        let nothing = SocketAddr::from(([0, 0, 0, 0], 0));
        match conntrack.lookup(&Tuple {
            src: nothing,
            dst: nothing,
        }) {
            Ok(_) => Ok(conntrack),
            // nfnetlink checks CAP_NET_ADMIN in the socket's namespace for
            // every message, reads included.
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                Err(ConntrackError::NoPermission {
                    action: "read conntrack in",
                    place,
                    capability: "CAP_NET_ADMIN",
                })
            }
            // nfnetlink answers EINVAL for a subsystem it does not have
            // (after trying to load its module).
            Err(error) if matches!(error.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                Err(ConntrackError::NoConntrack { place, error })
            }
            Err(error) => Err(ConntrackError::Io { place, error }),
        }
    }

    /// The address the connection `local -> remote` (as the client socket
    /// sees it, TCP) was really sent to: the reply tuple's source of its
    /// conntrack entry, when it differs from `remote`; None when there is
    /// no entry or no translation. IPv4-mapped IPv6 addresses are looked
    /// up as the IPv4 the kernel tracks, and answered in the same form.
    ///
    /// Asked from the other end (the tuple is the entry's reply direction,
    /// as for the backend's accepted socket), the answer is the entry's
    /// original source: where replies really go, which differs from
    /// `remote` only when the client's address was rewritten (SNAT).
    pub fn translated(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> io::Result<Option<SocketAddr>> {
        let asked = kernel_tuple(local, remote)?;
        let Some(entry) = self.lookup(&asked)? else {
            return Ok(None);
        };
        let reached = in_form_of(remote, reached_from(&entry, &asked)?);
        Ok((reached != remote).then_some(reached))
    }

    /// The whole conntrack entry that has `local -> remote` as one of its
    /// directions, as the kernel keeps it (IPv4-mapped addresses as IPv4).
    pub fn entry(&mut self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<Entry>> {
        self.lookup(&kernel_tuple(local, remote)?)
    }

    fn lookup(&mut self, asked: &Tuple) -> io::Result<Option<Entry>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        // nfnetlink checks the sender's CAP_NET_ADMIN at every request; the
        // exporter keeps it permitted only (kernel/least_privilege.rs).
        let request = message::get_request(seq, asked);
        least_privilege::raised(bit(CAP_NET_ADMIN), || self.socket.send(&request))?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let datagram = self.socket.receive(&mut self.buffer)?;
            match parse::answer(datagram, seq)? {
                Some(Answer::Entry(entry)) => return Ok(Some(entry)),
                Some(Answer::NoEntry) => return Ok(None),
                // A late answer to a request that timed out before.
                None if Instant::now() < deadline => continue,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "conntrack sent no answer to request {seq} within {} ms",
                            ANSWER_TIMEOUT.as_millis()
                        ),
                    ))
                }
            }
        }
    }
}

/// Where packets sent along `asked` really arrive: the other direction's
/// source. `asked` may be either direction of `entry`, since the kernel
/// finds an entry by both.
fn reached_from(entry: &Entry, asked: &Tuple) -> io::Result<SocketAddr> {
    if entry.original == *asked {
        Ok(entry.reply.src)
    } else if entry.reply == *asked {
        Ok(entry.original.src)
    } else {
        // The kernel looks up by exact tuple; this would be its bug.
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("conntrack answered with {entry:?}, asked for {asked:?}"),
        ))
    }
}

/// `local -> remote` as conntrack keys it. An IPv6 socket talking to an
/// IPv4 peer shows IPv4-mapped addresses, but its packets are IPv4.
fn kernel_tuple(local: SocketAddr, remote: SocketAddr) -> io::Result<Tuple> {
    let (src, dst) = (unmapped(local), unmapped(remote));
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{local} -> {remote} mixes IPv4 and IPv6"),
        ));
    }
    Ok(Tuple { src, dst })
}

fn unmapped(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => address,
        },
        SocketAddr::V4(_) => address,
    }
}

/// `address` mapped to IPv6 when `like` is IPv6, so the two compare.
fn in_form_of(like: SocketAddr, address: SocketAddr) -> SocketAddr {
    match (like, address) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        _ => address,
    }
}
