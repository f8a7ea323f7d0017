"""BPF_MAP_TYPE_PERF_EVENT_ARRAY: the per-CPU event buffers ``bpf_perf_event_output`` writes
samples into, and the Python reader of them (libbpf's perf_buffer).

In the kernel each slot holds a perf event fd that user space opened for one CPU
(PERF_COUNT_SW_BPF_OUTPUT) and mapped as a ring of ``page_cnt`` pages; a program writes to the
slot of the CPU it runs on. bpfjit has no perf events: every slot of a CPU of the object
(``ncpus``; libbpf sizes a map declared with ``max_entries`` 0 to the CPUs, and so does bpfjit)
holds a buffer from the start, as if a reader were open on every CPU. The creation checks are the
kernel's (fd_array_map_alloc_check); an update from Python is refused (there are no perf event
fds to store).

A sample takes ``8 + round_up(4 + size, 8)`` bytes of its CPU's ``page_cnt * PAGE_SIZE``-byte
buffer (the perf record header, the u32 size and the data, padded to 8) until it is read; a
sample that does not fit is lost and counted, as the kernel counts lost samples.
:meth:`PerfEventArray.poll` hands every sample to ``callback(cpu, data)`` and every CPU's lost
count to ``lost_callback(cpu, count)``. docs/semantics.md#perf-event-arrays.

The buffers are native memory, written under the map lock by the Python helper and by the
native one (jit/native_perf.py) alike, so a jitted program's samples never enter Python until
they are read. The header (runtime/maps/base.py) gives the native helper what it needs:
``value_base`` the first CPU's buffer, ``elem_stride`` the bytes from one CPU's buffer to the
next, ``cpu_stride`` the bytes a buffer may fill now (``page_cnt * PAGE_SIZE``), ``ncpus`` the
number of buffers (``min(max_entries, possible CPUs)``) and ``key_base`` the possible CPUs. A
buffer is its bytes in use (u64), its lost count (u64), then its records, each the sample's size
(u64) and data in the sample's footprint.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno as E
from typing import Any, Callable

from .kernel_objects import KernelObjectMap
from .uapi import BPF_F_NUMA_NODE, BPF_F_PRESERVE_ELEMS, BPF_F_RDONLY, BPF_F_WRONLY, PAGE_SIZE, round_up

PERF_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_PRESERVE_ELEMS
PERF_BUFFER_PAGES = 8  # page_cnt of each CPU's buffer, as a libbpf perf_buffer__new caller often picks
BUFFER_WORDS = 16  # a CPU buffer's bytes in use and lost count, before its records
SAMPLE_OVERHEAD = 8 + 4  # struct perf_event_header, then the raw sample's u32 size


class PerfEventArray(KernelObjectMap):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY (see the module docstring)."""

    type_name = "perf_event_array"
    indexed = True
    refusal = "its values are perf event file descriptors, which bpfjit does not have (every CPU's slot " \
              "already holds a buffer: read it with poll())"

    def __init__(self, spec, btf=None, ncpus: int = 1, lock_offset: int | None = None):
        if spec.max_entries == 0:
            spec = dataclasses.replace(spec, max_entries=ncpus)
        self.possible_cpus = ncpus
        self._page_cnt = PERF_BUFFER_PAGES
        super().__init__(spec, btf, ncpus, lock_offset)

    def _validate(self) -> None:
        if self.value_size != 4:
            raise self._err(f"value_size must be 4 (a perf event fd), got {self.value_size}", E.EINVAL)
        self._check_flags(PERF_CREATE_FLAG_MASK)

    def _allocate(self) -> None:
        self._nslots = min(self.max_entries, self.possible_cpus)
        self.key_base = self.possible_cpus
        self._buffers = self._buffer_area(self.page_cnt)

    def _buffer_area(self, page_cnt: int):
        """A buffer of page_cnt pages for each CPU, made the map's (the header is rewritten)."""
        self.elem_stride = BUFFER_WORDS + page_cnt * PAGE_SIZE
        area = self._alloc(self._nslots * self.elem_stride, "the perf event buffers", self)
        self.value_base, self.cpu_stride = area.address, page_cnt * PAGE_SIZE
        return area

    @property
    def page_cnt(self) -> int:
        """Pages in each CPU's buffer (libbpf's perf_buffer__new page_cnt); set it before samples
        are written: a change empties every buffer."""
        return self._page_cnt

    @page_cnt.setter
    def page_cnt(self, pages: int) -> None:
        if not isinstance(pages, int) or pages < 1 or pages & (pages - 1):
            raise self._err(f"page_cnt must be a power of two, got {pages!r}", E.EINVAL)
        if not hasattr(self, "_buffers"):  # before the map is made
            self._page_cnt = pages
            return
        with self._lock:  # the native helper reads the header under the lock
            self._page_cnt = pages
            self._buffers = self._buffer_area(pages)
            self._write_header()

    def _words(self, cpu: int) -> tuple[ctypes.c_uint64, ctypes.c_uint64]:
        """A CPU buffer's bytes in use and lost count."""
        base = self.value_base + cpu * self.elem_stride
        return ctypes.c_uint64.from_address(base), ctypes.c_uint64.from_address(base + 8)

    @staticmethod
    def _footprint(size: int) -> int:
        return 8 + round_up(4 + size, 8)

    # kernel side: bpf_perf_event_output (runtime/stdhelpers.py) after its flag checks

    def output(self, index: int, cpu: int, sample: bytes) -> int:
        """Write a sample to slot ``index`` from ``cpu``: 0, -E2BIG past max_entries, -ENOENT for a
        slot with no buffer, -EOPNOTSUPP for another CPU's slot, -ENOSPC when it does not fit
        (then counted as lost)."""
        if index >= self.max_entries:
            return -E.E2BIG
        if index >= self._nslots:
            return -E.ENOENT
        if index != cpu:
            return -E.EOPNOTSUPP
        footprint = self._footprint(len(sample))
        with self._lock:
            used, lost = self._words(index)
            if used.value + footprint > self.cpu_stride:
                lost.value += 1
                return -E.ENOSPC
            record = self.value_base + index * self.elem_stride + BUFFER_WORDS + used.value
            ctypes.c_uint64.from_address(record).value = len(sample)
            ctypes.memmove(record + 8, sample, len(sample))
            used.value += footprint
        return 0

    # Python side

    def poll(self, callback: Callable[[int, bytes], Any],
             lost_callback: Callable[[int, int], Any] | None = None) -> int:
        """Hand every sample written so far, CPU by CPU in the order written, to
        ``callback(cpu, data)``, and each CPU's count of lost samples since the last poll to
        ``lost_callback(cpu, count)``; the samples are consumed. Returns the number of samples."""
        count = 0
        for cpu in range(self._nslots):
            with self._lock:
                used, lost_word = self._words(cpu)
                taken = ctypes.string_at(self.value_base + cpu * self.elem_stride + BUFFER_WORDS, used.value)
                lost = lost_word.value
                used.value = lost_word.value = 0
            if lost and lost_callback is not None:
                lost_callback(cpu, lost)
            at = 0
            while at < len(taken):
                size = int.from_bytes(taken[at:at + 8], "little")
                callback(cpu, taken[at + 8:at + 8 + size])
                at += self._footprint(size)
                count += 1
        return count

    def _raw_clear(self) -> None:
        with self._lock:
            for cpu in range(self._nslots):
                for word in self._words(cpu):
                    word.value = 0
