// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Empty programs on the exporter's hooks: the baseline that
 * benches/exporter.rs divides the exporter's per-event cost by. They do
 * nothing, so their run time is what BPF statistics charge any program on
 * that hook. Never loaded by the exporter itself.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sock_send_length")
int BPF_PROG(empty_tp_send)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(empty_tp_recv)
{
	return 0;
}

SEC("fexit/tcp_sendmsg")
int BPF_PROG(empty_fexit_send)
{
	return 0;
}

SEC("fexit/tcp_recvmsg")
int BPF_PROG(empty_fexit_recv)
{
	return 0;
}

/* The hooks the state-change programs share with every backend. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(empty_set_state)
{
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(empty_destroy_sock)
{
	return 0;
}
