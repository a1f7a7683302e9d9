/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The socket backend's walk: walk_shard (or walk_shard_cast) reads the
 * totals of every live connection in one shard of socket_shards, unlocked,
 * and reports what each moved since it was last reported into walk_out.
 * User space runs it with BPF_PROG_TEST_RUN, once per shard, before each
 * scrape (see the top of socket.bpf.c).
 *
 * Why shards: bpf_for_each_map_elem() runs to the end of its map in one
 * program run, during which that CPU runs nothing else. Over a single map
 * of 262,144 connections that was ~110 ms per scrape on a 2-vCPU VM (Linux
 * 6.18). A shard holds at most SOCKET_SHARD_ENTRIES connections, and the
 * scheduler is free between runs. (A BPF iterator over the map's elements
 * would also walk in pieces, one read() at a time, but map-element iterators
 * fail to load with EPERM on some kernels, the project's CI machine among
 * them, while iterators over other targets load there.)
 *
 * Why the walk reports growth rather than totals: the output then holds
 * only connections that moved, so idle connections cost the walk its reads
 * of their sockets and nothing more, and user space keeps nothing per
 * connection.
 *
 * Included once, by socket.bpf.c, after its state-change programs.
 */
#ifndef TCP_FLOW_EXPORTER_SOCKET_WALK_BPF_H
#define TCP_FLOW_EXPORTER_SOCKET_WALK_BPF_H

/* One run's records. Only the walk writes them, and user space runs one
 * walk at a time; memory-mapped, so user space reads them in place. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct walk_output);
} walk_out SEC(".maps");

/* A connection's totals from its socket read by address, unlocked; returns
 * the flags read after the socket. */
static __always_inline __u32 probed_totals(struct sock *sk, struct socket_state *s,
					   struct connection_totals *t)
{
	struct positions now;

	probed_positions(sk, &now);
	return connection_totals(sk, s, &now, BPF_CORE_READ(sk, sk_shutdown), t);
}

/* Linux 6.2+: turns the address into a read-only typed pointer, so the walk
 * reads the socket with plain loads (faulting safely) instead of a helper
 * call per field. User space loads walk_shard_cast only where the kernel
 * has it. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

static __always_inline __u32 cast_totals(__u64 address, struct socket_state *s,
					 struct connection_totals *t)
{
	struct tcp_sock *tp =
		bpf_rdonly_cast((void *)address, bpf_core_type_id_kernel(struct tcp_sock));
	struct positions now;

	cast_positions(tp, &now);
	return connection_totals((struct sock *)address, s, &now,
				 tp->inet_conn.icsk_inet.sk.sk_shutdown, t);
}

/* What says whether a connection moved since the walk last read it: three
 * 32-bit fields in two of the socket's cache lines, where its totals take
 * seven (struct tcp_sock on 6.18: copied_seq; write_seq beside segs_out).
 * Most open connections are idle most of the time, and the walk's cost per
 * connection is its cache misses.
 *
 * write_seq and copied_seq are the exact positions modulo 4 GiB; they come
 * back to the same values only when a multiple of 4 GiB moved. segs_out
 * rules that out: it counts every segment the socket sends, pure ACKs
 * included (__tcp_transmit_skb()). Sending 4 GiB sends segments, and so
 * does receiving it: the peer may send at most one window (1 GiB at most)
 * past the last ACK it had. So a connection that moved is seen as unmoved
 * only if it also sent a multiple of 2^32 segments in between: 4 billion
 * segments between two walks, far beyond one connection's rate at any
 * scrape interval. */
struct glance {
	__u32 write_seq;
	__u32 copied_seq;
	__u32 segs_out;
};

static __always_inline void glance_at(__u64 address, struct glance *g, bool cast)
{
	if (cast) {
		struct tcp_sock *tp = bpf_rdonly_cast((void *)address,
						      bpf_core_type_id_kernel(struct tcp_sock));

		g->write_seq = READ_ONCE(tp->write_seq);
		g->copied_seq = READ_ONCE(tp->copied_seq);
		g->segs_out = READ_ONCE(tp->segs_out);
	} else {
		struct tcp_sock *tp = (struct tcp_sock *)address;

		g->write_seq = BPF_CORE_READ(tp, write_seq);
		g->copied_seq = BPF_CORE_READ(tp, copied_seq);
		g->segs_out = BPF_CORE_READ(tp, segs_out);
	}
}

/* Whether the connection is where the walk last left it, everything up to
 * there reported. The flags need no comparing: freezing the send position
 * at a FIN (SOCKET_SEND_FROZEN) keeps the total where it was, and a closed
 * connection always takes the full reading, since its receive total also
 * depends on sk_shutdown. A fresh entry matches no socket that has sent
 * fewer than 2^32 - 1 segments (track() sets seen_segs_out to ~0).
 *
 * A wrong "unmoved" (above; or a socket freed and its memory reused in
 * between, read as the same values) would only delay a report, never lose
 * it: the claims below and close_connection() account for every byte from
 * the reported totals. */
