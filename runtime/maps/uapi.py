"""The kernel's map constants (uapi flags, create-flag masks, ring-buffer bits) and limits, shared
by every map family."""
from __future__ import annotations

import mmap

# map_update_elem flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# map_flags (BPF_MAP_CREATE)
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_CLONE = 1 << 9
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12
BPF_F_ACCESS_MASK = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG

# kernel create-flag masks (kernel/bpf/arraymap.c, hashtab.c, queue_stack_maps.c, ringbuf.c)
ARRAY_CREATE_FLAG_MASK = (BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK
                          | BPF_F_PRESERVE_ELEMS | BPF_F_INNER_MAP)
HTAB_CREATE_FLAG_MASK = (BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE
                         | BPF_F_ACCESS_MASK | BPF_F_ZERO_SEED)
QUEUE_STACK_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
RINGBUF_CREATE_FLAG_MASK = BPF_F_NUMA_NODE
# net/core/sock_map.c (SOCKMAP, SOCKHASH) and net/xdp/xskmap.c (XSKMAP)
SOCK_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY
# kernel/bpf/bpf_local_storage.c (SK_STORAGE)
LOCAL_STORAGE_CREATE_FLAG_MASK = BPF_F_NO_PREALLOC | BPF_F_CLONE
# kernel/bpf/stackmap.c (STACK_TRACE)
STACK_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_STACK_BUILD_ID

# ring buffer
BPF_RB_NO_WAKEUP = 1
BPF_RB_FORCE_WAKEUP = 2
BPF_RB_AVAIL_DATA = 0
BPF_RB_RING_SIZE = 1
BPF_RB_CONS_POS = 2
BPF_RB_PROD_POS = 3
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
RINGBUF_MAX_RECORD_SZ = 0xFFFFFFFF // 4

# kernel limits
KMALLOC_MAX_SIZE = 1 << 22          # x86-64 SLUB: 4 MiB
PCPU_MIN_UNIT_SIZE = 32 << 10       # largest per-cpu value (round_up(value_size, 8))
MAX_BPF_STACK = 512                 # hash keys must fit on the BPF stack
PERF_EVENT_MAX_STACK = 127          # sysctl kernel.perf_event_max_stack's default: frames per trace
STACK_BUILD_ID_SIZE = 32            # sizeof(struct bpf_stack_build_id)
# BPF_LOCAL_STORAGE_MAX_VALUE_SIZE: U16_MAX less sizeof(struct bpf_local_storage_elem) (x86-64: 128,
# its data is cache-line aligned)
LOCAL_STORAGE_MAX_VALUE_SIZE = 0xFFFF - 128
PAGE_SIZE = mmap.PAGESIZE
# Our own guard: refuse a single map needing more native memory than this (ENOMEM).
MAX_MAP_BYTES = 1 << 31


def round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to
