/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The socket backend: no program runs per send or receive.
 *
 * TCP already counts, per socket, exactly what this exporter needs, in
 * sequence space: `write_seq` advances by every byte the application handed
 * to TCP (sendmsg, sendfile, splice, zero-copy) and `copied_seq` by every
 * byte it took out (recvmsg, splice, TCP_ZEROCOPY_RECEIVE; MSG_PEEK does not
 * move it). Sequence numbers are 32 bits and wrap every 4 GiB, so the
 * positions below extend them with the 64-bit counters TCP keeps next to
 * them (bytes_acked, bytes_received; Linux 4.1+):
 *
 *   send position    = bytes_acked    + (write_seq - snd_una)
 *   receive position = bytes_received - (rcv_nxt - copied_seq)
 *
 * A connection's bytes are its positions minus the positions it started at.
 * They are taken
 *   - at every scrape, by iter/tcp over the live sockets,
 *   - when the socket is destroyed (tp_btf/tcp_destroy_sock),
 * and each time only the growth since the last time goes into the flow
 * table, so every byte is added once. A socket's entry is only written with
 * the socket locked (state changes and destroy run under its lock; so does
 * the iterator from Linux 5.15), which orders those updates.
 *
 * The FIN takes one sequence number on each side:
 *   - sending: the position is frozen when the socket moves to FIN_WAIT1 or
 *     LAST_ACK, which tcp_close_state() does before tcp_send_fin() queues the
 *     FIN, and at TCP_CLOSE (after which nothing can be sent);
 *   - receiving: copied_seq steps over the FIN when the reader reaches it;
 *     SOCK_DONE (set by tcp_fin) with nothing left unread means it did.
 *
 * Included once, by flow.bpf.c, after the flow table and socket map.
 */
#ifndef TCP_FLOW_EXPORTER_SOCKETS_BPF_H
#define TCP_FLOW_EXPORTER_SOCKETS_BPF_H

/* Set by user space when the socket backend is chosen; the per-event
 * backends then only keep roles in the socket map. */
const volatile bool count_sockets = false;
/* Report a connection when it reaches TCP_CLOSE, not only when it is
 * destroyed: an application may hold a closed socket for long (after its
 * FIN_WAIT2 turned into TIME_WAIT, or after a reset), and the iterator no
 * longer sees it. Only where the iterator locks each socket (Linux 5.15+,
 * struct bpf_tcp_iter_state); on 5.10 it could run at the same time. */
const volatile bool report_at_close = false;

#define SOCK_DONE_BIT 1 /* enum sock_flags: SOCK_DONE, stable since 2.6 */

static __always_inline __u64 send_position(struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u32 write_seq = BPF_CORE_READ(tp, write_seq);
	__u64 acked = BPF_CORE_READ(tp, bytes_acked);
	__u32 una = BPF_CORE_READ(tp, snd_una);

	return acked + (__u32)(write_seq - una);
}

static __always_inline __u64 receive_position(struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u32 copied = BPF_CORE_READ(tp, copied_seq);
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	__u32 rcv_nxt = BPF_CORE_READ(tp, rcv_nxt);
	__u64 position = received - (__u32)(rcv_nxt - copied);

	/* bytes_received counts the FIN too; once read, so does copied_seq. */
	if (copied == rcv_nxt && (BPF_CORE_READ(sk, __sk_common.skc_flags) & (1UL << SOCK_DONE_BIT)))
		position -= 1;
	return position;
}

/* Starts counting a connection whose positions are `sent` and `received`
 * now. Keys it (or marks it ignored when --filter.* excludes it). */
static __always_inline void start_counting(struct sock *sk, struct socket_state *s, __u64 sent,
					   __u64 received)
{
	struct flow_key key __attribute__((aligned(8))) = {};

	s->sent_base = sent;
	s->received_base = received;
	s->sent_reported = 0;
	s->received_reported = 0;
	if (!flow_key_from_sock(sk, &key)) {
		s->flags |= SOCKET_IGNORED;
		return;
	}
	key.role = s->role;
	if (!flow_selected(&key)) {
		s->flags |= SOCKET_IGNORED;
		return;
	}
	aggregate_ports(&key);
	s->key = key;
	s->flags |= SOCKET_COUNTING;
}

/* Adds whatever the connection moved since it was last reported. */
static __always_inline void report(struct socket_state *s, __u64 sent_pos, __u64 received_pos)
{
	__u64 sent = sent_pos > s->sent_base ? sent_pos - s->sent_base : 0;
	__u64 received = received_pos > s->received_base ? received_pos - s->received_base : 0;
	__u64 sent_delta = sent > s->sent_reported ? sent - s->sent_reported : 0;
	__u64 received_delta = received > s->received_reported ? received - s->received_reported : 0;

	if (!sent_delta && !received_delta)
		return;
	s->sent_reported += sent_delta;
	s->received_reported += received_delta;
	add_to_flow(&s->key, sent_delta, received_delta);
}

/* Reads the live position before the flag: a FIN is queued only after the
 * state change froze the position, so if the read saw the FIN, the flag
 * read after it sees the freeze (this matters on 5.10, where the iterator
 * does not hold the socket lock). */
