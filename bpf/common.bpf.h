/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What both BPF objects share: the includes, how a socket becomes a flow
 * key, the --filter.* settings, and the health counters' shape. Each object
 * (per_event.bpf.c, socket.bpf.c) includes it once, first.
 */
#ifndef TCP_FLOW_EXPORTER_COMMON_BPF_H
#define TCP_FLOW_EXPORTER_COMMON_BPF_H

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
#define EEXIST 17
#define E2BIG 7

#include "filter.bpf.h"

/* Never read. BTF keeps only the types something refers to, and the map
 * sizes use enum capacity's values, not its type; libbpf-cargo generates a
 * Rust type for every type in the object's BTF, and user space reads
 * capacity::FLOWS_MAX_DEFAULT and SOCKETS_MAX_DEFAULT from there. */
const volatile enum capacity capacity_defaults_btf = FLOWS_MAX_DEFAULT;

/* Each object's `health` map: one struct of counters (flow.h), one slot per
 * CPU so that counting never contends. */
#define HEALTH_MAP(value_type)                                   \
	struct {                                                 \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);         \
		__uint(max_entries, 1);                          \
		__type(key, __u32);                              \
		__type(value, value_type);                       \
	} health SEC(".maps")

/* Adds one to `field` of this CPU's slot of the object's health map. */
#define health_count(field)                                      \
	do {                                                     \
		__u32 zero_ = 0;                                 \
		typeof(health.value) h_ =                        \
			bpf_map_lookup_elem(&health, &zero_);    \
		if (h_)                                          \
			__sync_fetch_and_add(&h_->field, 1);     \
	} while (0)

static __always_inline bool ipv6_addr_v4mapped(const __u32 w[4])
{
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

/* sock_cgroup_data before Linux 5.15 (8520e224f547 "bpf, cgroups: Fix
 * cgroup v2 fallback on v1/v2 mixed mode", also in later 5.10.y): one word
 * that holds either the cgroup pointer or, with its low bit set, the cgroup
 * v1 net_cls/net_prio data. The ___old suffix makes it a CO-RE flavor. */
struct sock_cgroup_data___old {
	__u64 val;
} __attribute__((preserve_access_index));

struct sock___old {
	struct sock_cgroup_data___old sk_cgrp_data;
} __attribute__((preserve_access_index));

/* The default hierarchy's root cgroup: its kernfs id is always 1. */
#define ROOT_CGROUP_ID 1

/* The cgroup v2 id of the cgroup the socket was created in (accepted sockets
 * inherit their listener's): the workload that owns the connection, whatever
 * its IP. sk_cgrp_data is set when the socket is allocated and only changes
 * on a cgroup v1 net_cls/net_prio write, which leaves the pointer as it was
 * since 5.15 and, before, falls back to the root (sock_cgroup_ptr). */
static __always_inline __u64 socket_cgroup_id(struct sock *sk)
{
	struct cgroup *cgrp;

	if (bpf_core_field_exists(((struct sock_cgroup_data *)0)->cgroup)) {
		cgrp = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	} else {
		__u64 val = BPF_CORE_READ((struct sock___old *)sk, sk_cgrp_data.val);

		/* sock_cgroup_ptr() of those kernels: data bits or no pointer mean
		 * the root cgroup. */
		if (!val || (val & 3))
			return ROOT_CGROUP_ID;
		cgrp = (struct cgroup *)val;
	}
	if (!cgrp)
		return ROOT_CGROUP_ID;
	return BPF_CORE_READ(cgrp, kn, id);
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

	if (filter.key_cgroup)
		key->cgroup = socket_cgroup_id(sk);
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

#endif /* TCP_FLOW_EXPORTER_COMMON_BPF_H */
