"""BPF_MAP_TYPE_STACK_TRACE: call stacks recorded by bpf_get_stackid, an array of u64 instruction
pointers (or build ids) per stack id, with the creation checks of kernel/bpf/stackmap.c.

Programs may only pass it to bpf_get_stackid, which bpfjit does not provide (there is no kernel
or user stack to walk in a test run): the map stays empty, and a Python-side update fails with
EINVAL, as the kernel's does.
"""
from __future__ import annotations

import errno as E

from .kernel_objects import KernelObjectMap
from .uapi import BPF_F_STACK_BUILD_ID, PERF_EVENT_MAX_STACK, STACK_BUILD_ID_SIZE, STACK_CREATE_FLAG_MASK


class StackTraceMap(KernelObjectMap):
    type_name = "stack_trace"
    refusal = "stack traces are only recorded by bpf_get_stackid"
    refusal_errno = E.EINVAL

    def _validate(self) -> None:
        self._check_flags(STACK_CREATE_FLAG_MASK)
        if self.max_entries == 0 or self.key_size != 4:
            raise self._err("needs key_size 4 (a stack id) and max_entries of at least 1", E.EINVAL)
        frame = STACK_BUILD_ID_SIZE if self.map_flags & BPF_F_STACK_BUILD_ID else 8
        if self.value_size < 8 or self.value_size % frame:
            raise self._err(f"value_size must be a non-zero multiple of {frame} (one stack frame), "
                            f"got {self.value_size}", E.EINVAL)
        if self.value_size // frame > PERF_EVENT_MAX_STACK:
            raise self._err(f"value_size {self.value_size} holds more than {PERF_EVENT_MAX_STACK} frames", E.EINVAL)
        if self.max_entries > 1 << 31:
            raise self._err(f"max_entries {self.max_entries} is too large", E.E2BIG)

    def _delete_errno(self, key: bytes) -> int:
        buckets = 1 << (self.max_entries - 1).bit_length()  # the kernel's roundup_pow_of_two
        return E.EINVAL if int.from_bytes(key, "little") >= buckets else E.ENOENT
