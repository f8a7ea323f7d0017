"""Creating a map of any supported type from its spec."""
from __future__ import annotations

import errno as E
from typing import Any

from bpfjit.errors import MapError

from ..map_types import MapType, map_type_name
from .array import ArrayMap, PercpuArrayMap
from .base import Map, MapSpec
from .bloom import BloomFilter
from .devices import CpuMap, DevMap, DevMapHash
from .fd_array import ArrayOfMaps, HashOfMaps, ProgArray
from .hash import HashMap, LruHashMap, LruPercpuHashMap, PercpuHashMap
from .lpm_trie import LpmTrie
from .perf_event import PerfEventArray
from .queue import QueueMap, StackMap
from .ringbuf import RingBuf
from .sk_storage import SkStorageMap
from .sockets import ReuseportSockArray, SockHash, SockMap, XskMap
from .stack_trace import StackTraceMap


_CLASSES: dict[int, type[Map]] = {
    MapType.HASH: HashMap,
    MapType.ARRAY: ArrayMap,
    MapType.PROG_ARRAY: ProgArray,
    MapType.PERCPU_HASH: PercpuHashMap,
    MapType.PERCPU_ARRAY: PercpuArrayMap,
    MapType.LRU_HASH: LruHashMap,
    MapType.LRU_PERCPU_HASH: LruPercpuHashMap,
    MapType.ARRAY_OF_MAPS: ArrayOfMaps,
    MapType.HASH_OF_MAPS: HashOfMaps,
    MapType.QUEUE: QueueMap,
    MapType.STACK: StackMap,
    MapType.RINGBUF: RingBuf,
    MapType.STACK_TRACE: StackTraceMap,
    MapType.SOCKMAP: SockMap,
    MapType.SOCKHASH: SockHash,
    MapType.XSKMAP: XskMap,
    MapType.REUSEPORT_SOCKARRAY: ReuseportSockArray,
    MapType.SK_STORAGE: SkStorageMap,
    MapType.DEVMAP: DevMap,
    MapType.DEVMAP_HASH: DevMapHash,
    MapType.CPUMAP: CpuMap,
    MapType.LPM_TRIE: LpmTrie,
    MapType.BLOOM_FILTER: BloomFilter,
    MapType.PERF_EVENT_ARRAY: PerfEventArray,
}


def create_map(spec: MapSpec, btf: Any = None, ncpus: int = 1,
               lock_offset: int | None = None, map_extra: int = 0) -> Map:
    """Create the map ``spec`` describes (MapError naming the map for an unsupported type or
    invalid sizes/flags, with the errno the kernel's BPF_MAP_CREATE would give).

    ``btf`` (optional) provides ``encode_value(type_id, value)`` / ``format_value(type_id,
    data)`` for BTF-shaped Python keys and values; ``ncpus`` is the number of per-cpu slots;
    ``lock_offset`` is the offset of the value's ``struct bpf_spin_lock``, if any; ``map_extra``
    the BTF definition's ``map_extra`` (a bloom filter's number of hash functions; any other map
    type must have 0, as BPF_MAP_CREATE requires)."""
    cls = _CLASSES.get(int(spec.map_type))
    if cls is None:
        try:
            MapType(int(spec.map_type))
        except ValueError:
            raise MapError(f"map {spec.name}: unknown map type {spec.map_type}", E.EINVAL) from None
        raise MapError(f"map {spec.name}: map type {map_type_name(spec.map_type)} "
                       f"({int(spec.map_type)}) is not supported", E.EOPNOTSUPP)
    if cls is BloomFilter:
        return BloomFilter(spec, btf, ncpus, lock_offset, map_extra)
    if map_extra:
        raise MapError(f"map {spec.name}: map_extra is only for bloom filters", E.EINVAL)
    return cls(spec, btf=btf, ncpus=ncpus, lock_offset=lock_offset)


def supported(map_type: int) -> bool:
    """Whether bpfjit implements this map type."""
    return int(map_type) in _CLASSES
