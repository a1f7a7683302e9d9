/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The socket backend's walk: refresh_sockets (or refresh_sockets_cast)
 * reads every live connection's totals into its socket_states entry,
 * unlocked, before each scrape (see the top of socket.bpf.c).
 *
 * Included once, by socket.bpf.c, after its state-change programs.
 */
#ifndef TCP_FLOW_EXPORTER_SOCKET_WALK_BPF_H
#define TCP_FLOW_EXPORTER_SOCKET_WALK_BPF_H

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
 * call per field. User space loads refresh_sockets_cast only where the
 * kernel has it. */
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

/* Reads one connection's totals into its entry. The socket is read by its
 * address, without its lock, so the reading is kept only if the entry was
 * not marked dead meanwhile: the destroy program marks it before the socket
 * can be freed, and connection_totals() reads the flags after the socket,
 * so a socket still unmarked then was alive during the reads. One reading
 * is enough: its sums may be an ACK or a segment off, which distance()
 * corrects from the sequence numbers (socket_positions.bpf.h). */
static __always_inline long refresh_entry(__u64 address, struct socket_state *s, bool cast)
{
	struct connection_totals t = {};
	__u32 flags;

	if (!counting_flags(load_flags(s)))
		return 0;
	if (cast)
		flags = cast_totals(address, s, &t);
	else
		flags = probed_totals((struct sock *)address, s, &t);
	if (!counting_flags(flags))
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

#endif /* TCP_FLOW_EXPORTER_SOCKET_WALK_BPF_H */
