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
"""
from __future__ import annotations

import collections
import dataclasses
import errno as E
from typing import Any, Callable

from .kernel_objects import KernelObjectMap
from .uapi import BPF_F_NUMA_NODE, BPF_F_PRESERVE_ELEMS, BPF_F_RDONLY, BPF_F_WRONLY, PAGE_SIZE, round_up

PERF_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_PRESERVE_ELEMS
PERF_BUFFER_PAGES = 8  # page_cnt of each CPU's buffer, as a libbpf perf_buffer__new caller often picks
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
        self.page_cnt = PERF_BUFFER_PAGES
        super().__init__(spec, btf, ncpus, lock_offset)

    def _validate(self) -> None:
        if self.value_size != 4:
            raise self._err(f"value_size must be 4 (a perf event fd), got {self.value_size}", E.EINVAL)
        self._check_flags(PERF_CREATE_FLAG_MASK)

    def _allocate(self) -> None:
        cpus = min(self.max_entries, self.possible_cpus)
        self._samples: list[collections.deque[bytes]] = [collections.deque() for _ in range(cpus)]
        self._used = [0] * cpus
        self._lost = [0] * cpus

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
        if index >= len(self._samples):
            return -E.ENOENT
        if index != cpu:
            return -E.EOPNOTSUPP
        footprint = self._footprint(len(sample))
        with self._lock:
            if self._used[index] + footprint > self.page_cnt * PAGE_SIZE:
                self._lost[index] += 1
                return -E.ENOSPC
            self._used[index] += footprint
            self._samples[index].append(sample)
        return 0

    # Python side

    def poll(self, callback: Callable[[int, bytes], Any],
             lost_callback: Callable[[int, int], Any] | None = None) -> int:
        """Hand every sample written so far, CPU by CPU in the order written, to
        ``callback(cpu, data)``, and each CPU's count of lost samples since the last poll to
        ``lost_callback(cpu, count)``; the samples are consumed. Returns the number of samples."""
        count = 0
        for cpu, samples in enumerate(self._samples):
            with self._lock:
                taken, lost = list(samples), self._lost[cpu]
                samples.clear()
                self._used[cpu], self._lost[cpu] = 0, 0
            if lost and lost_callback is not None:
                lost_callback(cpu, lost)
            for sample in taken:
                callback(cpu, sample)
            count += len(taken)
        return count

    def _raw_clear(self) -> None:
        with self._lock:
            for cpu, samples in enumerate(self._samples):
                samples.clear()
                self._used[cpu], self._lost[cpu] = 0, 0
