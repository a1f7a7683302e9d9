// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The per-event backends: per-flow TCP payload byte counters, added to on
 * every send and receive. (The socket backend, socket.bpf.c, is the other
 * object.)
 *
 * Every backend here counts what the socket call *returned*: the bytes the
 * application really handed to TCP or really got back, never the size it asked
 * for. The three backends differ only in where they see that return value:
 *
 *   tracepoint  tp_btf/sock_{send,recv}_length  Linux >= 6.5 (see below)
 *   fentry      fexit/tcp_{sendmsg,recvmsg}     plus tcp_sendpage before 6.5,
 *               fexit/tcp_splice_read           and splice() reads
 *   kprobe      kprobe + kretprobe pairs        same functions as fentry
 *
 * Reads that bypass recvmsg (splice(), TCP_ZEROCOPY_RECEIVE, kernel
 * readers) are the exception on the tracepoint backend: no tracepoint
 * reports their size, so it counts received bytes by how far the socket's
 * receive position moved instead (see "tracepoint backend" below).
 *
 * User space enables exactly one backend's programs (set_autoload) and, for the
 * fentry and kprobe backends, the tcp_recvmsg twin that matches this kernel's
 * signature. All of them end in count_bytes(). Two tp_btf programs, attached
 * with each of these backends, remember which end of each connection is
 * local (socket_roles).
 */
#include "common.bpf.h"
#include "socket_positions.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Bytes per flow since user space last drained the table. There are two
 * tables and `active_flows` points at the one the probes write. To drain,
 * user space points it at the other table; the kernel waits for every BPF
 * program that may still hold the old one to finish (a map-in-map update
 * calls synchronize_rcu(), see maybe_wait_bpf_programs()), so user space
 * then reads and empties the old table while nothing writes to it. Deleting
 * entries a probe might still be adding to would lose those bytes: a freed
 * hash element is reused at once for another key. */
struct flow_table {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FLOWS_MAX_DEFAULT);
	__type(key, struct flow_key);
	__type(value, struct flow_bytes);
};
struct flow_table flows_even SEC(".maps");
struct flow_table flows_odd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct flow_table);
} active_flows SEC(".maps") = {
	.values = { &flows_even },
};

/* Bytes of flows that found the flow table full. One slot per CPU, so the
 * fallback path never contends; user space sums the CPUs. Never reset. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_bytes);
} flow_overflow SEC(".maps");

/* What is remembered of a socket seen from its SYN. */
struct known_socket {
	enum flow_role role;
	__u8 pad;
	/* Its local port, once established: TCP releases the port (inet_num
	 * becomes 0) when the socket reaches TCP_CLOSE, which a socket that
	 * entered TIME_WAIT, or was reset, does while data may still wait to
	 * be read; those reads keep the connection's key. */
	__u16 local_port;
};

/* The role of every TCP socket that connected or was accepted while the
 * exporter runs, keyed by the socket's address. Written on the state change
 * that reveals the role, deleted when the socket is destroyed: not at
 * TCP_CLOSE, because an application still reads queued data after that
 * (shutdown(SHUT_WR) and read to EOF, or data followed by a reset).
 * Allocated on insert, so its memory follows the live connections. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKETS_MAX_DEFAULT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct known_socket);
} socket_roles SEC(".maps");

/* kprobe backend only: the socket a thread passed to tcp_*msg / tcp_sendpage,
 * kept from entry to return. NULL means "this call is not counted" (MSG_PEEK). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct sock *);
} kprobe_inflight SEC(".maps");

/* How the probes and socket_roles fare (flow.h). */
HEALTH_MAP(struct per_event_health);

/* Tracepoint backend only: the receive position (socket_positions.bpf.h)
 * up to which a socket's received bytes are counted. */
struct rx_counted {
	__u64 position;
	/* Set up inside a read, on a connection older than the exporter:
	 * `anchor` is where counting began, and the read's bytes before it
	 * are still to be counted, by the sock_recv_length that ends it. */
	__u64 anchor;
	__u8 pending;
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct rx_counted);
} rx_positions SEC(".maps");

/* Set by user space: the tracepoint backend counts receives this way. */
const volatile bool rx_by_position = false;

/* A connection seen from its SYN: nothing received yet, whatever the
 * (not yet initialised) sequence numbers of a fresh clone say. */
static __always_inline void rx_start(struct sock *sk)
{
	struct rx_counted *rx = bpf_sk_storage_get(&rx_positions, sk, 0,
						   BPF_SK_STORAGE_GET_F_CREATE);

	if (rx) {
		rx->position = 0;
		rx->pending = 0;
	}
}

