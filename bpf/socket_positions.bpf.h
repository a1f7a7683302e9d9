/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A socket's send and receive positions: how far the application has sent
 * and received, in bytes, which the socket backend counts by, and the
 * tracepoint backend's receive side too.
 *
 * TCP already keeps them, in sequence space: `write_seq` advances by every
 * byte the application handed to TCP (sendmsg, sendfile, splice,
 * MSG_ZEROCOPY) and `copied_seq` by every byte it took out (recvmsg,
 * splice, TCP_ZEROCOPY_RECEIVE; MSG_PEEK does not move it). Sequence
 * numbers are 32 bits and wrap every 4 GiB; the 64-bit counters TCP keeps
 * next to them (bytes_acked and bytes_received, Linux 4.1+) extend them:
 *
 *   send position    = bytes_acked    + (write_seq - snd_una)
 *   receive position = bytes_received - (rcv_nxt - copied_seq)
 *
 * Read without the socket lock, that 64-bit sum can be one ACK or one
 * segment off: TCP adds to bytes_acked before it moves snd_una, and to
 * bytes_received before it moves rcv_nxt (tcp_snd_una_update(),
 * tcp_rcv_nxt_update()). write_seq and copied_seq alone are single 32-bit
 * loads, exact at any moment. So a position is kept as both: the exact low
 * 32 bits in sequence space, and the 64-bit sum, which only has to say how
 * many times 4 GiB passed. distance() combines them, exactly, as long as
 * the sum is off by less than 2 GiB.
 */
#ifndef TCP_FLOW_EXPORTER_SOCKET_POSITIONS_BPF_H
#define TCP_FLOW_EXPORTER_SOCKET_POSITIONS_BPF_H

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

struct positions {
	__u64 sent;         /* the 64-bit sums */
	__u64 received;
	__u32 sent_seq;     /* exact, in sequence space: write_seq */
	__u32 received_seq; /* copied_seq, less a FIN it stepped over */
};

/* SOCK_DONE's bit in sk_flags (enum sock_flags), from this kernel's BTF: a
 * kernel without it fails to load the program instead of misreading. */
static __always_inline unsigned long sock_done_mask(void)
{
	return 1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE);
}

/* `done`: SOCK_DONE is set, i.e. tcp_fin() has seen the peer's FIN. */
static __always_inline void positions_from(struct positions *p, __u64 bytes_acked, __u32 snd_una,
					   __u32 write_seq, __u32 copied_seq,
					   __u64 bytes_received, __u32 rcv_nxt, bool done)
{
	/* bytes_received counts the FIN too; once read, so does copied_seq. */
	__u32 fin_read = copied_seq == rcv_nxt && done;

	p->sent = bytes_acked + (__u32)(write_seq - snd_una);
	p->sent_seq = write_seq;
	p->received = bytes_received - (__u32)(rcv_nxt - copied_seq) - fin_read;
	p->received_seq = copied_seq - fin_read;
}

/* Moves a position `bytes` back, both its sum and its sequence number. */
static __always_inline void rewind(__u64 *position, __u32 *seq, __u64 bytes)
{
	*position -= bytes;
	*seq -= (__u32)bytes;
}

/* Bytes from position (from, from_seq) to (to, to_seq): the low 32 bits
 * from the sequence numbers, the rest from the sums. 0 if `to` is behind. */
static __always_inline __u64 distance(__u64 from, __u32 from_seq, __u64 to, __u32 to_seq)
{
	__s64 approx = (__s64)(to - from);
	__u32 exact_low = to_seq - from_seq;
	__s64 exact = approx + (__s32)(exact_low - (__u32)approx);

	return exact > 0 ? exact : 0;
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
		       flags & sock_done_mask());
}

/* Read with plain loads through the trusted pointer the tracing hooks pass.
 * The state-change and destroy programs run with the socket locked;
 * discovery does not. */
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
		       flags & sock_done_mask());
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
		       flags & sock_done_mask());
}

#endif /* TCP_FLOW_EXPORTER_SOCKET_POSITIONS_BPF_H */
