/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of everything the BPF program shares with user space.
 * Rust reads these through the skeleton's generated `types` module, so a change
 * here changes both sides at once.
 */
#ifndef TCP_FLOW_EXPORTER_FLOW_H
#define TCP_FLOW_EXPORTER_FLOW_H

/* Capacity compiled into the object; user space overrides it at open time
 * from --flows.max, before the maps are created. */
#define FLOWS_MAX_DEFAULT 65536

/* One TCP flow as seen from this node: the local socket and its peer.
 * IPv4 (including IPv4-mapped IPv6) uses the first 4 bytes of each address
 * and family AF_INET; the rest of the address is zero. */
struct flow_key {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;  /* host byte order */
	__u16 remote_port; /* host byte order */
	__u16 family;      /* AF_INET (2) or AF_INET6 (10) */
	__u16 pad;         /* always zero, so keys hash and compare bytewise */
};

/* Payload bytes the application really moved on that flow. */
struct flow_bytes {
	__u64 sent;
	__u64 received;
	/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the latest counted send or receive */
	__u64 last_seen_ns;
};

/* How the probes fare, one slot per CPU; user space sums the CPUs. */
struct probe_health {
	/* kprobe backend: socket calls the probes saw only half of, so their
	 * bytes are not counted. A kretprobe misses returns when more calls are
	 * in flight than its maxactive; the kernel's BPF recursion guard can skip
	 * either probe. */
	__u64 missed_calls;
};

#endif /* TCP_FLOW_EXPORTER_FLOW_H */