static __always_inline bool unmoved(const struct socket_state *s, const struct glance *g,
				    __u32 flags)
{
	return !(flags & SOCKET_CLOSED) && s->seen_write_seq == g->write_seq &&
	       s->seen_copied_seq == g->copied_seq && s->seen_segs_out == g->segs_out;
}

/* Only the walk writes these, and one walk runs at a time. */
static __always_inline void remember(struct socket_state *s, const struct glance *g)
{
	s->seen_write_seq = g->write_seq;
	s->seen_copied_seq = g->copied_seq;
	s->seen_segs_out = g->segs_out;
}

/* Moves a reported total from `before` to `now`; returns what that adds,
 * or 0 if the connection's end (close_connection()) took the total first. */
static __always_inline __u64 claim(__u64 *reported, __u64 before, __u64 now)
{
	if (now <= before || before == REPORTED_CLOSED)
		return 0;
	if (__sync_val_compare_and_swap(reported, before, now) != before)
		return 0;
	return now - before;
}

/* Reports what one connection moved since last time. The socket is read by
 * its address, without its lock, so the reading is kept only if the entry
 * was not marked dead meanwhile: the destroy program marks it before the
 * socket can be freed, and connection_totals() reads the flags after the
 * socket, so a socket still unmarked then was alive during the reads. One
 * reading is enough: its sums may be an ACK or a segment off, which
 * distance() corrects from the sequence numbers (socket_positions.bpf.h).
 *
 * The claims decide, atomically, between this walk and the connection's
 * end: each byte is reported by exactly one of them. Returns 1 (stop) when
 * the output is full. */
static __always_inline long walk_entry(__u64 address, struct socket_state *s,
				       struct walk_output *out, bool cast)
{
	struct connection_totals t = {};
	__u64 sent_before, received_before, sent, received;
	struct walk_record *record;
	struct glance g;
	__u32 flags, n;

	flags = load_flags(s);
	if (!counting_flags(flags))
		return 0;
	glance_at(address, &g, cast);
	if (unmoved(s, &g, flags))
		return 0; /* idle since the last walk: the common case */
	if (cast)
		flags = cast_totals(address, s, &t);
	else
		flags = probed_totals((struct sock *)address, s, &t);
	if (!counting_flags(flags))
		return 0;
	sent_before = READ_ONCE(s->reported_sent);
	received_before = READ_ONCE(s->reported_received);
	if (t.sent <= sent_before && t.received <= received_before) {
		remember(s, &g);
		return 0;
	}
	n = out->records;
	if (n >= SOCKET_SHARD_ENTRIES) {
		out->more = 1;
		return 1;
	}
	sent = claim(&s->reported_sent, sent_before, t.sent);
	received = claim(&s->reported_received, received_before, t.received);
	/* Whatever the claims got, nothing up to the glance is left unreported:
	 * a claim loses only to the connection's end. */
	remember(s, &g);
	if ((sent | received) == 0)
		return 0;
	record = &out->record[n];
	record->key = s->key;
	record->sent = sent;
	record->received = received;
	out->records = n + 1;
	return 0;
}

/* bpf_for_each_map_elem() passes its callbacks a pointer to the stack
 * only. */
struct walk_ctx {
	struct walk_output *out;
};

static long walk_probed(void *map, __u64 *address, struct socket_state *s, struct walk_ctx *ctx)
{
	return walk_entry(*address, s, ctx->out, false);
}

static long walk_cast(void *map, __u64 *address, struct socket_state *s, struct walk_ctx *ctx)
{
	return walk_entry(*address, s, ctx->out, true);
}

/* One run: the shard to walk is its only argument (its context). The run
 * times itself; raw tracepoint programs get no duration from
 * BPF_PROG_TEST_RUN. */
static __always_inline void walk_run(__u64 *ctx, bool cast)
{
	__u32 index = ctx[0], zero = 0;
	struct walk_ctx walk = {};
	struct walk_output *out;
	void *shard;

	out = bpf_map_lookup_elem(&walk_out, &zero);
	if (!out)
		return;
	out->records = 0;
	out->more = 0;
	out->run_ns = bpf_ktime_get_ns();
	shard = bpf_map_lookup_elem(&socket_shards, &index);
	walk.out = out;
	if (shard && cast)
		bpf_for_each_map_elem(shard, walk_cast, &walk, 0);
	else if (shard)
		bpf_for_each_map_elem(shard, walk_probed, &walk, 0);
	out->run_ns = bpf_ktime_get_ns() - out->run_ns;
}

/* Never attached: user space runs one of them with BPF_PROG_TEST_RUN. */
SEC("raw_tp")
int walk_shard(__u64 *ctx)
{
	walk_run(ctx, false);
	return 0;
}

SEC("raw_tp")
int walk_shard_cast(__u64 *ctx)
{
	walk_run(ctx, true);
	return 0;
}

#endif /* TCP_FLOW_EXPORTER_SOCKET_WALK_BPF_H */
