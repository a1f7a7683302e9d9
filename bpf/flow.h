/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of everything the BPF program shares with user space.
 * Rust reads these through the skeleton's generated `types` module, so a change
 * here changes both sides at once.
 */
#ifndef TCP_FLOW_EXPORTER_FLOW_H
#define TCP_FLOW_EXPORTER_FLOW_H

/* Capacities compiled into the object; user space overrides them at open
 * time from --flows.max and --sockets.max, before the maps are created. */
#define FLOWS_MAX_DEFAULT 65536
#define SOCKETS_MAX_DEFAULT 262144

/* Which end of the connection the local socket is. */
enum flow_role {
	ROLE_UNKNOWN = 0, /* connected before the exporter started */
	ROLE_CLIENT = 1,  /* connect(): went CLOSE -> SYN_SENT */
	ROLE_SERVER = 2,  /* accept(): cloned from a listener into SYN_RECV */
};

/* One TCP flow as seen from this node: the local socket and its peer.
 * IPv4 (including IPv4-mapped IPv6) uses the first 4 bytes of each address
 * and family AF_INET; the rest of the address is zero. Under
 * --flows.ports=server the client's port is 0: every connection of one
 * client to one server port shares a key. */
struct flow_key {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;  /* host byte order; 0 = aggregated */
	__u16 remote_port; /* host byte order; 0 = aggregated */
	__u16 family;      /* AF_INET (2) or AF_INET6 (10) */
	__u8 role;         /* enum flow_role */
	__u8 pad;          /* always zero, so keys hash and compare bytewise */
};

/* Payload bytes the application really moved on that flow. */
struct flow_bytes {
	__u64 sent;
	__u64 received;
	/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the latest counted send or receive */
	__u64 last_seen_ns;
};

/* socket_state.flags */
#define SOCKET_COUNTING 1    /* id, key and start positions are set */
#define SOCKET_IGNORED 2     /* --filter.* excludes it, or it is not TCP over IP */
#define SOCKET_SEND_FROZEN 4 /* sent_frozen is final: a FIN is queued or it closed */
#define SOCKET_CLOSED 8      /* received_at_close is set */
#define SOCKET_DEAD 16       /* destroyed: its final totals are in closed_sockets */

/* Socket backend: one connection's state (socket_backend.bpf.h). */
struct socket_state {
	struct flow_key key;     /* with the filter and port aggregation applied */
	__u64 id;                /* bpf_ktime_get_ns() when counting started */
	__u64 sent_base;         /* send position when counting started */
	__u64 received_base;     /* receive position when counting started */
	__u64 sent_frozen;       /* send position before the FIN, or at close */
	__u64 received_at_close; /* receive position at TCP_CLOSE */
	__u64 walk_sent;         /* totals at the last refresh_sockets run */
	__u64 walk_received;
	__u8 role;               /* enum flow_role */
	__u8 flags;              /* SOCKET_* */
	__u8 pad[6];
};

/* One connection's totals since counting started, as closed_sockets holds
 * them for destroyed connections. The pair
 * (socket, id) names one connection; a socket address is reused. */
struct connection_totals {
	__u64 socket; /* the struct sock address */
	__u64 id;
	struct flow_key key;
	__u64 sent;
	__u64 received;
};

/* Key of the --filter.cidr.* tries: every address as IPv6, IPv4 as
 * ::ffff:a.b.c.d, so one trie serves both families. */
struct cidr_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* How the probes fare, one slot per CPU; user space sums the CPUs. */
struct probe_health {
	/* kprobe backend: socket calls the probes saw only half of, so their
	 * bytes are not counted. A kretprobe misses returns when more calls are
	 * in flight than its maxactive; the kernel's BPF recursion guard can skip
	 * either probe. */
	__u64 missed_calls;
	/* Connections whose role could not be remembered because the socket map
	 * was full: their flows keep both ports and role "unknown". */
	__u64 sockets_untracked;
	/* Socket map inserts and deletes; the difference is its entry count
	 * (a hash map does not report its size cheaply). */
	__u64 socket_inserts;
	__u64 socket_deletes;
	/* Socket backend: connections whose final totals found closed_sockets
	 * full; what they moved since the last walk is lost. */
	__u64 finals_dropped;
};

#endif /* TCP_FLOW_EXPORTER_FLOW_H */
