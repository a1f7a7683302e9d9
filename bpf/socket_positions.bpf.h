/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A socket's send and receive positions, which the socket backend counts by.
 *
 * TCP already keeps, per socket, exactly what this exporter reports, in
 * sequence space: `write_seq` advances by every byte the application handed
 * to TCP (sendmsg, sendfile, splice, MSG_ZEROCOPY) and `copied_seq` by every
 * byte it took out (recvmsg, splice, TCP_ZEROCOPY_RECEIVE; MSG_PEEK does not
 * move it). Sequence numbers are 32 bits and wrap every 4 GiB, so the
 * positions extend them with the 64-bit counters TCP keeps next to them
 * (bytes_acked and bytes_received, Linux 4.1+):
 *
 *   send position    = bytes_acked    + (write_seq - snd_una)
 *   receive position = bytes_received - (rcv_nxt - copied_seq)
 *
 * positions_from() is that formula; the three readers below only gather its
 * fields, each the way its callers may read the socket, in the order given.
 *
 * Included once, by socket.bpf.c.
 */
#ifndef TCP_FLOW_EXPORTER_SOCKET_POSITIONS_BPF_H
#define TCP_FLOW_EXPORTER_SOCKET_POSITIONS_BPF_H

#define SOCK_DONE_BIT 1 /* enum sock_flags: SOCK_DONE, stable since 2.6 */

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

struct positions {
	__u64 sent;
	__u64 received;
};

/* `done`: SOCK_DONE is set, i.e. tcp_fin() has seen the peer's FIN. */
static __always_inline void positions_from(struct positions *p, __u64 bytes_acked, __u32 snd_una,
					   __u32 write_seq, __u32 copied_seq,
					   __u64 bytes_received, __u32 rcv_nxt, bool done)
{
	p->sent = bytes_acked + (__u32)(write_seq - snd_una);
	p->received = bytes_received - (__u32)(rcv_nxt - copied_seq);
	/* bytes_received counts the FIN too; once read, so does copied_seq. */
	if (copied_seq == rcv_nxt && done)
		p->received -= 1;
}

/* Read by address with a helper call per field: for any address, on any
 * kernel. */
static __always_inline void probed_positions(struct sock *sk, struct positions *p)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u64 acked = BPF_CORE_READ(tp, bytes_acked);
	__u32 una = BPF_CORE_READ(tp, snd_una);
	__u32 write_seq = BPF_CORE_READ(tp, write_seq);
	__u32 copied = BPF_CORE_READ(tp, copied_seq);
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	__u32 rcv_nxt = BPF_CORE_READ(tp, rcv_nxt);
	unsigned long flags = BPF_CORE_READ(sk, __sk_common.skc_flags);

	positions_from(p, acked, una, write_seq, copied, received, rcv_nxt,
		       flags & (1UL << SOCK_DONE_BIT));
}

/* Read with plain loads through the trusted pointer the tracing hooks pass.
 * The state-change and destroy programs run with the socket locked;
 * discovery does not, and reads twice. */
static __always_inline bool read_positions(struct sock *sk, struct positions *p)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u32 una, write_seq, copied, rcv_nxt;
	__u64 acked, received;
	unsigned long flags;

	if (!tp)
		return false;
	acked = tp->bytes_acked;
	write_seq = tp->write_seq;
	una = tp->snd_una;
	copied = tp->copied_seq;
	rcv_nxt = tp->rcv_nxt;
	received = tp->bytes_received;
	flags = sk->__sk_common.skc_flags;
	positions_from(p, acked, una, write_seq, copied, received, rcv_nxt,
		       flags & (1UL << SOCK_DONE_BIT));
	return true;
}

/* Read through a bpf_rdonly_cast() pointer (Linux 6.2+): plain loads that
 * fault safely, in the same order as the probed reads, kept by volatile. */
static __always_inline void cast_positions(struct tcp_sock *tp, struct positions *p)
{
	__u64 acked = READ_ONCE(tp->bytes_acked);
	__u32 una = READ_ONCE(tp->snd_una);
	__u32 write_seq = READ_ONCE(tp->write_seq);
	__u32 copied = READ_ONCE(tp->copied_seq);
	__u64 received = READ_ONCE(tp->bytes_received);
	__u32 rcv_nxt = READ_ONCE(tp->rcv_nxt);
	unsigned long flags = READ_ONCE(tp->inet_conn.icsk_inet.sk.__sk_common.skc_flags);

	positions_from(p, acked, una, write_seq, copied, received, rcv_nxt,
		       flags & (1UL << SOCK_DONE_BIT));
}

#endif /* TCP_FLOW_EXPORTER_SOCKET_POSITIONS_BPF_H */