static __always_inline void add_bytes(struct flow_bytes *counters, __u64 bytes, bool sent)
{
	if (sent)
		__sync_fetch_and_add(&counters->sent, bytes);
	else
		__sync_fetch_and_add(&counters->received, bytes);
}

/* Fills in the key's role, and its local port if TCP already released it. */
static __always_inline void remembered(struct sock *sk, struct flow_key *key)
{
	__u64 id = (__u64)sk;
	struct known_socket *known = bpf_map_lookup_elem(&socket_roles, &id);

	key->role = known ? known->role : ROLE_UNKNOWN;
	if (known && key->local_port == 0)
		key->local_port = known->local_port;
}

/* The accounting body every hook shares. `ret` is the socket call's return
 * value: negative for errors, 0 for nothing moved. */
static __always_inline void count_bytes(struct sock *sk, long ret, bool sent)
{
	struct flow_key key __attribute__((aligned(8))) = {};
	struct flow_bytes *counters, fresh = {};
	__u32 zero = 0;
	void *flows;
	__u64 now;

	if (ret <= 0 || !sk || !flow_key_from_sock(sk, &key))
		return;
	remembered(sk, &key);
	if (!flow_selected(&key))
		return;
	aggregate_ports(&key);

	flows = bpf_map_lookup_elem(&active_flows, &zero);
	if (!flows)
		return; /* slot 0 always holds a table */
	now = bpf_ktime_get_ns();
	counters = bpf_map_lookup_elem(flows, &key);
	if (!counters) {
		fresh.last_seen_ns = now;
		if (sent)
			fresh.sent = ret;
		else
			fresh.received = ret;
		if (bpf_map_update_elem(flows, &key, &fresh, BPF_NOEXIST) == 0)
			return;
		/* Either another CPU created the flow first (-EEXIST), or the table
		 * is full (-E2BIG / -ENOMEM). A second lookup tells the two apart. */
		counters = bpf_map_lookup_elem(flows, &key);
		if (!counters) {
			counters = bpf_map_lookup_elem(&flow_overflow, &zero);
			if (!counters)
				return;
		}
	}
	add_bytes(counters, ret, sent);
	counters->last_seen_ns = now;
}

/* ---- connection roles --------------------------------------------------
 * inet_sock_set_state fires on every TCP state change (Linux 4.16+). A socket
 * that connect()s goes CLOSE -> SYN_SENT. An accepted socket is cloned from
 * its listener and set to SYN_RECV at once (inet_csk_clone_lock), so the
 * change reads LISTEN -> SYN_RECV. A simultaneous open, such as a socket
 * connecting to its own address and port, goes SYN_SENT -> SYN_RECV and
 * stays a client. */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	__u64 id = (__u64)sk;
	struct known_socket known = {};
	struct known_socket *seen;
	enum flow_role role;

	if (newstate == TCP_ESTABLISHED) {
		seen = bpf_map_lookup_elem(&socket_roles, &id);
		if (seen)
			seen->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
		return 0;
	}
	if (newstate == TCP_SYN_SENT)
		role = ROLE_CLIENT;
	else if (newstate == TCP_SYN_RECV && oldstate == TCP_LISTEN)
		role = ROLE_SERVER;
	else
		return 0;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	if (rx_by_position)
		rx_start(sk);

	known.role = role;
	if (bpf_map_update_elem(&socket_roles, &id, &known, BPF_NOEXIST) == 0) {
		health_count(role_inserts);
		return 0;
	}
	/* The address of a socket destroyed before the exporter started, or a
	 * reconnect of the same socket: overwrite. Failing that, the map is full. */
	if (bpf_map_update_elem(&socket_roles, &id, &known, BPF_EXIST) != 0)
		health_count(roles_untracked);
	return 0;
}

