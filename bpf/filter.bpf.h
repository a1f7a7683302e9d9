/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which flows are counted (--filter.*) and how their ports are kept
 * (--flows.ports). User space writes the settings (struct filter_settings,
 * flow.h) into .rodata before the program loads; the kernel freezes it, so
 * the verifier sees every field as a constant and drops every check that is
 * switched off: an exporter without filters pays nothing.
 *
 * Included by common.bpf.h, so by both objects.
 */
#ifndef TCP_FLOW_EXPORTER_FILTER_BPF_H
#define TCP_FLOW_EXPORTER_FILTER_BPF_H

#include "flow.h"

const volatile struct filter_settings filter = {};

/* Peer networks, matched against the remote address. Sized by user space to
 * the number of CIDRs given; LPM tries must not preallocate. */
struct cidr_trie {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cidr_key);
	__type(value, __u8);
};
struct cidr_trie cidr_include SEC(".maps");
struct cidr_trie cidr_exclude SEC(".maps");

static __always_inline bool port_in(const volatile __u64 *set, __u16 port)
{
	return set[port >> 6] & (1ULL << (port & 63));
}

/* Port filters match the connection's server port, so "--filter.port.include
 * 5432" means "connections to a PostgreSQL server" whichever end is local.
 * A connection of unknown role matches on either port. */
static __always_inline bool server_port_in(const volatile __u64 *set, const struct flow_key *key)
{
	if (key->role == ROLE_CLIENT)
		return port_in(set, key->remote_port);
	if (key->role == ROLE_SERVER)
		return port_in(set, key->local_port);
	return port_in(set, key->local_port) || port_in(set, key->remote_port);
}

/* A peer in 127.0.0.0/8 or ::1, or a connection to the local address itself
 * (a node talking to its own IP, which Linux routes over lo). */
static __always_inline bool is_loopback(const struct flow_key *key)
{
	const __u32 *remote = (const __u32 *)key->remote_addr;
	const __u32 *local = (const __u32 *)key->local_addr;

	if (key->family == AF_INET && key->remote_addr[0] == 127)
		return true;
	if (key->family == AF_INET6 && remote[0] == 0 && remote[1] == 0 && remote[2] == 0 &&
	    remote[3] == bpf_htonl(1))
		return true;
	return remote[0] == local[0] && remote[1] == local[1] && remote[2] == local[2] &&
	       remote[3] == local[3];
}

static __always_inline bool peer_in(void *trie, const struct flow_key *key)
{
	struct cidr_key lookup = { .prefixlen = 128 };

	if (key->family == AF_INET) {
		lookup.addr[10] = 0xff;
		lookup.addr[11] = 0xff;
		__builtin_memcpy(&lookup.addr[12], key->remote_addr, 4);
	} else {
		__builtin_memcpy(lookup.addr, key->remote_addr, 16);
	}
	return bpf_map_lookup_elem(trie, &lookup) != NULL;
}

/* Whether --filter.* lets this flow be counted. Excludes win over includes. */
static __always_inline bool flow_selected(const struct flow_key *key)
{
	if (filter.skip_loopback && is_loopback(key))
		return false;
	if (filter.port_exclude_on && server_port_in(filter.port_exclude, key))
		return false;
	if (filter.port_include_on && !server_port_in(filter.port_include, key))
		return false;
	if (filter.cidr_exclude_on && peer_in(&cidr_exclude, key))
		return false;
	if (filter.cidr_include_on && !peer_in(&cidr_include, key))
		return false;
	return true;
}

/* --flows.ports=server: drop the client's port, so all connections of one
 * client to one server port count into one flow. Unknown roles keep both. */
static __always_inline void aggregate_ports(struct flow_key *key)
{
	if (filter.keep_client_ports)
		return;
	if (key->role == ROLE_CLIENT)
		key->local_port = 0;
	else if (key->role == ROLE_SERVER)
		key->remote_port = 0;
}

#endif /* TCP_FLOW_EXPORTER_FILTER_BPF_H */
