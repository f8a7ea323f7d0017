"""Program flags: BPF_PROG_LOAD's ``prog_flags``, as libbpf's ``bpf_program__set_flags`` sets them
before load, checked as the kernel checks them, with what bpfjit does for each (check_program_flags).

A program's flags decide nothing bpfjit's verifier or JIT reads today: they are checked at load
(a bit the kernel refuses is EINVAL; one whose effect bpfjit does not give is refused rather than
ignored), carried to the kernel engine, and shown by ``bpfjit prog list``.
"""
from __future__ import annotations

import errno as errnos
import functools
from typing import Iterable

from .errors import BPFError, ProgramFlagsError
from .runtime.context import PROGRAM_TYPES
from .runtime.map_types import MapType, map_type_name
from .runtime.maps import Map

# BPF_PROG_LOAD's prog_flags (uapi linux/bpf.h), as libbpf's bpf_program__set_flags sets them.
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_F_TEST_STATE_FREQ = 1 << 3
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5
BPF_F_XDP_DEV_BOUND_ONLY = 1 << 6
BPF_F_TEST_REG_INVARIANTS = 1 << 7
BPF_F_TOKEN_FD = 1 << 16
PROG_FLAGS = {"BPF_F_STRICT_ALIGNMENT": BPF_F_STRICT_ALIGNMENT, "BPF_F_ANY_ALIGNMENT": BPF_F_ANY_ALIGNMENT,
              "BPF_F_TEST_RND_HI32": BPF_F_TEST_RND_HI32, "BPF_F_TEST_STATE_FREQ": BPF_F_TEST_STATE_FREQ,
              "BPF_F_SLEEPABLE": BPF_F_SLEEPABLE, "BPF_F_XDP_HAS_FRAGS": BPF_F_XDP_HAS_FRAGS,
              "BPF_F_XDP_DEV_BOUND_ONLY": BPF_F_XDP_DEV_BOUND_ONLY,
              "BPF_F_TEST_REG_INVARIANTS": BPF_F_TEST_REG_INVARIANTS, "BPF_F_TOKEN_FD": BPF_F_TOKEN_FD}
# The bits BPF_PROG_LOAD takes (Linux 6.18, kernel/bpf/syscall.c bpf_prog_load); any other is EINVAL.
KERNEL_PROG_FLAGS = functools.reduce(int.__or__, PROG_FLAGS.values())
# Flags whose effect on a load or a test run bpfjit does not give (see check_program_flags): refused.
UNIMPLEMENTED_PROG_FLAGS = {
    BPF_F_STRICT_ALIGNMENT: "the kernel's verifier would then check the alignment of every pointer access (packet "
                            "data as with NET_IP_ALIGN 2); bpfjit's verifier checks only what the kernel's checks "
                            "without the flag",
    BPF_F_TEST_REG_INVARIANTS: "the kernel's verifier would then fail the load (EFAULT) where its register bounds "
                               "contradict each other; bpfjit's verifier resets them, as the kernel's does without "
                               "the flag",
}
# The kernel types (enum bpf_prog_type without its prefix) of bpfjit's program types that may be
# sleepable (the kernel's can_be_sleepable: also TRACING, LSM and STRUCT_OPS, which bpfjit does not
# run; KPROBE for uprobes), and those that must be.
SLEEPABLE_TYPES = frozenset({"KPROBE", "SYSCALL"})
ALWAYS_SLEEPABLE_TYPES = frozenset({"SYSCALL"})
# The kernel verifier's words for the refusals of BPF_F_SLEEPABLE (check_attach_btf_id,
# check_map_prog_compatibility).
MUST_SLEEP_MESSAGE = "Syscall programs can only be sleepable"
MAY_NOT_SLEEP_MESSAGE = "Only fentry/fexit/fmod_ret, lsm, iter, uprobe, and struct_ops programs can be sleepable"
SLEEPABLE_MAP_MESSAGE = "Sleepable programs can only use array, hash, ringbuf and local storage maps"
# The maps a sleepable program may use (check_map_prog_compatibility, Linux 6.18).
SLEEPABLE_MAP_TYPES = frozenset({MapType.HASH, MapType.LRU_HASH, MapType.ARRAY, MapType.PERCPU_HASH,
                                 MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH, MapType.ARRAY_OF_MAPS,
                                 MapType.HASH_OF_MAPS, MapType.RINGBUF, MapType.USER_RINGBUF, MapType.INODE_STORAGE,
                                 MapType.SK_STORAGE, MapType.TASK_STORAGE, MapType.CGRP_STORAGE, MapType.QUEUE,
                                 MapType.STACK, MapType.ARENA,
                                 MapType.INSN_ARRAY})  # jump tables: not in 6.18; the kernels with them allow them


