/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The socket backend: nothing is counted per send or receive.
 *
 * TCP already keeps, per socket, exactly what this exporter reports, in
 * sequence space: `write_seq` advances by every byte the application handed
 * to TCP (sendmsg, sendfile, splice, MSG_ZEROCOPY) and `copied_seq` by every
 * byte it took out (recvmsg, splice, TCP_ZEROCOPY_RECEIVE; MSG_PEEK does not
 * move it). Sequence numbers are 32 bits and wrap every 4 GiB, so the
 * positions below extend them with the 64-bit counters TCP keeps next to
 * them (bytes_acked and bytes_received, Linux 4.1+):
 *
 *   send position    = bytes_acked    + (write_seq - snd_una)
 *   receive position = bytes_received - (rcv_nxt - copied_seq)
 *
 * A connection's totals are its positions minus those it started at. They
 * are read
 *   - for every live connection by refresh_sockets, which user space runs
 *     (BPF_PROG_TEST_RUN) before each scrape: it walks socket_states, the
 *     connections of every network namespace, and leaves each one's totals
 *     in its entry, which user space then reads in batches;
 *   - once more when the socket is destroyed, into closed_sockets.
 * User space keeps the last totals of each connection, named by (socket,
 * id), and adds only their growth to the flows, so reading a connection
 * twice never counts it twice and no program here needs atomics.
 *
 * The FIN takes one sequence number on each side, and is no payload:
 *   - sending: the position is frozen when the socket moves to FIN_WAIT1 or
 *     LAST_ACK, which tcp_close_state() does before tcp_send_fin() queues the
 *     FIN (if that fails to allocate, no FIN is queued, and nothing more can
 *     be sent either), and at TCP_CLOSE, after which nothing can be sent;
 *   - receiving: copied_seq steps over the FIN when the reader reaches it;
 *     SOCK_DONE (set by tcp_fin()) with nothing left unread means it did.
 *
 * Per send/recv event only a discovery program runs, and for a socket it
 * already knows it reads two to four pointers: every socket in
 * socket_states also carries a mark in BPF socket storage. Sockets older
 * than the exporter are found there, and counted from then on, on their
 * first send or receive.
 *
 * Needs Linux 5.13: socket storage from tracing programs (5.11) and
 * bpf_for_each_map_elem (5.13).
 * Included once, by flow.bpf.c.
 */
#ifndef TCP_FLOW_EXPORTER_SOCKET_BACKEND_BPF_H
#define TCP_FLOW_EXPORTER_SOCKET_BACKEND_BPF_H

#define SOCK_DONE_BIT 1 /* enum sock_flags: SOCK_DONE, stable since 2.6 */

/* The discovery hook runs after the call (tp_btf/sock_*_length), so the
 * socket's position already includes that call's bytes. */
const volatile bool discovery_after_call = false;

/* Every counted connection, keyed by its socket's address; deleted when the
 * socket is destroyed, so an address reused by a new socket starts afresh.
 * Allocated on insert, so its memory follows the live connections. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKETS_MAX_DEFAULT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct socket_state);
} socket_states SEC(".maps");

/* A mark on every socket in socket_states, where discovery can see it for
 * the price of one pointer read (sk->sk_bpf_storage). Freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} socket_marks SEC(".maps");

struct closed_key {
	__u64 socket;
	__u64 id;
};

/* Final totals of destroyed connections, until user space drains them
 * (once a second and at every scrape). Entries never change once written. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKETS_MAX_DEFAULT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct closed_key);
	__type(value, struct connection_totals);
} closed_sockets SEC(".maps");

static __always_inline __u64 probed_send_position(struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u64 acked = BPF_CORE_READ(tp, bytes_acked);
	__u32 una = BPF_CORE_READ(tp, snd_una);
	__u32 write_seq = BPF_CORE_READ(tp, write_seq);

	return acked + (__u32)(write_seq - una);
}

static __always_inline __u64 probed_receive_position(struct sock *sk)
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

/* Both positions of a socket, read with plain loads through the trusted
 * pointer the tracing hooks pass. The state-change and destroy programs run
 * with the socket locked; discovery does not, and reads twice. */
struct positions {
	__u64 sent;
	__u64 received;
};