static __always_inline __u64 current_send_position(struct sock *sk, struct socket_state *s)
{
	__u64 live = send_position(sk);

	asm volatile("" ::: "memory");
	return (s->flags & SOCKET_SEND_FROZEN) ? s->sent_frozen : live;
}

static __always_inline void freeze_send(struct sock *sk, struct socket_state *s)
{
	if (s->flags & SOCKET_SEND_FROZEN)
		return;
	s->sent_frozen = send_position(sk);
	s->flags |= SOCKET_SEND_FROZEN;
}

/* The final report of a connection. tcp_disconnect() (connect(AF_UNSPEC),
 * or close() with a zero linger time) drops unread data by moving
 * copied_seq up to rcv_nxt after the socket reached TCP_CLOSE, and resets
 * bytes_received; the receive position taken at TCP_CLOSE is then the
 * right one. */
static __always_inline void finish(struct sock *sk, struct socket_state *s)
{
	__u64 received = receive_position(sk);

	if ((s->flags & SOCKET_CLOSED) &&
	    (received < s->received_at_close || BPF_CORE_READ(sk, sk_shutdown) == 0))
		received = s->received_at_close;
	report(s, current_send_position(sk, s), received);
}

/* Called from tp_btf/inet_sock_set_state with the socket locked, for the
 * state changes that matter to the byte positions. `s` may be NULL. */
static __always_inline void socket_state_changed(struct sock *sk, struct socket_state *s,
						 int oldstate, int newstate)
{
	struct socket_state fresh = {};
	__u64 id = (__u64)sk;
	__u64 sent, received;

	if (newstate == TCP_ESTABLISHED) {
		if (!s) {
			/* The handshake began before the exporter started. */
			fresh.role = ROLE_UNKNOWN;
			if (bpf_map_update_elem(&sockets, &id, &fresh, BPF_NOEXIST) == 0)
				count_socket_insert();
			s = bpf_map_lookup_elem(&sockets, &id);
			if (!s) {
				count_socket_untracked();
				return;
			}
		}
		if (s->flags & (SOCKET_COUNTING | SOCKET_IGNORED))
			return;
		sent = send_position(sk);
		received = receive_position(sk);
		/* An active opener's send position counts its SYN (snd_una starts
		 * at the ISN), so it is 1 before any data. Data sent in the SYN
		 * with TCP Fast Open is already in write_seq here: start from 1,
		 * not from now, to count it. */
		if (s->role == ROLE_CLIENT && !(s->flags & SOCKET_REUSED) && sent > 1)
			sent = 1;
		start_counting(sk, s, sent, received);
		return;
	}
	if (!s || !(s->flags & SOCKET_COUNTING))
		return;
	if (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) {
		freeze_send(sk, s);
	} else if (newstate == TCP_CLOSE) {
		freeze_send(sk, s);
		s->received_at_close = receive_position(sk);
		s->flags |= SOCKET_CLOSED;
		if (report_at_close)
			report(s, s->sent_frozen, s->received_at_close);
	}
}

/* A socket reconnecting after tcp_disconnect(): report the connection it
 * had, then start over as a client. */
static __always_inline void socket_reconnecting(struct sock *sk, struct socket_state *s)
{
	if (s->flags & SOCKET_COUNTING)
		report(s, s->sent_frozen,
		       (s->flags & SOCKET_CLOSED) ? s->received_at_close : s->received_reported);
	__builtin_memset(s, 0, sizeof(*s));
	s->role = ROLE_CLIENT;
	s->flags = SOCKET_REUSED;
}

/* Sockets the iterator may meet that carry no bytes of their own. */
static __always_inline bool synchronized_state(int state)
{
	return state == TCP_ESTABLISHED || state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 ||
	       state == TCP_CLOSE_WAIT || state == TCP_CLOSING || state == TCP_LAST_ACK;
}

/* Run by user space (a read of the iterator) before every scrape's drain.
 * On Linux 5.10 the iterator holds the hash bucket lock rather than the
 * socket's own; see BENCHMARKS.md and the README for what that allows. */
SEC("iter/tcp")
int iter_tcp_sockets(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct sock *sk = (struct sock *)skc;
	struct socket_state fresh = {}, *s;
	__u64 id = (__u64)sk;
	int state;

	if (!count_sockets || !skc)
		return 0;
	state = BPF_CORE_READ(skc, skc_state);
	if (!synchronized_state(state))
		return 0; /* listeners, handshakes, TIME_WAIT and request socks */
	s = bpf_map_lookup_elem(&sockets, &id);
	if (s) {
		if (s->flags & SOCKET_COUNTING)
			report(s, current_send_position(sk, s), receive_position(sk));
		return 0;
	}
	/* First sight of a connection older than the exporter: count from now. */
	fresh.role = ROLE_UNKNOWN;
	start_counting(sk, &fresh, send_position(sk), receive_position(sk));
	if (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT) {
		/* Its FIN is already in write_seq: nothing more will be sent. */
		fresh.sent_frozen = fresh.sent_base;
		fresh.flags |= SOCKET_SEND_FROZEN;
	}
	if (bpf_map_update_elem(&sockets, &id, &fresh, BPF_NOEXIST) == 0)
		count_socket_insert();
	else
		count_socket_untracked();
	return 0;
}

#endif /* TCP_FLOW_EXPORTER_SOCKETS_BPF_H */
