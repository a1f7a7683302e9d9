// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The socket backend: nothing is counted per send or receive.
 *
 * TCP already keeps, per socket, how far the application has sent and
 * received: the positions (socket_positions.bpf.h). A connection's totals
 * are its positions minus those it started at. They are read
 *   - for every live connection by the walk, which user space runs
 *     (BPF_PROG_TEST_RUN) before each scrape, one shard of socket_shards
 *     (the connections of every network namespace) per run: it reports
 *     what each connection moved since it last reported it
 *     (socket_walk.bpf.h);
 *   - once more when the socket is destroyed, which leaves what no walk
 *     reported in closed_sockets.
 * Each entry keeps what was reported, so user space keeps nothing per
 * connection and reading a connection twice never counts it twice.
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
 * socket_shards also carries a mark in BPF socket storage
 * (socket_marks.bpf.h). Sockets older than the exporter are found there,
 * and counted from then on, on their first send or receive.
 *
 * Needs Linux 5.13: socket storage from tracing programs (5.11) and
 * bpf_for_each_map_elem (5.13).
 */
#include "common.bpf.h"
#include "socket_positions.bpf.h"
#include "socket_marks.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The discovery hook runs after the call (tp_btf/sock_*_length), so the
 * socket's position already includes that call's bytes. */
const volatile bool discovery_after_call = false;

/* Every counted connection, keyed by its socket's address; deleted when the
 * socket is destroyed, so an address reused by a new socket starts afresh.
 * Allocated on insert, so its memory follows the live connections.
 *
 * Kept in shards of at most SOCKET_SHARD_ENTRIES: the walk runs over one
 * shard at a time, so that no single run holds a CPU for long, whatever the
 * number of connections. A new connection goes to a shard in use picked at
 * random, or, when that is full, to the last one; when that is full too,
 * one more shard comes into use (place()). Its socket's mark remembers
 * which (socket_marks.bpf.h). User space creates every shard --sockets.max
 * needs at load; the walk runs over those in use only, so its cost follows
 * the connections the node has had, not --sockets.max. */
struct socket_shard {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKET_SHARD_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct socket_state);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct socket_shard);
} socket_shards SEC(".maps");

/* Shards: [SHARDS_IN_USE] are 0 to n - 1, raised here only, one at a time;
 * [SHARDS_CREATED] are in socket_shards, written by user space at load. */
enum { SHARDS_IN_USE = 0, SHARDS_CREATED = 1 };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} shard_counts SEC(".maps");

/* Never read: clang describes a map's key and value types in BTF only one
 * level down, so an inner map's value would reach libbpf (and the Rust
 * side) as a bare declaration without this. */
const volatile struct socket_state socket_state_btf = {};

/* The shard of a mark (1 + its index), or NULL for 0. */
static __always_inline void *shard_at(__u32 mark)
{
	__u32 index = mark - 1;

	return mark ? bpf_map_lookup_elem(&socket_shards, &index) : NULL;
}

/* The shard `sk`'s entry lives in, if it has one. */
static __always_inline void *shard_of(struct sock *sk)
{
	__u32 *mark = bpf_sk_storage_get(&socket_marks, sk, 0, 0);

	return mark ? shard_at(*mark) : NULL;
}

/* A map update's result as an error number. Before Linux 6.4 the verifier
 * calls the map's update function directly, which returned an int, so the
 * program saw -E2BIG as 0xfffffff9 in a 64-bit register (seen on 6.1): only
 * the low 32 bits are the error. */
static __always_inline int update_error(long result)
{
	return (int)result;
}

/* Inserts `fresh` for `id` into shard `index`; 0, or the insert's error. */
static __always_inline int insert_into(__u32 index, __u64 *id, struct socket_state *fresh)
{
	void *shard = bpf_map_lookup_elem(&socket_shards, &index);

	return shard ? update_error(bpf_map_update_elem(shard, id, fresh, BPF_NOEXIST)) : -E2BIG;
}

/* Puts a new entry for `id` into a shard in use with room; returns 1 + its
 * index, or 0 if every shard created is full. */