static __always_inline bool read_positions(struct sock *sk, struct positions *p)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u32 copied, rcv_nxt;

	if (!tp)
		return false;
	p->sent = tp->bytes_acked + (__u32)(tp->write_seq - tp->snd_una);
	copied = tp->copied_seq;
	rcv_nxt = tp->rcv_nxt;
	p->received = tp->bytes_received - (__u32)(rcv_nxt - copied);
	if (copied == rcv_nxt && (sk->__sk_common.skc_flags & (1UL << SOCK_DONE_BIT)))
		p->received -= 1;
	return true;
}

/* Starts counting a connection whose positions are `sent` and `received`
 * now; keys it, or marks it ignored when --filter.* excludes it. The key is
 * taken here, once: by the time inet_sock_set_state reports TCP_CLOSE the
 * socket is unhashed and its port released (inet_num is 0), and
 * tcp_disconnect() clears the peer port. The flags are written last: the
 * walk reads them first, without the socket lock. */
static __always_inline void start_counting(struct sock *sk, struct socket_state *s, __u64 sent,
					   __u64 received, __u8 more_flags)
{
	struct flow_key key __attribute__((aligned(8))) = {};

	if (!flow_key_from_sock(sk, &key)) {
		s->flags = SOCKET_IGNORED;
		return;
	}
	key.role = s->role;
	if (!flow_selected(&key)) {
		s->flags = SOCKET_IGNORED;
		return;
	}
	aggregate_ports(&key);
	s->key = key;
	s->id = bpf_ktime_get_ns();
	s->sent_base = sent;
	s->received_base = received;
	s->sent_frozen = sent;
	asm volatile("" ::: "memory");
	s->flags = SOCKET_COUNTING | more_flags;
}

static __always_inline void freeze_send(struct socket_state *s, const struct positions *p)
{
	if (s->flags & SOCKET_SEND_FROZEN)
		return;
	s->sent_frozen = p->sent;
	asm volatile("" ::: "memory");
	s->flags |= SOCKET_SEND_FROZEN;
}

/* The connection's totals now. The live send position is read before the
 * flag: a FIN is queued only after the state change froze the position, so
 * a read that saw the FIN is followed by a flag read that sees the freeze.
 * tcp_disconnect() (connect(AF_UNSPEC), or close() with a zero linger time)
 * drops unread data by moving copied_seq up to rcv_nxt after the socket
 * reached TCP_CLOSE, and resets bytes_received: the receive position taken
 * at TCP_CLOSE then stands. */
static __always_inline void connection_totals(struct sock *sk, struct socket_state *s,
					       const struct positions *now, __u8 shutdown,
					       struct connection_totals *t)
{
	__u64 sent = now->sent, received = now->received;
	__u8 flags;

	asm volatile("" ::: "memory");
	flags = s->flags;
	if (flags & SOCKET_SEND_FROZEN)
		sent = s->sent_frozen;
	if ((flags & SOCKET_CLOSED) && (received < s->received_at_close || shutdown == 0))
		received = s->received_at_close;
	t->socket = (__u64)sk;
	t->id = s->id;
	t->key = s->key;
	t->sent = sent > s->sent_base ? sent - s->sent_base : 0;
	t->received = received > s->received_base ? received - s->received_base : 0;
}

/* Leaves a connection's final totals for user space. */
static __always_inline void close_connection(struct sock *sk, struct socket_state *s)
{
	struct connection_totals t = {};
	struct positions now;
	struct closed_key key;
	struct probe_health *h;

	if (!read_positions(sk, &now))
		return;
	connection_totals(sk, s, &now, sk->sk_shutdown, &t);
	key.socket = t.socket;
	key.id = t.id;
	/* The walk skips dead connections; user space reads closed_sockets
	 * after the walk, so it never sees a connection alive after its end. */
	s->flags |= SOCKET_DEAD;
	asm volatile("" ::: "memory");
	if (bpf_map_update_elem(&closed_sockets, &key, &t, BPF_NOEXIST) != 0) {
		h = health();
		if (h)
			__sync_fetch_and_add(&h->finals_dropped, 1);
	}
}

static __always_inline bool counting(const struct socket_state *s)
{
	return (s->flags & (SOCKET_COUNTING | SOCKET_DEAD)) == SOCKET_COUNTING;
}

