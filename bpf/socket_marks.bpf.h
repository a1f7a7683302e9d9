/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The socket backend's marks, and how discovery checks one cheaply.
 *
 * A socket's BPF storage keeps a cache of 16 slots; each storage map owns
 * one slot (its cache_idx), which a lookup fills. Checking that our map's
 * slot holds our mark costs three loads and no helper call. The slot is
 * learned from the first socket marked; until then, and for a socket whose
 * slot holds another map's storage, a helper lookup decides.
 *
 * That cache is private to kernel/bpf/bpf_local_storage.c, unchanged from
 * 5.11 to 6.18. cache_layout_known() checks, against this kernel's BTF,
 * the fields the shortcut reads; on a kernel where they changed, every
 * check takes the helper lookup instead of misreading.
 *
 * Included once, by socket.bpf.c.
 */
#ifndef TCP_FLOW_EXPORTER_SOCKET_MARKS_BPF_H
#define TCP_FLOW_EXPORTER_SOCKET_MARKS_BPF_H

/* A mark on every socket in socket_shards, where discovery can see it for
 * the price of one pointer read (sk->sk_bpf_storage). Freed with the socket.
 * It holds 1 + the shard of the socket's entry, or 0 before one is chosen. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} socket_marks SEC(".maps");

/* Written by user space after load: the id of socket_marks. */
volatile __u32 marks_map_id = 0;
/* 1 + socket_marks' cache slot, once learned; 0 before. */
volatile __u32 marks_cache_slot = 0;
/* socket_marks' struct bpf_local_storage_map, once learned; 0 before. */
volatile __u64 marks_smap = 0;

/* 16 cache pointers, each data's map, and that map's id, as read here. */
static __always_inline bool cache_layout_known(void)
{
	struct bpf_local_storage *st = NULL;
	struct bpf_local_storage_data *sdata = NULL;

	return bpf_core_field_exists(st->cache) &&
	       bpf_core_field_size(st->cache) == 16 * sizeof(void *) &&
	       bpf_core_field_exists(sdata->smap) &&
	       bpf_core_field_exists(sdata->smap->map.id);
}

static __always_inline bool is_our_mark(struct bpf_local_storage_data *sdata)
{
	return sdata && sdata->smap && sdata->smap->map.id == marks_map_id;
}

static __always_inline struct bpf_local_storage_data *cache_slot(struct bpf_local_storage *st,
								 __u32 slot)
{
	switch (slot) {
	case 0: return st->cache[0];
	case 1: return st->cache[1];
	case 2: return st->cache[2];
	case 3: return st->cache[3];
	case 4: return st->cache[4];
	case 5: return st->cache[5];
	case 6: return st->cache[6];
	case 7: return st->cache[7];
	case 8: return st->cache[8];
	case 9: return st->cache[9];
	case 10: return st->cache[10];
	case 11: return st->cache[11];
	case 12: return st->cache[12];
	case 13: return st->cache[13];
	case 14: return st->cache[14];
	case 15: return st->cache[15];
	}
	return NULL;
}

/* Whether `sk` carries our mark: the whole per-event cost for known sockets. */
static __always_inline bool marked(struct sock *sk)
{
	struct bpf_local_storage *st = sk->sk_bpf_storage;
	__u32 slot = marks_cache_slot;

	if (!st)
		return false;
	if (!cache_layout_known())
		goto lookup;
	/* Linux 6.2+ records which map created a socket's storage. Ours does,
	 * unless another program's storage came first: two loads. */
	if (bpf_core_field_exists(st->smap) && marks_smap && (__u64)st->smap == marks_smap)
		return true;
	if (slot && is_our_mark(cache_slot(st, slot - 1)))
		return true;
lookup:
	return bpf_sk_storage_get(&socket_marks, sk, 0, 0) != NULL;
}

/* Marks `sk`; returns its mark, or NULL if there was no memory for one. */
static __always_inline __u32 *mark(struct sock *sk)
{
	struct bpf_local_storage *st;
	__u32 *mark, i;

	mark = bpf_sk_storage_get(&socket_marks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!mark || marks_cache_slot || !cache_layout_known())
		return mark;
	/* A lookup puts the mark in its cache slot; find which one it is. */
	bpf_sk_storage_get(&socket_marks, sk, 0, 0);
	st = sk->sk_bpf_storage;
	if (!st)
		return mark;
	for (i = 0; i < 16; i++) {
		struct bpf_local_storage_data *sdata = cache_slot(st, i);

		if (is_our_mark(sdata)) {
			marks_smap = (__u64)sdata->smap;
			marks_cache_slot = i + 1;
			break;
		}
	}
	return mark;
}

#endif /* TCP_FLOW_EXPORTER_SOCKET_MARKS_BPF_H */