static __always_inline __u32 place(__u64 *id, struct socket_state *fresh)
{
	__u32 in_use_key = SHARDS_IN_USE, created_key = SHARDS_CREATED;
	__u32 *in_use = bpf_map_lookup_elem(&shard_counts, &in_use_key);
	__u32 *created = bpf_map_lookup_elem(&shard_counts, &created_key);
	__u32 n, index;
	int err;

	if (!in_use || !created)
		return 0;
	n = READ_ONCE(*in_use);
	if (n == 0)
		return 0;
	index = bpf_get_prandom_u32() % n;
	err = insert_into(index, id, fresh);
	if (err == -E2BIG && index != n - 1) {
		index = n - 1;
		err = insert_into(index, id, fresh);
	}
	if (err == -E2BIG && n < READ_ONCE(*created)) {
		/* Whoever wins the exchange, one more shard is in use. */
		__sync_val_compare_and_swap(in_use, n, n + 1);
		index = READ_ONCE(*in_use) - 1;
		err = insert_into(index, id, fresh);
	}
	return err == 0 ? index + 1 : 0;
}

/* Final totals of destroyed connections, until user space drains them
 * (once a second and at every scrape). Entries never change once written. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKETS_MAX_DEFAULT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct closed_key);
	__type(value, struct connection_totals);
} closed_sockets SEC(".maps");

/* How socket_shards and closed_sockets fare (flow.h). */
HEALTH_MAP(struct socket_health);

/* Never read: keeps enum socket_flag in BTF for the Rust side, now that
 * socket_state.flags is a plain __u32 (see capacity_defaults_btf). */
const volatile enum socket_flag socket_flag_btf = SOCKET_NEW;

/* ---- ordering ----------------------------------------------------------
 * The walk reads socket_shards entries without the socket lock while the
 * locked programs write them: a writer fills in fields, then sets a flag;
 * the walk reads the flag, then the fields (and reads the socket before a
 * flag that says it is dead). Flags are only ever added, with an atomic OR,
 * so that an unlocked discovery and a locked state change never lose each
 * other's bits.
 *
 * The only ordering the BPF ISA gives on every architecture and on every
 * kernel this backend supports (5.13+) is that of atomic operations with
 * BPF_FETCH: they are fully ordered, like the kernel's atomic_fetch_*(),
 * which the interpreter uses for them and every JIT must match. A plain
 * atomic OR, without fetch, is relaxed (arm64 STSET). So flags are added
 * with a fetching OR, whose result is kept alive so that clang does not
 * drop the fetch, and the walk reads them with one, an OR of 0.
 *
 * On x86 the walk's side needs no more than program order: x86 does not
 * reorder loads with older loads, nor stores with older stores (TSO), and
 * the JIT emits the loads as written. There, the walk reads flags with a
 * plain load behind a compiler barrier, which costs nothing per connection. */
static __always_inline void add_flags(struct socket_state *s, __u32 bits)
{
	__u32 old = __sync_fetch_and_or(&s->flags, bits);

	asm volatile("" : : "r"(old) : "memory");
}

/* Orders every load and store before it with every one after it. A fetching
 * atomic on a stack slot is the BPF ISA's only full barrier; x86 keeps loads
 * in order already. */
static __always_inline void full_barrier(void)
{
#if defined(__TARGET_ARCH_x86)
	asm volatile("" ::: "memory");
#else
	__u64 fence = 0;
	__u64 old = __sync_fetch_and_add(&fence, 0);

	asm volatile("" : : "r"(old) : "memory");
#endif
}

static __always_inline __u32 load_flags(struct socket_state *s)
{
#if defined(__TARGET_ARCH_x86)
	__u32 flags;

	asm volatile("" ::: "memory");
	flags = READ_ONCE(s->flags);
	asm volatile("" ::: "memory");
	return flags;
#else
	return __sync_fetch_and_or(&s->flags, 0);
#endif
}

/* Starts counting a connection whose positions are `sent` and `received`
 * now; keys it, or marks it ignored when --filter.* excludes it. The key is
 * taken here, once: by the time inet_sock_set_state reports TCP_CLOSE the
 * socket is unhashed and its port released (inet_num is 0), and
 * tcp_disconnect() clears the peer port. The flags are written last: the
 * walk reads them first, without the socket lock. */