/* tcp_v4_destroy_sock() runs once for every TCP socket, IPv6 ones included
 * (tcp_v6_destroy_sock calls it), when its memory is about to be freed. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(tp_tcp_destroy_sock, struct sock *sk)
{
	__u64 id = (__u64)sk;

	if (bpf_map_delete_elem(&socket_roles, &id) == 0)
		health_count(role_deletes);
	return 0;
}

/* ---- tracepoint backend ------------------------------------------------
 * sock_send_length / sock_recv_length were added in Linux 6.3 and fire in
 * sock_sendmsg() / sock_recvmsg() with the call's return value. Before 6.5,
 * sendfile() and splice() reached TCP through ->sendpage and bypassed
 * sock_sendmsg(), so user space accepts this backend only on kernels without
 * tcp_sendpage (6.5+, where splice_to_socket() uses MSG_SPLICE_PAGES).
 *
 * Receiving has no such path: splice() from a socket (tcp_splice_read ->
 * tcp_read_sock), TCP_ZEROCOPY_RECEIVE and in-kernel readers never call
 * sock_recvmsg(). Every one of them, and tcp_recvmsg() too, moves
 * copied_seq and then calls tcp_rcv_space_adjust(), with the socket lock
 * held, whose tracepoint carries no size. So this backend counts received
 * bytes as the growth of the receive position between those calls, from
 * where it started: 0 for a connection seen from its SYN, or, for one
 * older than the exporter, where its first read after the start began. */

