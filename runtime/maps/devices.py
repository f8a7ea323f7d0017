"""Redirect maps of XDP: BPF_MAP_TYPE_DEVMAP, DEVMAP_HASH and CPUMAP, with the creation and update
checks of kernel/bpf/devmap.c and kernel/bpf/cpumap.c.

Their entries name where ``bpf_redirect_map`` sends a packet: a network device (DEVMAP: by index,
DEVMAP_HASH: by any u32 key) or a CPU (CPUMAP, by CPU number). A value is the kernel's
``struct bpf_devmap_val`` (``u32 ifindex`` then the fd of a program to run on the frame, read back
as that program's id) or ``struct bpf_cpumap_val`` (``u32 qsize``, the queue size, then the same
program fd), or only its first 4 bytes (``value_size`` 4). A value is stored as the kernel reads it
back: the program fd becomes a program id, 0 here, because bpfjit has no program fds and refuses a
positive one (EBADF).

bpfjit has no network devices: any non-zero ifindex is accepted (the kernel requires a device
of that index in the caller's namespace; under BPF_PROG_TEST_RUN nothing is sent, so the device
never matters). CPUs are the object's per-CPU slots (``ncpus``): a CPUMAP key past them is
-ENODEV. docs/semantics.md#redirect-maps.
"""
from __future__ import annotations

import ctypes
import errno as E

from ..memory import Region
from .base import Map
from .hash import HashMap
from .uapi import BPF_ANY, BPF_EXIST, BPF_F_NUMA_NODE, BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY, BPF_NOEXIST

DEV_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY
CPUMAP_CREATE_FLAG_MASK = BPF_F_NUMA_NODE
CPUMAP_MAX_QSIZE = 16384  # cpu_map_update_elem's sanity limit on the queue size
NR_CPUS = 8192  # CONFIG_NR_CPUS of the distributions' kernels: a CPUMAP's max_entries limit
VALUE_SIZES = (4, 8)  # the first field alone, or the field and the program fd

_NO_PROGRAM_FDS = "bpfjit has no program file descriptors (the fd of a program to run on redirected frames)"


def _fields(value: bytes) -> tuple[int, int]:
    """(first u32 field, program fd as an s32; 0 without one) of a 4- or 8-byte value."""
    first = int.from_bytes(value[:4], "little")
    fd = int.from_bytes(value[4:8], "little", signed=True) if len(value) >= 8 else 0
    return first, fd


class _Slots(Map):
    """DEVMAP and CPUMAP: ``max_entries`` slots by u32 index, each empty or holding a value.

    Values sit in native memory (8 bytes a slot) so a program's lookup of a DEVMAP gets a pointer
    to one, as in the kernel; the map is BPF_F_RDONLY_PROG, as the kernel makes it, so the
    verifier refuses writes through that pointer."""

    indexed = True
    create_flag_mask = 0

    def _validate(self) -> None:
        if self.value_size not in VALUE_SIZES:
            raise self._err(f"value_size must be 4 or 8, got {self.value_size}", E.EINVAL)
        self._check_flags(self.create_flag_mask)
        self.map_flags |= BPF_F_RDONLY_PROG  # lookups return a pointer to the value: read-only

    def _allocate(self) -> None:
        self.elem_stride = 8
        self._values = self._alloc(8 * self.max_entries, "the values", self)
        self.value_base = self._values.address
        self._present = bytearray(self.max_entries)

    def _storage_regions(self) -> list[Region]:
        return [Region(self.value_base, 8 * self.max_entries, False, f"map {self.name} values")]

    def _address(self, index: int) -> int:
        return self.value_base + 8 * index

    def _entry(self, value: bytes, index: int) -> bytes | None | int:
        """What an update stores: the value as read back, None to empty the slot, or -errno."""
        raise NotImplementedError

    # kernel side (a program may only look up, and redirect: verifier/calls.py)

    def lookup(self, key: bytes, cpu: int = 0) -> int:
        index = int.from_bytes(key[:4], "little")
        if index >= self.max_entries or not self._present[index]:
            return 0
        return self._address(index)

    # Python side

    def _raw_keys(self) -> list[bytes]:
        return [i.to_bytes(4, "little") for i, present in enumerate(self._present) if present]

    def _raw_read(self, key: bytes) -> bytes | None:
        address = self.lookup(key)
        return ctypes.string_at(address, self.value_size) if address else None

    def _raw_write(self, key: bytes, data: bytes | list[bytes], flags: int) -> int:
        assert isinstance(data, bytes)
        index = int.from_bytes(key, "little")
        if flags > BPF_EXIST:
            return -E.EINVAL
        if index >= self.max_entries:
            return -E.E2BIG
        if flags == BPF_NOEXIST:
            return -E.EEXIST  # every slot exists, as in an array
        entry = self._entry(data, index)
        if isinstance(entry, int):
            return entry
        with self._lock:
            if entry is None:
                self._present[index] = 0
                ctypes.memset(self._address(index), 0, 8)
            else:
                ctypes.memmove(self._address(index), entry, len(entry))
                self._present[index] = 1
        return 0

    def _raw_delete(self, key: bytes) -> int:
        index = int.from_bytes(key, "little")
        if index >= self.max_entries:
            return -E.EINVAL
        with self._lock:  # emptying an empty slot succeeds, as the kernel's delete does
            self._present[index] = 0
            ctypes.memset(self._address(index), 0, 8)
        return 0

    def _raw_clear(self) -> None:
        with self._lock:
            self._present[:] = bytes(self.max_entries)
            ctypes.memset(self.value_base, 0, 8 * self.max_entries)

    def _fail(self, err: int, key: object = None, what: str = "update") -> Exception:
        if err == -E.EBADF:
            return self._err(f"{what} of key {key!r}: {_NO_PROGRAM_FDS}", E.EBADF)
        if err == -E.EINVAL and what == "update":
            return self._err(f"update of key {key!r}: {self._invalid_value}", E.EINVAL)
        return super()._fail(err, key, what)

    _invalid_value = "invalid flags (BPF_ANY or BPF_EXIST only) or value"