/* States in which a connection carries bytes the walk should see. */
static __always_inline bool synchronized_state(int state)
{
	return state == TCP_ESTABLISHED || state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 ||
	       state == TCP_CLOSE_WAIT || state == TCP_CLOSING || state == TCP_LAST_ACK;
}

static __always_inline struct socket_state *socket_state_of(struct sock *sk)
{
	__u64 id = (__u64)sk;

	return bpf_map_lookup_elem(&socket_states, &id);
}

/* ---- marks --------------------------------------------------------------
 * A socket's BPF storage keeps a cache of 16 slots; each storage map owns
 * one slot (its cache_idx), which a lookup fills. Checking that our map's
 * slot holds our mark costs three loads and no helper call. The slot is
 * learned from the first socket marked; until then, and for a socket whose
 * slot holds another map's storage, a helper lookup decides. */

/* Written by user space after load: the id of socket_marks. */
volatile __u32 marks_map_id = 0;
/* 1 + socket_marks' cache slot, once learned; 0 before. */
volatile __u32 marks_cache_slot = 0;
/* socket_marks' struct bpf_local_storage_map, once learned; 0 before. */
volatile __u64 marks_smap = 0;

static __always_inline bool is_our_mark(struct bpf_local_storage_data *sdata)
{
	return sdata && sdata->smap && sdata->smap->map.id == marks_map_id;
}

static __always_inline struct bpf_local_storage_data *cache_slot(struct bpf_local_storage *st,
								 __u32 slot)
{
	switch (slot) {
	case 0: return st->cache[0];
	case 1: return st->cache[1];
	case 2: return st->cache[2];
	case 3: return st->cache[3];
	case 4: return st->cache[4];
	case 5: return st->cache[5];
	case 6: return st->cache[6];
	case 7: return st->cache[7];
	case 8: return st->cache[8];
	case 9: return st->cache[9];
	case 10: return st->cache[10];
	case 11: return st->cache[11];
	case 12: return st->cache[12];
	case 13: return st->cache[13];
	case 14: return st->cache[14];
	case 15: return st->cache[15];
	}
	return NULL;
}

/* Whether `sk` carries our mark: the whole per-event cost for known sockets. */
static __always_inline bool marked(struct sock *sk)
{
	struct bpf_local_storage *st = sk->sk_bpf_storage;
	__u32 slot = marks_cache_slot;

	if (!st)
		return false;
	/* Linux 6.2+ records which map created a socket's storage. Ours does,
	 * unless another program's storage came first: two loads. */
	if (bpf_core_field_exists(st->smap) && marks_smap && (__u64)st->smap == marks_smap)
		return true;
	if (slot && is_our_mark(cache_slot(st, slot - 1)))
		return true;
	return bpf_sk_storage_get(&socket_marks, sk, 0, 0) != NULL;
}

static __always_inline void mark(struct sock *sk)
{
	struct bpf_local_storage *st;
	__u32 i;

	if (!bpf_sk_storage_get(&socket_marks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE))
		return;
	if (marks_cache_slot)
		return;
	/* A lookup puts the mark in its cache slot; find which one it is. */
	bpf_sk_storage_get(&socket_marks, sk, 0, 0);
	st = sk->sk_bpf_storage;
	if (!st)
		return;
	for (i = 0; i < 16; i++) {
		struct bpf_local_storage_data *sdata = cache_slot(st, i);

		if (is_our_mark(sdata)) {
			marks_smap = (__u64)sdata->smap;
			marks_cache_slot = i + 1;
			return;
		}
	}
}

/* A fresh entry for `sk` with `role`, and its mark. NULL when the map is
 * full: the connection is then not counted, and sockets_untracked says so. */
static __always_inline struct socket_state *track(struct sock *sk, __u8 role)
{
	struct socket_state fresh = { .role = role };
	__u64 id = (__u64)sk;

	/* Marked first, even if the map is full: discovery then leaves the
	 * socket alone instead of failing again on every call. */
	mark(sk);
	if (bpf_map_update_elem(&socket_states, &id, &fresh, BPF_NOEXIST) == 0)
		count_socket_insert();
	else if (bpf_map_update_elem(&socket_states, &id, &fresh, BPF_EXIST) != 0) {
		count_socket_untracked();
		return NULL;
	}
	return bpf_map_lookup_elem(&socket_states, &id);
}

