//! Message bytes and answer parsing, from hand-built buffers. Netlink is in
//! host byte order and the literal bytes here are little-endian; addresses
//! and ports are big-endian on every host.
#![cfg(target_endian = "little")]

use std::io;
use std::net::SocketAddr;

use super::message::{get_request, Tuple};
use super::parse::{answer, Answer, Entry};
use super::{in_form_of, kernel_tuple, reached_from};

mod in_netns;
mod stand_in;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

fn tuple(src: &str, dst: &str) -> Tuple {
    Tuple {
        src: addr(src),
        dst: addr(dst),
    }
}

#[test]
fn ipv4_request_bytes() {
    let request = get_request(7, &tuple("198.18.77.1:40000", "198.18.77.10:80"));
    #[rustfmt::skip]
    let want: &[u8] = &[
        0x48, 0, 0, 0,  0x01, 0x01,  0x01, 0,  7, 0, 0, 0,  0, 0, 0, 0, // nlmsghdr: 72 bytes, CT_GET, REQUEST, seq 7
        2, 0, 0, 0,                                   // nfgenmsg: AF_INET, v0, res_id 0
        0x34, 0, 0x01, 0x80,                          // CTA_TUPLE_ORIG, nested, 52 bytes
        0x14, 0, 0x01, 0x80,                          //   CTA_TUPLE_IP, nested, 20 bytes
        8, 0, 1, 0,  198, 18, 77, 1,                  //     CTA_IP_V4_SRC
        8, 0, 2, 0,  198, 18, 77, 10,                 //     CTA_IP_V4_DST
        0x1c, 0, 0x02, 0x80,                          //   CTA_TUPLE_PROTO, nested, 28 bytes
        5, 0, 1, 0,  6, 0, 0, 0,                      //     CTA_PROTO_NUM 6, 3 bytes padding
        6, 0, 2, 0,  0x9c, 0x40, 0, 0,                //     CTA_PROTO_SRC_PORT 40000
        6, 0, 3, 0,  0, 80, 0, 0,                     //     CTA_PROTO_DST_PORT 80
    ];
    assert_eq!(request, want);
}

#[test]
fn ipv6_request_bytes() {
    let request = get_request(
        0x01020304,
        &tuple("[2001:db8::1]:40000", "[2001:db8::10]:80"),
    );
    #[rustfmt::skip]
    let want: &[u8] = &[
        0x60, 0, 0, 0,  0x01, 0x01,  0x01, 0,  4, 3, 2, 1,  0, 0, 0, 0,
        10, 0, 0, 0,                                  // AF_INET6
        0x4c, 0, 0x01, 0x80,                          // CTA_TUPLE_ORIG, 76 bytes
        0x2c, 0, 0x01, 0x80,                          //   CTA_TUPLE_IP, 44 bytes
        20, 0, 3, 0,  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,    // V6_SRC
        20, 0, 4, 0,  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, // V6_DST
        0x1c, 0, 0x02, 0x80,
        5, 0, 1, 0,  6, 0, 0, 0,
        6, 0, 2, 0,  0x9c, 0x40, 0, 0,
        6, 0, 3, 0,  0, 80, 0, 0,
    ];
    assert_eq!(request, want);
}

/// What the kernel sends for 198.18.77.1:40000 -> 198.18.77.10:80 after a
/// DNAT to 198.18.77.20:8080 (seq 7), with a few attributes the reader
/// must step over: status, timeout and mark.
#[rustfmt::skip]
const DNAT_ANSWER: [u8; 148] = [
    0x94, 0, 0, 0,  0x00, 0x01,  0, 0,  7, 0, 0, 0,  0x34, 0x12, 0, 0, // CT_NEW, seq 7, port id 0x1234
    2, 0, 0, 0,
    0x34, 0, 0x01, 0x80,                              // CTA_TUPLE_ORIG
    0x14, 0, 0x01, 0x80,
    8, 0, 1, 0,  198, 18, 77, 1,
    8, 0, 2, 0,  198, 18, 77, 10,
    0x1c, 0, 0x02, 0x80,
    5, 0, 1, 0,  6, 0, 0, 0,
    6, 0, 2, 0,  0x9c, 0x40, 0, 0,
    6, 0, 3, 0,  0, 80, 0, 0,
    0x34, 0, 0x02, 0x80,                              // CTA_TUPLE_REPLY (offset 72)
    0x14, 0, 0x01, 0x80,
    8, 0, 1, 0,  198, 18, 77, 20,
    8, 0, 2, 0,  198, 18, 77, 1,
    0x1c, 0, 0x02, 0x80,
    5, 0, 1, 0,  6, 0, 0, 0,
    6, 0, 2, 0,  0x1f, 0x90, 0, 0,                    // 8080
    6, 0, 3, 0,  0x9c, 0x40, 0, 0,
    8, 0, 3, 0,  0, 0, 0x01, 0x8e,                    // CTA_STATUS (offset 124)
    8, 0, 7, 0,  0, 0, 0x01, 0x2c,                    // CTA_TIMEOUT
    8, 0, 8, 0,  0, 0, 0, 0,                          // CTA_MARK
];