def _device_entry(value: bytes) -> bytes | None | int:
    """A DEVMAP / DEVMAP_HASH value as stored: {ifindex, program id 0}; None for ifindex 0."""
    ifindex, fd = _fields(value)
    if ifindex == 0:
        return -E.EINVAL if fd > 0 else None  # no program without a device
    if fd > 0:
        return -E.EBADF
    return value[:4] + bytes(len(value) - 4)


class DevMap(_Slots):
    """BPF_MAP_TYPE_DEVMAP: network devices by index, for bpf_redirect_map. Updating a slot with
    ifindex 0 empties it."""

    type_name = "devmap"
    create_flag_mask = DEV_CREATE_FLAG_MASK
    _invalid_value = "invalid flags (BPF_ANY or BPF_EXIST only), or a program fd without an ifindex"

    def _entry(self, value: bytes, index: int) -> bytes | None | int:
        return _device_entry(value)


class CpuMap(_Slots):
    """BPF_MAP_TYPE_CPUMAP: a queue per CPU, for bpf_redirect_map. A queue size of 0 empties the
    slot; the key must be a CPU of the object (``ncpus``)."""

    type_name = "cpumap"
    create_flag_mask = CPUMAP_CREATE_FLAG_MASK

    def __init__(self, spec, btf=None, ncpus: int = 1, lock_offset: int | None = None):
        self.possible_cpus = ncpus
        super().__init__(spec, btf, ncpus, lock_offset)

    def _validate(self) -> None:
        super()._validate()
        if self.max_entries > NR_CPUS:
            raise self._err(f"max_entries {self.max_entries} is more than NR_CPUS ({NR_CPUS})", E.E2BIG)

    def _entry(self, value: bytes, index: int) -> bytes | None | int:
        qsize, fd = _fields(value)
        if qsize > CPUMAP_MAX_QSIZE:
            return -E.EOVERFLOW
        if index >= self.possible_cpus:
            return -E.ENODEV
        if qsize == 0:
            return None
        if fd > 0:
            return -E.EBADF
        return value[:4] + bytes(len(value) - 4)

    def _fail(self, err: int, key: object = None, what: str = "update") -> Exception:
        if err == -E.EOVERFLOW:
            return self._err(f"{what} of key {key!r}: qsize is larger than {CPUMAP_MAX_QSIZE}", E.EOVERFLOW)
        if err == -E.ENODEV:
            return self._err(f"{what} of key {key!r}: no such CPU (the object has {self.possible_cpus})", E.ENODEV)
        return super()._fail(err, key, what)


class DevMapHash(HashMap):
    """BPF_MAP_TYPE_DEVMAP_HASH: network devices under any u32 key (usually the ifindex), for
    bpf_redirect_map. An update needs a non-zero ifindex; BPF_EXIST does not require the key to
    exist (the kernel does not check it)."""

    type_name = "devmap_hash"

    def _validate(self) -> None:
        if self.max_entries == 0 or self.key_size != 4:
            raise self._err("max_entries must be at least 1 and key_size 4", E.EINVAL)
        if self.value_size not in VALUE_SIZES:
            raise self._err(f"value_size must be 4 or 8, got {self.value_size}", E.EINVAL)
        self._check_flags(DEV_CREATE_FLAG_MASK)
        if self.max_entries > 1 << 31:
            raise self._err(f"max_entries {self.max_entries} is more than 2^31", E.EINVAL)
        self.map_flags |= BPF_F_RDONLY_PROG

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return -E.EOPNOTSUPP  # programs only look up and redirect (verifier/calls.py)

    def _raw_write(self, key: bytes, data: bytes | list[bytes], flags: int) -> int:
        assert isinstance(data, bytes)
        if flags > BPF_EXIST or _fields(data)[0] == 0:
            return -E.EINVAL
        entry = _device_entry(data)
        if isinstance(entry, int):
            return entry
        assert entry is not None
        return super()._raw_write(key, entry, BPF_NOEXIST if flags == BPF_NOEXIST else BPF_ANY)

    def _fail(self, err: int, key: object = None, what: str = "update") -> Exception:
        if err == -E.EBADF:
            return self._err(f"{what} of key {key!r}: {_NO_PROGRAM_FDS}", E.EBADF)
        if err == -E.EINVAL and what == "update":
            return self._err(f"update of key {key!r}: invalid flags (BPF_ANY, BPF_NOEXIST or BPF_EXIST only) "
                             "or ifindex 0", E.EINVAL)
        return super()._fail(err, key, what)