/* Runs with the socket locked. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(socket_set_state, struct sock *sk, int oldstate, int newstate)
{
	struct socket_state *s;
	struct positions now;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	s = socket_state_of(sk);
	if (newstate == TCP_SYN_SENT || (newstate == TCP_SYN_RECV && oldstate == TCP_LISTEN)) {
		/* Connecting again after tcp_disconnect(): the entry still holds
		 * the previous connection. End that one first. */
		if (s && counting(s))
			close_connection(sk, s);
		track(sk, newstate == TCP_SYN_SENT ? ROLE_CLIENT : ROLE_SERVER);
		return 0;
	}
	if (newstate == TCP_ESTABLISHED) {
		/* No entry: the handshake began before the exporter started. */
		if (!s)
			s = track(sk, ROLE_UNKNOWN);
		if (!s || s->flags || !read_positions(sk, &now))
			return 0;
		/* An active opener's send position counts its SYN (snd_una starts
		 * at the ISN), so it is 1 before any data. Data sent in the SYN
		 * with TCP Fast Open is already in write_seq here: start from 1,
		 * not from now, to count it. */
		if (s->role == ROLE_CLIENT && now.sent > 1)
			now.sent = 1;
		start_counting(sk, s, now.sent, now.received, 0);
		return 0;
	}
	if (!s || !counting(s))
		return 0;
	if (newstate != TCP_FIN_WAIT1 && newstate != TCP_LAST_ACK && newstate != TCP_CLOSE)
		return 0;
	if (!read_positions(sk, &now))
		return 0;
	freeze_send(s, &now);
	if (newstate == TCP_CLOSE) {
		s->received_at_close = now.received;
		asm volatile("" ::: "memory");
		s->flags |= SOCKET_CLOSED;
	}
	return 0;
}

/* Runs with the socket locked, before its memory is freed. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(socket_destroy, struct sock *sk)
{
	struct socket_state *s = socket_state_of(sk);
	__u64 id = (__u64)sk;

	if (!s)
		return 0;
	if (counting(s))
		close_connection(sk, s);
	if (bpf_map_delete_elem(&socket_states, &id) == 0)
		count_socket_delete();
	return 0;
}

/* A connection's totals from its socket read by address, unlocked. */
static __always_inline void probed_totals(struct sock *sk, struct socket_state *s,
					  struct connection_totals *t)
{
	struct positions now = {
		.sent = probed_send_position(sk),
		.received = probed_receive_position(sk),
	};

	connection_totals(sk, s, &now, BPF_CORE_READ(sk, sk_shutdown), t);
}

/* Linux 6.2+: turns the address into a read-only typed pointer, so the walk
 * reads the socket with plain loads (faulting safely) instead of a helper
 * call per field. User space loads refresh_sockets_cast only where the
 * kernel has it. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

static __always_inline void cast_totals(__u64 address, struct socket_state *s,
					struct connection_totals *t)
{
	struct tcp_sock *tp =
		bpf_rdonly_cast((void *)address, bpf_core_type_id_kernel(struct tcp_sock));
	struct positions now;
	__u32 una, write_seq, copied, rcv_nxt;
	__u64 acked, received;

	/* The same order as the probed reads, kept by volatile loads. */
	acked = READ_ONCE(tp->bytes_acked);
	una = READ_ONCE(tp->snd_una);
	write_seq = READ_ONCE(tp->write_seq);
	now.sent = acked + (__u32)(write_seq - una);
	copied = READ_ONCE(tp->copied_seq);
	received = READ_ONCE(tp->bytes_received);
	rcv_nxt = READ_ONCE(tp->rcv_nxt);
	now.received = received - (__u32)(rcv_nxt - copied);
	if (copied == rcv_nxt &&
	    (READ_ONCE(tp->inet_conn.icsk_inet.sk.__sk_common.skc_flags) & (1UL << SOCK_DONE_BIT)))
		now.received -= 1;
	connection_totals((struct sock *)address, s, &now, tp->inet_conn.icsk_inet.sk.sk_shutdown,
			  t);
}

static __always_inline void unlocked_totals(__u64 address, struct socket_state *s, bool cast,
					    struct connection_totals *t)
{
	if (cast)
		cast_totals(address, s, t);
	else
		probed_totals((struct sock *)address, s, t);
}