fn dnat_entry() -> Entry {
    Entry {
        original: tuple("198.18.77.1:40000", "198.18.77.10:80"),
        reply: tuple("198.18.77.20:8080", "198.18.77.1:40000"),
    }
}

#[test]
fn answer_with_both_tuples() {
    let got = answer(&DNAT_ANSWER, 7).expect("a well-formed answer");
    assert_eq!(got, Some(Answer::Entry(dnat_entry())));
}

#[test]
fn answer_to_another_request_is_skipped() {
    assert_eq!(answer(&DNAT_ANSWER, 8).expect("well-formed"), None);
    // A late answer to request 6, then ours, in one datagram.
    let mut both = DNAT_ANSWER.to_vec();
    both[8] = 6;
    both.extend_from_slice(&error_message(7, -libc::ENOENT));
    assert_eq!(
        answer(&both, 7).expect("well-formed"),
        Some(Answer::NoEntry)
    );
}

/// An NLMSG_ERROR for request `seq`: the errno, then the request's header.
fn error_message(seq: u32, errno: i32) -> Vec<u8> {
    let mut message = vec![36, 0, 0, 0, 2, 0, 0, 0];
    message.extend_from_slice(&seq.to_le_bytes());
    message.extend_from_slice(&[0; 4]);
    message.extend_from_slice(&errno.to_le_bytes());
    message.extend_from_slice(&get_request(seq, &tuple("0.0.0.0:0", "0.0.0.0:0"))[..16]);
    message
}

#[test]
fn error_answers() {
    let no_entry = answer(&error_message(3, -libc::ENOENT), 3).expect("ENOENT is an answer");
    assert_eq!(no_entry, Some(Answer::NoEntry));

    let denied = answer(&error_message(3, -libc::EPERM), 3).expect_err("EPERM is an error");
    assert_eq!(denied.raw_os_error(), Some(libc::EPERM));

    let ack = answer(&error_message(3, 0), 3).expect_err("an ack is not an answer to a get");
    assert_eq!(ack.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        ack.to_string(),
        "malformed conntrack answer: an acknowledgement instead of an entry"
    );

    let mut short = error_message(3, -libc::ENOENT)[..18].to_vec();
    short[0] = 18;
    let error = answer(&short, 3).expect_err("2 bytes of errno");
    assert_eq!(
        error.to_string(),
        "malformed conntrack answer: NLMSG_ERROR of 2 bytes"
    );
}

#[test]
fn truncated_datagram_is_an_error() {
    for len in 1..DNAT_ANSWER.len() {
        let error = answer(&DNAT_ANSWER[..len], 7).expect_err("a cut datagram");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "cut at {len}");
    }
    let error = answer(&DNAT_ANSWER[..100], 7).expect_err("cut");
    assert_eq!(
        error.to_string(),
        "malformed conntrack answer: netlink message of 148 bytes with 100 left"
    );
}

/// The message's own length cut short, so it ends inside its attributes:
/// only cuts that fall after the reply tuple, between whole attributes,
/// still hold an entry.
#[test]
fn message_cut_inside_its_attributes() {
    for len in 16..DNAT_ANSWER.len() {
        let mut cut = DNAT_ANSWER[..len].to_vec();
        cut[0] = len as u8;
        let got = answer(&cut, 7);
        match len {
            124 | 132 | 140 => assert_eq!(
                got.expect("whole attributes"),
                Some(Answer::Entry(dnat_entry()))
            ),
            _ => assert_eq!(
                got.expect_err("cut").kind(),
                io::ErrorKind::InvalidData,
                "cut at {len}"
            ),
        }
    }
    let mut no_reply = DNAT_ANSWER[..72].to_vec();
    no_reply[0] = 72;
    let error = answer(&no_reply, 7).expect_err("no reply tuple");
    assert_eq!(
        error.to_string(),
        "malformed conntrack answer: an entry without its reply tuple"
    );
}

