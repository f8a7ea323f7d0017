"""Reads through a map pointer (``r1 = map ll; r0 = *(u64 *)(r1 + 0)``): the kernel's
``check_ptr_to_map_access``.

A privileged program may read the kernel's own struct of a map (``struct bpf_array`` for an
array, ``struct bpf_htab`` for a hash...) the way it reads any kernel object, through the
kernel's BTF. bpfjit has no kernel BTF, so it knows one member: the one every map's struct
starts with, ``struct bpf_map``'s ``ops`` pointer (8 bytes at offset 0). A read of it gives an
unknown number (the kernel gives an untrusted pointer to ``struct bpf_map_ops``, which a
program can only compare or pass on); at run time it is the first 8 bytes of bpfjit's own map
header (runtime/maps/base.py ``HEADER``), which every engine may read. Other members are
refused with a message that says why.
"""
from __future__ import annotations

from bpfjit.runtime.map_types import MapType

from .log import Rejected
from .state import Reg, scalar

# The kernel struct of each map type (its map ops' map_btf_id), as its messages name it.
_STRUCTS = {
    **dict.fromkeys((MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
                     MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS), "bpf_array"),
    **dict.fromkeys((MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH,
                     MapType.HASH_OF_MAPS), "bpf_htab"),
    **dict.fromkeys((MapType.QUEUE, MapType.STACK), "bpf_queue_stack"),
    **dict.fromkeys((MapType.RINGBUF, MapType.USER_RINGBUF), "bpf_ringbuf_map"),
    **dict.fromkeys((MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE, MapType.CGRP_STORAGE),
                    "bpf_local_storage_map"),
    **dict.fromkeys((MapType.DEVMAP, MapType.DEVMAP_HASH), "bpf_dtab"),
    MapType.LPM_TRIE: "lpm_trie", MapType.STACK_TRACE: "bpf_stack_map", MapType.SOCKMAP: "bpf_stab",
    MapType.SOCKHASH: "bpf_shtab", MapType.CPUMAP: "bpf_cpu_map", MapType.XSKMAP: "xsk_map",
    MapType.REUSEPORT_SOCKARRAY: "reuseport_array", MapType.BLOOM_FILTER: "bpf_bloom_filter",
    MapType.ARENA: "bpf_arena",
}
_OPS_SIZE = 8  # struct bpf_map's first member: const struct bpf_map_ops *ops


def load(reg: Reg, regno: int, off: int, size: int, write: bool) -> Reg:
    """What a read of `size` bytes at `off` (the pointer's fixed offset and the instruction's)
    through the map pointer `reg` (in R`regno`) gives; Rejected with the kernel's message if
    the access is not one the kernel allows (or bpfjit cannot model)."""
    name = _STRUCTS.get(reg.map.map_type)
    if name is None:
        raise Rejected(f"map_ptr access not supported for map type {reg.map.map_type}")
    if off < 0:
        raise Rejected(f"R{regno} is {name} invalid negative access: off={off}")
    if write:
        raise Rejected(f"only read from {name} is supported")
    if off < _OPS_SIZE:
        if off or size != _OPS_SIZE:
            raise Rejected(f"cannot access ptr member ops with moff 0 in struct bpf_map with off {off} size {size}")
        return scalar()
    raise Rejected(f"struct {name} at off={off} size={size}: bpfjit has no kernel BTF and knows only the "
                   f"ops member of struct bpf_map (off=0 size=8)")