/* Reads one connection's totals into its entry. The socket is read by its
 * address, without its lock, so the reading is kept only if the entry was
 * not marked dead meanwhile: the destroy program marks it before the socket
 * can be freed, so a socket still unmarked after the reads was alive during
 * them. Positions are read twice; a pair straddling an update is read a
 * third time. */
static __always_inline long refresh_entry(__u64 address, struct socket_state *s, bool cast)
{
	struct connection_totals t = {}, again = {};

	if (!counting(s))
		return 0;
	unlocked_totals(address, s, cast, &t);
	unlocked_totals(address, s, cast, &again);
	if (t.sent != again.sent || t.received != again.received)
		unlocked_totals(address, s, cast, &t);
	asm volatile("" ::: "memory");
	if (!counting(s))
		return 0;
	s->walk_sent = t.sent;
	s->walk_received = t.received;
	return 0;
}

static long refresh_probed(void *map, __u64 *address, struct socket_state *s, void *ctx)
{
	return refresh_entry(*address, s, false);
}

static long refresh_cast(void *map, __u64 *address, struct socket_state *s, void *ctx)
{
	return refresh_entry(*address, s, true);
}

/* Never attached: user space runs one of them with BPF_PROG_TEST_RUN. */
SEC("raw_tp")
int refresh_sockets(void *ctx)
{
	bpf_for_each_map_elem(&socket_states, refresh_probed, NULL, 0);
	return 0;
}

SEC("raw_tp")
int refresh_sockets_cast(void *ctx)
{
	bpf_for_each_map_elem(&socket_states, refresh_cast, NULL, 0);
	return 0;
}

/* ---- discovery ---------------------------------------------------------
 * A socket the exporter has met carries its mark (see marks above); one
 * without it is an older connection, counted from this call on. */

/* Not inlined: the discovery programs' own code, run on every call, stays a
 * few instructions that need no stack and few registers to save. */
static __noinline void discover(struct sock *sk, long moved, bool sent, int flags)
{
	struct positions now, again;
	struct socket_state *s;
	__u8 more = 0;
	int state;

	if (sk->sk_protocol != IPPROTO_TCP || sk->sk_type != SOCK_STREAM)
		return;
	state = sk->__sk_common.skc_state;
	if (!synchronized_state(state))
		return;
	if (socket_state_of(sk))
		return; /* known, but its mark could not be made */
	if (!read_positions(sk, &now) || !read_positions(sk, &again))
		return;
	/* Unlocked: a reading that straddles an update is taken again. */
	if ((now.sent != again.sent || now.received != again.received) &&
	    !read_positions(sk, &now))
		return;
	s = track(sk, ROLE_UNKNOWN);
	if (!s)
		return;
	if (discovery_after_call && moved > 0) {
		if (sent)
			now.sent -= moved;
		else if (!(flags & MSG_PEEK))
			now.received -= moved;
	}
	if (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT)
		more = SOCKET_SEND_FROZEN; /* its FIN is queued: nothing more to send */
	start_counting(sk, s, now.sent, now.received, more);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(discover_tp_send, struct sock *sk, int ret, int flags)
{
	if (sk && !marked(sk))
		discover(sk, ret, true, flags);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(discover_tp_recv, struct sock *sk, int ret, int flags)
{
	if (sk && !marked(sk))
		discover(sk, ret, false, flags);
	return 0;
}

/* fentry runs before the call: the position does not yet include it. */
SEC("fentry/tcp_sendmsg")
int BPF_PROG(discover_fentry_sendmsg, struct sock *sk)
{
	if (!marked(sk))
		discover(sk, 0, true, 0);
	return 0;
}

SEC("fentry/tcp_sendpage")
int BPF_PROG(discover_fentry_sendpage, struct sock *sk)
{
	if (!marked(sk))
		discover(sk, 0, true, 0);
	return 0;
}

SEC("fentry/tcp_recvmsg")
int BPF_PROG(discover_fentry_recvmsg, struct sock *sk)
{
	if (!marked(sk))
		discover(sk, 0, false, 0);
	return 0;
}

#endif /* TCP_FLOW_EXPORTER_SOCKET_BACKEND_BPF_H */