def flag_names(flags: int) -> str:
    """``"BPF_F_SLEEPABLE|BPF_F_XDP_HAS_FRAGS"`` for 0x30; bits without a name as hex; "0" for none."""
    names = [name for name, bit in PROG_FLAGS.items() if flags & bit]
    unnamed = flags & ~KERNEL_PROG_FLAGS
    return "|".join(names + ([f"{unnamed:#x}"] if unnamed else [])) or "0"


def default_flags(prog_type: str) -> int:
    """The flags a program of this type has when nobody sets them: those libbpf gives its canonical
    section (``SEC("syscall")``: BPF_F_SLEEPABLE, without which the kernel refuses the type)."""
    kernel_type = PROGRAM_TYPES[prog_type].kernel_type if prog_type in PROGRAM_TYPES else ""
    return BPF_F_SLEEPABLE if kernel_type in ALWAYS_SLEEPABLE_TYPES else 0


def flags_value(flags: object, name: str) -> int:
    """flags if it is an unsigned 32-bit int (prog_flags is a u32); BPFError if not."""
    if isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags < 1 << 32:
        raise BPFError(f"program {name!r}: flags must be an unsigned 32-bit int, got {flags!r}")
    return flags


def check_program_flags(flags: int, name: str) -> int:
    """The flags, if BPF_PROG_LOAD takes them and bpfjit does what they ask; ProgramFlagsError if not.

    Linux 6.18's BPF_PROG_LOAD takes nine flags (kernel/bpf/syscall.c bpf_prog_load) and refuses
    any other bit with EINVAL; its verifier adds the rules on BPF_F_SLEEPABLE, which
    Program.check_sleepable applies (check_map_prog_compatibility on the maps the program names,
    then check_attach_btf_id on its type). What bpfjit does with each flag, decided from the
    kernel's source and checked against Linux 6.18 through the kernel engine
    (tests/test_program_flags.py)::

        flag                       bit      Linux 6.18                              bpfjit
        BPF_F_STRICT_ALIGNMENT     0x1      checks the alignment of every pointer   refused, EOPNOTSUPP: its
                                            access as on an arch without efficient  verifier checks only what
                                            unaligned access (packet data with      the kernel's checks without
                                            NET_IP_ALIGN 2: a u32 load at packet    it (the stack, kptr and jump
                                            offset 0 is refused, EACCES, measured)  table slots); taken with
                                                                                    BPF_F_ANY_ALIGNMENT, which
                                                                                    cancels it (kernel too)
        BPF_F_ANY_ALIGNMENT        0x2      no alignment checks; on x86-64 it only  carried
                                            cancels BPF_F_STRICT_ALIGNMENT
        BPF_F_TEST_RND_HI32        0x4      randomises the upper halves of 32-bit   carried: no result can
                                            results that are never read as 64 bits  show them
                                            (a test of its zero-extension analysis)
        BPF_F_TEST_STATE_FREQ      0x8      keeps verifier states more often        carried (pruning and its
                                                                                    figures, not verdicts)
        BPF_F_SLEEPABLE            0x10     only fentry/fexit/fmod_ret, lsm, iter,  the same rules, at load, for
                                            uprobe (KPROBE) and struct_ops          its types (kprobe may,
                                            programs may have it, syscall ones      syscall must, the others may
                                            must (EINVAL); they may use only hash,  not; raw ones may) and the
                                            array, of-maps, ringbuf, local-storage, same maps; bpfjit provides
                                            queue, stack and arena maps (EINVAL;    no helper that sleeps
                                            not prog arrays), and may call helpers
                                            that sleep
        BPF_F_XDP_HAS_FRAGS        0x20     any type takes it; only XDP's attach,   carried
                                            devmap/cpumap and prog-array owners
                                            read it; a test run has frags past
                                            3,520 bytes either way (measured)
        BPF_F_XDP_DEV_BOUND_ONLY   0x40     binds to the device of prog_ifindex;    carried (a load here takes no
                                            without one (libbpf's default) nothing  ifindex)
        BPF_F_TEST_REG_INVARIANTS  0x80     fails the load (EFAULT) where register  refused, EOPNOTSUPP: its
                                            bounds contradict each other, instead   verifier resets them, as the
                                            of resetting them                       kernel's does without it
        BPF_F_TOKEN_FD             0x10000  prog_token_fd must be a BPF token's fd; refused, EINVAL: a load here
                                            libbpf given no token passes fd 0       is given no token
                                            (EINVAL, measured)
        any other bit                       EINVAL (measured: bits 8 to 31)         refused, EINVAL

    """
    flags_value(flags, name)
    where = f"program {name!r}: prog_flags {flags:#x}"
    unknown, token = flags & ~KERNEL_PROG_FLAGS, flags & BPF_F_TOKEN_FD
    if unknown or token:
        why = ([f"BPF_PROG_LOAD takes no flag {unknown:#x}"] if unknown else []) + \
            (["BPF_F_TOKEN_FD needs a BPF token's fd, which a load here is not given"] if token else [])
        raise ProgramFlagsError(f"{where}: {'; '.join(why)}", errnos.EINVAL, unknown | token, name)
    for flag, why in UNIMPLEMENTED_PROG_FLAGS.items():
        if flags & flag and not (flag == BPF_F_STRICT_ALIGNMENT and flags & BPF_F_ANY_ALIGNMENT):
            raise ProgramFlagsError(f"{where}: {flag_names(flag)}: {why}, so bpfjit refuses the flag rather than "
                                    "ignore it", errnos.EOPNOTSUPP, flag, name)
    return flags