static __always_inline void start_counting(struct sock *sk, struct socket_state *s,
					   const struct positions *from, __u32 more_flags)
{
	struct flow_key key __attribute__((aligned(8))) = {};

	if (!flow_key_from_sock(sk, &key)) {
		add_flags(s, SOCKET_IGNORED);
		return;
	}
	key.role = s->key.role;
	if (!flow_selected(&key)) {
		add_flags(s, SOCKET_IGNORED);
		return;
	}
	aggregate_ports(&key);
	s->key = key;
	s->id = bpf_ktime_get_ns();
	s->sent_base = from->sent;
	s->sent_base_seq = from->sent_seq;
	s->received_base = from->received;
	s->received_base_seq = from->received_seq;
	s->sent_frozen = from->sent;
	s->sent_frozen_seq = from->sent_seq;
	add_flags(s, SOCKET_COUNTING | more_flags);
}

static __always_inline void freeze_send(struct socket_state *s, const struct positions *p)
{
	if (s->flags & SOCKET_SEND_FROZEN)
		return;
	s->sent_frozen = p->sent;
	s->sent_frozen_seq = p->sent_seq;
	add_flags(s, SOCKET_SEND_FROZEN);
}

/* The connection's totals now; returns the flags they were taken under.
 * The live send position is read before the flag: a FIN is queued only after the state change froze the position, so
 * a read that saw the FIN is followed by a flag read that sees the freeze.
 * tcp_disconnect() (connect(AF_UNSPEC), or close() with a zero linger time)
 * drops unread data by moving copied_seq up to rcv_nxt after the socket
 * reached TCP_CLOSE, and resets bytes_received: the receive position taken
 * at TCP_CLOSE then stands. */
static __always_inline __u32 connection_totals(struct sock *sk, struct socket_state *s,
					       const struct positions *now, __u8 shutdown,
					       struct connection_totals *t)
{
	__u32 flags = load_flags(s);
	__u64 received, at_close;

	t->socket = (__u64)sk;
	t->id = s->id;
	t->key = s->key;
	if (flags & SOCKET_SEND_FROZEN)
		t->sent = distance(s->sent_base, s->sent_base_seq, s->sent_frozen,
				   s->sent_frozen_seq);
	else
		t->sent = distance(s->sent_base, s->sent_base_seq, now->sent, now->sent_seq);
	received = distance(s->received_base, s->received_base_seq, now->received,
			    now->received_seq);
	if (flags & SOCKET_CLOSED) {
		at_close = distance(s->received_base, s->received_base_seq,
				    s->received_at_close, s->received_close_seq);
		if (received < at_close || shutdown == 0)
			received = at_close;
	}
	t->received = received;
	return flags;
}

/* Leaves a connection's final totals for user space. */
static __always_inline void close_connection(struct sock *sk, struct socket_state *s)
{
	struct connection_totals t = {};
	struct positions now;
	struct closed_key key;
	__u64 reported;

	if (!read_positions(sk, &now))
		return;
	connection_totals(sk, s, &now, sk->sk_shutdown, &t);
	/* Takes what the walk reported and closes the books on it in one
	 * atomic step each: a walk that read the socket before this either
	 * moved `reported` first, and its bytes are left out here, or finds
	 * REPORTED_CLOSED and reports nothing (socket_walk.bpf.h). */
	reported = __sync_lock_test_and_set(&s->reported_sent, REPORTED_CLOSED);
	t.sent = t.sent > reported ? t.sent - reported : 0;
	reported = __sync_lock_test_and_set(&s->reported_received, REPORTED_CLOSED);
	t.received = t.received > reported ? t.received - reported : 0;
	key.socket = t.socket;
	key.id = t.id;
	/* The walk skips dead connections; user space reads closed_sockets
	 * after the walk, so it never sees a connection alive after its end. */
	add_flags(s, SOCKET_DEAD);
	if (bpf_map_update_elem(&closed_sockets, &key, &t, BPF_NOEXIST) != 0)
		health_count(finals_dropped);
}

static __always_inline bool counting_flags(__u32 flags)
{
	return (flags & (SOCKET_COUNTING | SOCKET_DEAD)) == SOCKET_COUNTING;
}

