/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of everything the BPF objects share with user space.
 * Rust reads these through the skeletons' generated `types` modules, so a
 * change here changes both sides at once. Enums are generated as newtypes
 * over their integer, so any value the kernel writes is valid in Rust.
 */
#ifndef TCP_FLOW_EXPORTER_FLOW_H
#define TCP_FLOW_EXPORTER_FLOW_H

/* Capacities compiled into the objects; user space overrides them at open
 * time from --flows.max and --sockets.max, before the maps are created. */
enum capacity {
	FLOWS_MAX_DEFAULT = 65536,
	SOCKETS_MAX_DEFAULT = 262144,
	/* The socket backend keeps its connections in shards of this many
	 * entries at most, so that one run of the walk, over one shard, stays
	 * well under a millisecond (socket_walk.bpf.h). */
	SOCKET_SHARD_ENTRIES = 1024,
};

/* Which end of the connection the local socket is. One byte. */
enum __attribute__((packed)) flow_role {
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
	enum flow_role role;
	__u8 pad;          /* always zero, so keys hash and compare bytewise */
	/* The cgroup v2 id of the cgroup the local socket was created in (its
	 * directory's inode number), so that two workloads on one IP are two
	 * flows; 0 under --cgroup.attribution=false. */
	__u64 cgroup;
};

/* Payload bytes the application really moved on that flow. */
struct flow_bytes {
	__u64 sent;
	__u64 received;
	/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the latest counted send or receive */
	__u64 last_seen_ns;
};

/* What --filter.* and --flows.ports ask for: the objects' one rodata knob
 * set, written by user space between open and load. Flags are __u8, not
 * bool, so that every byte is a valid value on the Rust side. */
struct filter_settings {
	/* --flows.ports=all: keep the client's port too (one key per connection). */
	__u8 keep_client_ports;
	/* --filter.loopback=exclude */
	__u8 skip_loopback;
	/* Whether the cidr_include / cidr_exclude tries and the port sets below
	 * apply at all. */
	__u8 cidr_include_on;
	__u8 cidr_exclude_on;
	__u8 port_include_on;
	__u8 port_exclude_on;
	/* --cgroup.attribution: put the socket's cgroup id in the key. */
	__u8 key_cgroup;
	__u8 pad; /* always zero: no implicit padding for Rust to guess */
	/* One bit per TCP port: port p is bit (p & 63) of word p >> 6. */
	__u64 port_include[1024];
	__u64 port_exclude[1024];
};

/* Key of the --filter.cidr.* tries: every address as IPv6, IPv4 as
 * ::ffff:a.b.c.d, so one trie serves both families. */
struct cidr_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* ---- socket backend (socket.bpf.c) ---- */

/* socket_state.flags. One byte; the field holds several of them OR-ed. */
enum __attribute__((packed)) socket_flag {
	SOCKET_NEW = 0,         /* tracked, not yet counting (the generated Rust default) */
	SOCKET_COUNTING = 1,    /* id, key and start positions are set */
	SOCKET_IGNORED = 2,     /* --filter.* excludes it, or it is not TCP over IP */
	SOCKET_SEND_FROZEN = 4, /* sent_frozen is final: a FIN is queued or it closed */
	SOCKET_CLOSED = 8,      /* received_at_close is set */
	SOCKET_DEAD = 16,       /* destroyed: its final totals are in closed_sockets */
};

/* One connection's state, the value of the socket_shards maps. Each position is
 * kept as a 64-bit sum and its exact low 32 bits in sequence space
 * (socket_positions.bpf.h). */
struct socket_state {
	/* First, so that they share the entry's first cache lines with the
	 * hash table's own header: the walk reads these and nothing else of
	 * an idle connection's entry. */
	/* enum socket_flag values OR-ed; 32 bits, because the BPF ISA has no
	 * atomic operations on single bytes. */
	__u32 flags;
	/* What the walk last read of the socket, after it reported everything
	 * up to there (socket_walk.bpf.h). */
	__u32 seen_write_seq;
	__u32 seen_copied_seq;
	__u32 seen_segs_out;
	/* key.role is the connection's role from the moment it is tracked; the
	 * rest of the key from when it starts counting. */
	struct flow_key key;     /* with the filter and port aggregation applied */
	__u64 id;                /* bpf_ktime_get_ns() when counting started */
	__u64 sent_base;         /* send position when counting started */
	__u64 received_base;     /* receive position when counting started */
	__u64 sent_frozen;       /* send position before the FIN, or at close */
	__u64 received_at_close; /* receive position at TCP_CLOSE */
	/* Totals user space has been given: by the walk, which moves them
	 * forward with compare-and-exchange, until the connection's end swaps
	 * in REPORTED_CLOSED and leaves the rest in closed_sockets. */
	__u64 reported_sent;
	__u64 reported_received;
	__u32 sent_base_seq;     /* the same four positions' sequence numbers */
	__u32 received_base_seq;
	__u32 sent_frozen_seq;
	__u32 received_close_seq;
};

/* Key of closed_sockets: one connection. A socket address is reused, so the
 * pair (socket, id) names it. */
struct closed_key {
	__u64 socket; /* the struct sock address */
	__u64 id;     /* socket_state.id */
};

/* A reported total's value once its connection ended. */
#define REPORTED_CLOSED (~0ULL)

/* What a destroyed connection moved that no walk reported, as
 * closed_sockets holds it (and, inside the BPF object, a connection's
 * totals since counting started). */
struct connection_totals {
	__u64 socket; /* the struct sock address */
	__u64 id;
	struct flow_key key;
	__u64 sent;
	__u64 received;
};

/* What one connection moved since the walk last reported it. */
struct walk_record {
	struct flow_key key;
	__u64 sent;
	__u64 received;
};

/* One run of the walk over one shard leaves its records here, in a
 * memory-mapped array user space reads after the run. A shard holds at most
 * SOCKET_SHARD_ENTRIES connections, so one run fits; `more` says a run
 * stopped early anyway (entries replaced under it), and running the shard
 * again goes on, since what was reported reads as unchanged. */
struct walk_output {
	__u32 records;
	__u32 more;
	/* How long the run took, as the program timed it: raw tracepoint
	 * programs get no duration from BPF_PROG_TEST_RUN. */
	__u64 run_ns;
	struct walk_record record[SOCKET_SHARD_ENTRIES];
};

/* ---- health: one slot per CPU in each object's `health` map; user space
 * sums the CPUs. Never reset. ---- */

/* per_event.bpf.c */
struct per_event_health {
	/* kprobe backend: socket calls the probes saw only half of, so their
	 * bytes are not counted. A kretprobe misses returns when more calls are
	 * in flight than its maxactive; the kernel's BPF recursion guard can skip
	 * either probe. */
	__u64 missed_calls;
	/* Connections whose role could not be remembered because socket_roles
	 * was full: their flows keep both ports and role "unknown". */
	__u64 roles_untracked;
	/* socket_roles inserts and deletes; the difference is its entry count
	 * (a hash map does not report its size cheaply). */
	__u64 role_inserts;
	__u64 role_deletes;
};

/* socket.bpf.c */
struct socket_health {
	/* Connections socket_shards had no room for: they are not counted. */
	__u64 sockets_untracked;
	/* socket_shards inserts and deletes; the difference is its entry count. */
	__u64 socket_inserts;
	__u64 socket_deletes;
	/* Connections whose final totals found closed_sockets full; what they
	 * moved since the last walk is lost. */
	__u64 finals_dropped;
};

#endif /* TCP_FLOW_EXPORTER_FLOW_H */