/* The receive position, read the way the caller may: `now`. */
static __always_inline bool rx_position(struct sock *sk, __u64 *now)
{
	struct positions p;

	if (!read_positions(sk, &p))
		return false;
	*now = p.received;
	return true;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(tp_tcp_rcv_space_adjust, struct sock *sk)
{
	struct rx_counted *rx = bpf_sk_storage_get(&rx_positions, sk, 0, 0);
	__u64 now;

	if (!rx_position(sk, &now))
		return 0;
	if (!rx) {
		/* Older than the exporter: start here. If this is a recvmsg(),
		 * its sock_recv_length counts what it read before this point. */
		rx = bpf_sk_storage_get(&rx_positions, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (rx) {
			rx->position = now;
			rx->anchor = now;
			rx->pending = 1;
		}
		return 0;
	}
	/* Locked, so `now` is exact. It goes back only when tcp_disconnect()
	 * resets the counters; the next connection then starts at 0 again. */
	if (now > rx->position) {
		count_bytes(sk, now - rx->position, false);
		rx->position = now;
	} else if (now < rx->position) {
		rx->position = now;
	}
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_sock_send_length, struct sock *sk, int ret, int flags)
{
	count_bytes(sk, ret, true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_sock_recv_length, struct sock *sk, int ret, int flags)
{
	struct rx_counted *rx;
	__u64 now, start;

	/* A peek leaves the data queued for the read that really consumes it;
	 * MSG_ERRQUEUE returns error-queue records, not payload. */
	if (ret <= 0 || !sk || (flags & (MSG_PEEK | MSG_ERRQUEUE)))
		return 0;
	if (!rx_by_position) {
		count_bytes(sk, ret, false);
		return 0;
	}
	rx = bpf_sk_storage_get(&rx_positions, sk, 0, 0);
	if (rx && !rx->pending)
		return 0; /* tp_tcp_rcv_space_adjust counted it */
	/* Unlocked, after the call: `now` may be one segment ahead, which
	 * only moves `start` later and errs low. */
	if (!rx_position(sk, &now))
		return 0;
	start = now - ret;
	if (!rx) {
		/* Older than the exporter, and no adjust ran: count this read
		 * and go on from here. */
		count_bytes(sk, ret, false);
		rx = bpf_sk_storage_get(&rx_positions, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (rx)
			rx->position = now;
		return 0;
	}
	/* Counting began inside this read, or inside an earlier splice: what
	 * this read took before the anchor is not counted yet. */
	if ((__s64)(rx->anchor - start) > 0)
		count_bytes(sk, rx->anchor - start, false);
	rx->pending = 0;
	return 0;
}

/* ---- fentry backend ----------------------------------------------------
 * fexit sees the arguments and the return value in one program. */

SEC("fexit/tcp_sendmsg")
int BPF_PROG(fexit_tcp_sendmsg, struct sock *sk, struct msghdr *msg, size_t size, int ret)
{
	count_bytes(sk, ret, true);
	return 0;
}

/* Before Linux 6.5, sendfile()/splice() to a TCP socket call tcp_sendpage()
 * and never tcp_sendmsg(). 6.5 removed tcp_sendpage; user space loads this
 * program only where the function exists. */
SEC("fexit/tcp_sendpage")
int BPF_PROG(fexit_tcp_sendpage, struct sock *sk, struct page *page, int offset, size_t size,
	     int flags, int ret)
{
	count_bytes(sk, ret, true);
	return 0;
}

/* Linux 5.19 dropped tcp_recvmsg()'s `nonblock` argument, which moved `flags`
 * one slot to the left. fexit reads arguments by position, so each signature
 * has its own program and user space loads the one matching kernel BTF. */
SEC("fexit/tcp_recvmsg")
int BPF_PROG(fexit_tcp_recvmsg, struct sock *sk, struct msghdr *msg, size_t len, int flags,
	     int *addr_len, int ret)
{
	if (flags & (MSG_PEEK | MSG_ERRQUEUE))
		return 0;
	count_bytes(sk, ret, false);
	return 0;
}

SEC("fexit/tcp_recvmsg")
int BPF_PROG(fexit_tcp_recvmsg_nonblock, struct sock *sk, struct msghdr *msg, size_t len,
	     int nonblock, int flags, int *addr_len, int ret)
{
	if (flags & (MSG_PEEK | MSG_ERRQUEUE))
		return 0;
	count_bytes(sk, ret, false);
	return 0;
}

/* splice() from a socket never calls tcp_recvmsg(): tcp_splice_read()
 * returns the payload bytes it moved to the pipe (a FIN is not counted), or
 * an error. It is reached through the socket's ops table, so it is never
 * inlined. An fexit on tcp_read_sock(), which it calls, counted splice reads
 * on Debian's 5.10 but nothing on 6.1 or 6.12 (the call is not made through
 * the traced symbol there). */
SEC("fexit/tcp_splice_read")
int BPF_PROG(fexit_tcp_splice_read, struct socket *sock, loff_t *ppos,
	     struct pipe_inode_info *pipe, size_t len, unsigned int flags, long ret)
{
	count_bytes(BPF_CORE_READ(sock, sk), ret, false);
	return 0;
}

/* ---- kprobe backend ----------------------------------------------------
 * The entry probe remembers the socket per thread; the return probe counts
 * the return value. The seed study counted the entry's `size`/`len`, which is
 * what the caller asked for, not what moved (bcc tcptop bug #2440). */

static __always_inline void stash_sock(struct sock *sk)
{
	__u64 tid = bpf_get_current_pid_tgid();

	if (bpf_map_update_elem(&kprobe_inflight, &tid, &sk, BPF_NOEXIST) == 0)
		return;
	/* This thread's previous call is still here: its return probe never
	 * ran, so its bytes were lost. Say so, then track this call. */
	health_count(missed_calls);
	bpf_map_update_elem(&kprobe_inflight, &tid, &sk, BPF_ANY);
}

static __always_inline void count_stashed(long ret, bool sent)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct sock **skp = bpf_map_lookup_elem(&kprobe_inflight, &tid);

	/* The kretprobe is attached after the kprobe, so a return without an
	 * entry means the entry probe was skipped. */
	if (!skp) {
		health_count(missed_calls);
		return;
	}
	count_bytes(*skp, ret, sent);
	bpf_map_delete_elem(&kprobe_inflight, &tid);
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kprobe_tcp_sendmsg, struct sock *sk)
{
	stash_sock(sk);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(kretprobe_tcp_sendmsg, int ret)
{
	count_stashed(ret, true);
	return 0;
}

SEC("kprobe/tcp_sendpage")
int BPF_KPROBE(kprobe_tcp_sendpage, struct sock *sk)
{
	stash_sock(sk);
	return 0;
}

SEC("kretprobe/tcp_sendpage")
int BPF_KRETPROBE(kretprobe_tcp_sendpage, int ret)
{
	count_stashed(ret, true);
	return 0;
}

static __always_inline void stash_recv(struct sock *sk, int flags)
{
	stash_sock(flags & (MSG_PEEK | MSG_ERRQUEUE) ? NULL : sk);
}

SEC("kprobe/tcp_recvmsg")
int BPF_KPROBE(kprobe_tcp_recvmsg, struct sock *sk, struct msghdr *msg, size_t len, int flags)
{
	stash_recv(sk, flags);
	return 0;
}

SEC("kprobe/tcp_recvmsg")
int BPF_KPROBE(kprobe_tcp_recvmsg_nonblock, struct sock *sk, struct msghdr *msg, size_t len,
	       int nonblock, int flags)
{
	stash_recv(sk, flags);
	return 0;
}

SEC("kretprobe/tcp_recvmsg")
int BPF_KRETPROBE(kretprobe_tcp_recvmsg, int ret)
{
	count_stashed(ret, false);
	return 0;
}

SEC("kprobe/tcp_splice_read")
int BPF_KPROBE(kprobe_tcp_splice_read, struct socket *sock)
{
	stash_sock(BPF_CORE_READ(sock, sk));
	return 0;
}

SEC("kretprobe/tcp_splice_read")
int BPF_KRETPROBE(kretprobe_tcp_splice_read, long ret)
{
	count_stashed(ret, false);
	return 0;
}