/* For the programs that hold the socket lock, which write the flags. */
static __always_inline bool counting(const struct socket_state *s)
{
	return counting_flags(s->flags);
}

/* States in which a connection carries bytes the walk should see. */
static __always_inline bool synchronized_state(int state)
{
	return state == TCP_ESTABLISHED || state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 ||
	       state == TCP_CLOSE_WAIT || state == TCP_CLOSING || state == TCP_LAST_ACK;
}

static __always_inline struct socket_state *socket_state_of(struct sock *sk)
{
	void *shard = shard_of(sk);
	__u64 id = (__u64)sk;

	return shard ? bpf_map_lookup_elem(shard, &id) : NULL;
}

/* A fresh entry for `sk` with `role`, and its mark. NULL when every shard
 * is full or no memory is left: the connection is then not counted, and
 * sockets_untracked says so.
 * `replace`: an entry already there belongs to an earlier connection of
 * this socket (the state-change programs, which hold the socket lock).
 * Without it (discovery, unlocked), an entry already there means another
 * CPU discovered the socket first, and its entry is left as it is.
 *
 * A socket's shard never changes once its mark names it: a new entry is
 * placed first and then claimed on the mark with an atomic exchange, and an
 * entry that lost the claim (two CPUs discovering one socket) is deleted
 * before anything could find it through the mark. So every entry is
 * reachable from its socket, and deleted when the socket is destroyed. */
static __always_inline struct socket_state *track(struct sock *sk, enum flow_role role,
						  bool replace)
{
	/* The walk's first glance must not match (socket_walk.bpf.h). */
	struct socket_state fresh = { .key.role = role, .seen_segs_out = ~0U };
	__u32 *marked_as, placed, claimed;
	__u64 id = (__u64)sk;
	void *shard;

	/* Marked first, even if no entry can be made: discovery then leaves
	 * the socket alone instead of failing again on every call. */
	marked_as = mark(sk);
	if (!marked_as) {
		health_count(sockets_untracked);
		return NULL;
	}
	claimed = READ_ONCE(*marked_as);
	if (!claimed) {
		placed = place(&id, &fresh);
		if (!placed) {
			health_count(sockets_untracked);
			return NULL;
		}
		claimed = __sync_val_compare_and_swap(marked_as, 0, placed);
		shard = shard_at(placed);
		if (!claimed) {
			health_count(socket_inserts);
			return shard ? bpf_map_lookup_elem(shard, &id) : NULL;
		}
		if (shard)
			bpf_map_delete_elem(shard, &id);
		if (!replace)
			return NULL;
	} else if (!replace) {
		return NULL;
	}
	/* The socket has its shard: its entry, if any, is an earlier
	 * connection's, or another CPU's discovery (then kept as it is). */
	shard = shard_at(claimed);
	if (!shard) {
		health_count(sockets_untracked);
		return NULL;
	}
	if (bpf_map_update_elem(shard, &id, &fresh, BPF_NOEXIST) == 0) {
		health_count(socket_inserts);
		return bpf_map_lookup_elem(shard, &id);
	}
	if (bpf_map_update_elem(shard, &id, &fresh, BPF_EXIST) != 0) {
		health_count(sockets_untracked);
		return NULL;
	}
	return bpf_map_lookup_elem(shard, &id);
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
		track(sk, newstate == TCP_SYN_SENT ? ROLE_CLIENT : ROLE_SERVER, true);
		return 0;
	}
	if (newstate == TCP_ESTABLISHED) {
		/* No entry: the handshake began before the exporter started, or
		 * its entry could not be made then (a shard's allocator can run
		 * dry for a moment under a burst of new connections, as seen on
		 * 6.1 under qemu). Where it came from still says which end it is. */
		if (!s)
			s = track(sk, oldstate == TCP_SYN_SENT   ? ROLE_CLIENT :
				      oldstate == TCP_SYN_RECV   ? ROLE_SERVER :
								   ROLE_UNKNOWN,
				  true);
		if (!s || s->flags || !read_positions(sk, &now))
			return 0;
		/* Locked: `now` is exact, so moving its position moves its
		 * sequence number by as much. An active opener's send position
		 * counts its SYN (snd_una starts at the ISN), so it is 1 before
		 * any data. Data sent in the SYN with TCP Fast Open is already
		 * in write_seq here: start from 1, not from now, to count it. */
		if (s->key.role == ROLE_CLIENT && now.sent > 1)
			rewind(&now.sent, &now.sent_seq, now.sent - 1);
		/* A passive opener receives nothing before its SYN_RECV clone,
		 * so its receive position starts at 0. With TCP Fast Open the
		 * SYN's data is queued, and may have been read, before the
		 * handshake's last ACK moves it here: start from 0 to count it. */
		if (s->key.role == ROLE_SERVER && BPF_CORE_READ_BITFIELD_PROBED(
						      (struct tcp_sock *)sk, syn_data_acked))
			rewind(&now.received, &now.received_seq, now.received);
		start_counting(sk, s, &now, 0);
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
		s->received_close_seq = now.received_seq;
		add_flags(s, SOCKET_CLOSED);
	}
	return 0;
}