#[test]
fn malformed_attributes() {
    let with = |offset: usize, bytes: &[u8]| {
        let mut changed = DNAT_ANSWER.to_vec();
        changed[offset..offset + bytes.len()].copy_from_slice(bytes);
        answer(&changed, 7).expect_err("malformed").to_string()
    };
    // The reply's IPv4 source (offset 80) said to be 3 bytes long.
    assert_eq!(
        with(80, &[7, 0]),
        "malformed conntrack answer: IPv4 source of 3 bytes, want 4"
    );
    // An attribute length below its own header.
    assert_eq!(
        with(80, &[2, 0]),
        "malformed conntrack answer: attribute of 2 bytes with 16 left"
    );
    // The reply tuple's nest longer than the message.
    assert_eq!(
        with(72, &[0x80, 0]),
        "malformed conntrack answer: attribute of 128 bytes with 76 left"
    );
    // UDP where TCP was asked for.
    assert_eq!(
        with(104, &[17]),
        "malformed conntrack answer: the reply tuple is protocol 17, not TCP"
    );
    // Another message type with our sequence number.
    assert_eq!(
        with(4, &[0x02, 0x01]),
        "malformed conntrack answer: unexpected netlink message type 0x0102"
    );
}

#[test]
fn ipv6_answer() {
    // Built from the request bytes: the original tuple, then the reply.
    let request = get_request(9, &tuple("[2001:db8::1]:40000", "[2001:db8::10]:80"));
    let reply = get_request(9, &tuple("[2001:db8::20]:8080", "[2001:db8::1]:40000"));
    let mut message = request.clone();
    message[4..6].copy_from_slice(&[0x00, 0x01]); // CT_NEW
    let mut reply_nest = reply[20..].to_vec();
    reply_nest[2] = 2; // CTA_TUPLE_REPLY
    message.extend_from_slice(&reply_nest);
    message[0] = message.len() as u8;
    let want = Entry {
        original: tuple("[2001:db8::1]:40000", "[2001:db8::10]:80"),
        reply: tuple("[2001:db8::20]:8080", "[2001:db8::1]:40000"),
    };
    assert_eq!(
        answer(&message, 9).expect("well-formed"),
        Some(Answer::Entry(want))
    );
}

#[test]
fn either_direction_reaches_the_other_source() {
    let entry = dnat_entry();
    let from_client = tuple("198.18.77.1:40000", "198.18.77.10:80");
    assert_eq!(
        reached_from(&entry, &from_client).expect("original"),
        addr("198.18.77.20:8080")
    );
    let from_backend = tuple("198.18.77.20:8080", "198.18.77.1:40000");
    assert_eq!(
        reached_from(&entry, &from_backend).expect("reply"),
        addr("198.18.77.1:40000")
    );
    let other = tuple("198.18.77.1:40001", "198.18.77.10:80");
    assert_eq!(
        reached_from(&entry, &other).expect_err("neither").kind(),
        io::ErrorKind::InvalidData
    );
}

#[test]
fn mapped_addresses_are_looked_up_as_ipv4() {
    let asked = kernel_tuple(
        addr("[::ffff:198.18.77.1]:40000"),
        addr("[::ffff:198.18.77.10]:80"),
    )
    .expect("one family");
    assert_eq!(asked, tuple("198.18.77.1:40000", "198.18.77.10:80"));
    assert_eq!(
        in_form_of(addr("[::ffff:198.18.77.10]:80"), addr("198.18.77.20:8080")),
        addr("[::ffff:198.18.77.20]:8080")
    );
    assert_eq!(
        in_form_of(addr("198.18.77.10:80"), addr("198.18.77.20:8080")),
        addr("198.18.77.20:8080")
    );
    let mixed =
        kernel_tuple(addr("198.18.77.1:40000"), addr("[2001:db8::10]:80")).expect_err("mixed");
    assert_eq!(
        mixed.to_string(),
        "198.18.77.1:40000 -> [2001:db8::10]:80 mixes IPv4 and IPv6"
    );
}

#[test]
fn bad_namespace_paths() {
    use super::Conntrack;
    use std::path::Path;

    let missing =
        Conntrack::open(Some(Path::new("/nonexistent/tfe-netns"))).expect_err("no such path");
    assert_eq!(
        missing.to_string(),
        "bad network namespace path /nonexistent/tfe-netns: No such file or directory (os error 2)"
    );
    // setns checks the namespace's type before any privilege.
    let uts = Conntrack::open(Some(Path::new("/proc/self/ns/uts"))).expect_err("not a netns");
    assert_eq!(
        uts.to_string(),
        "bad network namespace path /proc/self/ns/uts: not a network namespace"
    );
}
