// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Per-flow TCP payload byte counters.
 *
 * Every backend counts what the socket call *returned*: the bytes the
 * application really handed to TCP or really got back, never the size it asked
 * for. The three backends differ only in where they see that return value:
 *
 *   tracepoint  tp_btf/sock_{send,recv}_length  Linux >= 6.5 (see below)
 *   fentry      fexit/tcp_{sendmsg,recvmsg}     plus tcp_sendpage before 6.5
 *   kprobe      kprobe + kretprobe pairs        same functions as fentry
 *
 * User space enables exactly one backend's programs (set_autoload) and, for the
 * fentry and kprobe backends, the tcp_recvmsg twin that matches this kernel's
 * signature. All of them end in count_bytes().
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "flow.h"

/* Plain macros from the uapi headers; vmlinux.h only carries types. */
#define AF_INET 2
#define AF_INET6 10
#define MSG_PEEK 0x2
#define MSG_ERRQUEUE 0x2000

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FLOWS_MAX_DEFAULT);
	__type(key, struct flow_key);
	__type(value, struct flow_bytes);
} tcp_flow_bytes SEC(".maps");

/* Bytes of flows that found the flow map full. One slot per CPU, so the
 * fallback path never contends; user space sums the CPUs. Never reset. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_bytes);
} flow_overflow SEC(".maps");

/* kprobe backend only: the socket a thread passed to tcp_*msg / tcp_sendpage,
 * kept from entry to return. NULL means "this call is not counted" (MSG_PEEK). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct sock *);
} kprobe_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct probe_health);
} probe_health SEC(".maps");

static __always_inline bool ipv6_addr_v4mapped(const __u32 w[4])
{
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

/* Builds the flow key of a TCP socket over IPv4 or IPv6; false for anything
 * else. The send/recv tracepoints fire for every socket type, and a raw socket
 * may carry IPPROTO_TCP, so both protocol and type are checked. */
static __always_inline bool flow_key_from_sock(struct sock *sk, struct flow_key *key)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u32 v6_remote[4];
	__u32 addr;

	if (family != AF_INET && family != AF_INET6)
		return false;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
	    BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return false;

	key->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	key->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));

	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&v6_remote, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
		if (!ipv6_addr_v4mapped(v6_remote)) {
			key->family = AF_INET6;
			__builtin_memcpy(key->remote_addr, v6_remote, sizeof(v6_remote));
			BPF_CORE_READ_INTO(&key->local_addr, sk,
					   __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
			return true;
		}
		/* A dual-stack socket talking to ::ffff:a.b.c.d is an IPv4 flow. The
		 * kernel keeps the IPv4 fields of such a socket filled in too
		 * (tcp_v6_connect hands it to tcp_v4_connect; the v4-mapped accept path
		 * goes through tcp_v4_syn_recv_sock), so read them below. */
	}
	key->family = AF_INET;
	addr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
	__builtin_memcpy(key->local_addr, &addr, sizeof(addr));
	addr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	__builtin_memcpy(key->remote_addr, &addr, sizeof(addr));
	return true;
}

static __always_inline void add_bytes(struct flow_bytes *counters, __u64 bytes, bool sent)
{
	if (sent)
		__sync_fetch_and_add(&counters->sent, bytes);
	else
		__sync_fetch_and_add(&counters->received, bytes);
}

/* The accounting body every hook shares. `ret` is the socket call's return
 * value: negative for errors, 0 for nothing moved. */
static __always_inline void count_bytes(struct sock *sk, long ret, bool sent)
{
	struct flow_key key __attribute__((aligned(8))) = {};
	struct flow_bytes *counters, fresh = {};
	__u32 zero = 0;
	__u64 now;

	if (ret <= 0 || !sk || !flow_key_from_sock(sk, &key))
		return;

	now = bpf_ktime_get_ns();
	counters = bpf_map_lookup_elem(&tcp_flow_bytes, &key);
	if (!counters) {
		fresh.last_seen_ns = now;
		if (sent)
			fresh.sent = ret;
		else
			fresh.received = ret;
		if (bpf_map_update_elem(&tcp_flow_bytes, &key, &fresh, BPF_NOEXIST) == 0)
			return;
		/* Either another CPU created the flow first (-EEXIST), or the map is
		 * full (-E2BIG / -ENOMEM). A second lookup tells the two apart. */
		counters = bpf_map_lookup_elem(&tcp_flow_bytes, &key);
		if (!counters) {
			counters = bpf_map_lookup_elem(&flow_overflow, &zero);
			if (!counters)
				return;
		}
	}
	add_bytes(counters, ret, sent);
	counters->last_seen_ns = now;
}

/* ---- tracepoint backend ------------------------------------------------
 * sock_send_length / sock_recv_length were added in Linux 6.3 and fire in
 * sock_sendmsg() / sock_recvmsg() with the call's return value. Before 6.5,
 * sendfile() and splice() reached TCP through ->sendpage and bypassed
 * sock_sendmsg(), so user space accepts this backend only on kernels without
 * tcp_sendpage (6.5+, where splice_to_socket() uses MSG_SPLICE_PAGES). */

SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_sock_send_length, struct sock *sk, int ret, int flags)
{
	count_bytes(sk, ret, true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_sock_recv_length, struct sock *sk, int ret, int flags)
{
	/* A peek leaves the data queued for the read that really consumes it;
	 * MSG_ERRQUEUE returns error-queue records, not payload. */
	if (flags & (MSG_PEEK | MSG_ERRQUEUE))
		return 0;
	count_bytes(sk, ret, false);
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

/* ---- kprobe backend ----------------------------------------------------
 * The entry probe remembers the socket per thread; the return probe counts
 * the return value. The seed study counted the entry's `size`/`len`, which is
 * what the caller asked for, not what moved (bcc tcptop bug #2440). */

static __always_inline void count_missed_call(void)
{
	__u32 zero = 0;
	struct probe_health *health = bpf_map_lookup_elem(&probe_health, &zero);

	/* Per-CPU slot, and kprobes run with preemption off: no atomic needed. */
	if (health)
		health->missed_calls++;
}

static __always_inline void stash_sock(struct sock *sk)
{
	__u64 tid = bpf_get_current_pid_tgid();

	if (bpf_map_update_elem(&kprobe_inflight, &tid, &sk, BPF_NOEXIST) == 0)
		return;
	/* This thread's previous call is still here: its return probe never
	 * ran, so its bytes were lost. Say so, then track this call. */
	count_missed_call();
	bpf_map_update_elem(&kprobe_inflight, &tid, &sk, BPF_ANY);
}

static __always_inline void count_stashed(long ret, bool sent)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct sock **skp = bpf_map_lookup_elem(&kprobe_inflight, &tid);

	/* The kretprobe is attached after the kprobe, so a return without an
	 * entry means the entry probe was skipped. */
	if (!skp) {
		count_missed_call();
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