def check_sleepable(name: str, flags: int, prog_type: str, kernel_type: str,
                    named_maps: Iterable[tuple[int, Map]]) -> None:
    """The kernel verifier's rules on BPF_F_SLEEPABLE, in its order, before the program is
    verified: a sleepable program names only maps of the types one may use (its
    check_map_prog_compatibility on every map an ld_imm64 names: `named_maps`, by instruction),
    then its type may be sleepable and a syscall program must be (check_attach_btf_id).
    ProgramFlagsError (EINVAL) with the kernel's words if not."""
    where = f"program {name!r}: prog_flags {flags:#x}"
    sleepable = bool(flags & BPF_F_SLEEPABLE)
    for index, found in named_maps if sleepable else ():
        if found.map_type not in SLEEPABLE_MAP_TYPES:
            raise ProgramFlagsError(f"{where}: insn {index} names map {found.name} "
                                    f"({map_type_name(found.map_type)}): {SLEEPABLE_MAP_MESSAGE}", errnos.EINVAL,
                                    BPF_F_SLEEPABLE, name)
    if kernel_type in ALWAYS_SLEEPABLE_TYPES and not sleepable:
        raise ProgramFlagsError(f"{where}: program type {prog_type} without BPF_F_SLEEPABLE: "
                                f"{MUST_SLEEP_MESSAGE}", errnos.EINVAL, BPF_F_SLEEPABLE, name)
    if sleepable and kernel_type and kernel_type not in SLEEPABLE_TYPES:
        raise ProgramFlagsError(f"{where}: BPF_F_SLEEPABLE on program type {prog_type}: "
                                f"{MAY_NOT_SLEEP_MESSAGE}", errnos.EINVAL, BPF_F_SLEEPABLE, name)