/* Runs with the socket locked, before its memory is freed. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(socket_destroy, struct sock *sk)
{
	struct socket_state *s;
	void *shard = shard_of(sk);
	__u64 id = (__u64)sk;

	s = shard ? bpf_map_lookup_elem(shard, &id) : NULL;
	if (!s)
		return 0;
	if (counting(s))
		close_connection(sk, s);
	if (bpf_map_delete_elem(shard, &id) == 0)
		health_count(socket_deletes);
	return 0;
}

/* The walk: walk_shard and walk_shard_cast. Included between the
 * state-change programs and discovery, so that libbpf, and with it the
 * exporter's program metrics, list the programs in the order the data
 * flows: state changes, walk, discovery. */
#include "socket_walk.bpf.h"

/* ---- discovery ---------------------------------------------------------
 * A socket the exporter has met carries its mark (socket_marks.bpf.h); one
 * without it is an older connection, counted from this call on. */

/* Not inlined: the discovery programs' own code, run on every call, stays a
 * few instructions that need no stack and few registers to save. */
static __noinline void discover(struct sock *sk, long moved, bool sent, int flags)
{
	struct positions now;
	struct socket_state *s;
	__u32 more = 0;
	int state;

	if (sk->sk_protocol != IPPROTO_TCP || sk->sk_type != SOCK_STREAM)
		return;
	state = sk->__sk_common.skc_state;
	if (!synchronized_state(state))
		return;
	/* Unlocked. The sums may be an ACK or a segment off; the sequence
	 * numbers are not, and distance() needs no more (socket_positions.bpf.h). */
	if (!read_positions(sk, &now))
		return;
	/* Read after the positions: a FIN is queued only after the state
	 * change to FIN_WAIT1 or LAST_ACK, so if the reading above includes a
	 * FIN, this read sees that state. */
	full_barrier();
	if (sk->__sk_common.skc_state != state)
		state = TCP_FIN_WAIT1;
	s = track(sk, ROLE_UNKNOWN, false);
	if (!s)
		return;
	if (discovery_after_call && moved > 0) {
		if (sent)
			rewind(&now.sent, &now.sent_seq, moved);
		else
			rewind(&now.received, &now.received_seq, moved);
	}
	/* Its FIN may be queued (or the state moved under us): nothing more
	 * can be sent, and the send position may count the FIN, so this
	 * connection's send side counts nothing from here on. */
	if (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT)
		more = SOCKET_SEND_FROZEN;
	start_counting(sk, s, &now, more);
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
	/* A peek moves no position; an error-queue read (timestamps,
	 * MSG_ZEROCOPY completions) returns no payload. Neither tells how far
	 * the receive position moved, so neither discovers. */
	if (flags & (MSG_PEEK | MSG_ERRQUEUE))
		return 0;
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

/* fentry runs before the call, so an error-queue read or a peek is
 * harmless here: the position is read before it. */
SEC("fentry/tcp_recvmsg")
int BPF_PROG(discover_fentry_recvmsg, struct sock *sk)
{
	if (!marked(sk))
		discover(sk, 0, false, 0);
	return 0;
}
