"""Maps of kernel objects (SOCKMAP, SOCKHASH, XSKMAP, REUSEPORT_SOCKARRAY, SK_STORAGE, STACK_TRACE),
socket pointers and the socket helpers: creation checks, what user space may do with maps that
stay empty here, and what the verifier accepts and rejects, with the kernel's messages.

Expected values come from the kernel's sources (net/core/sock_map.c, net/xdp/xskmap.c,
kernel/bpf/bpf_local_storage.c, kernel/bpf/stackmap.c, kernel/bpf/verifier.c, net/core/filter.c)
and docs/semantics.md#socket-maps-and-helpers, where bpfjit's userspace answers are written down
(no sockets: lookups find nothing, skb->sk is NULL).
"""
from __future__ import annotations

import errno
import struct
import sys

import pytest

from bpfjit import VerifierError, asm, isa
from bpfjit.errors import BPFError, MapError
from bpfjit.program import Program
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import (BPF_F_NO_PREALLOC, BPF_F_RDONLY, ReuseportSockArray, SkStorageMap, SockHash, SockMap,
                                 StackTraceMap, XskMap)
from bpfjit.runtime.maps.uapi import BPF_F_STACK_BUILD_ID
from bpfjit.runtime.stdhelpers import standard_helpers

from map_cases import errno_of, mk

ENGINES = ("jit", "reference")
SK = 168  # offsetof(struct __sk_buff, sk)


def sk_storage(value_size: int = 8, flags: int = BPF_F_NO_PREALLOC, max_entries: int = 0, **kw):
    kw.setdefault("key_type_id", 1)
    kw.setdefault("value_type_id", 2)
    return mk("sks", MapType.SK_STORAGE, 4, value_size, max_entries, flags, **kw)


# --- creation --------------------------------------------------------------------------------

@pytest.mark.parametrize("map_type, key, value, entries, cls", [
    (MapType.SOCKMAP, 4, 4, 2, SockMap), (MapType.SOCKMAP, 4, 8, 2, SockMap),
    (MapType.SOCKHASH, 16, 8, 2, SockHash), (MapType.XSKMAP, 4, 4, 2, XskMap),
    (MapType.REUSEPORT_SOCKARRAY, 4, 8, 2, ReuseportSockArray), (MapType.STACK_TRACE, 4, 127 * 8, 2, StackTraceMap),
])
def test_create_picks_the_class(map_type, key, value, entries, cls):
    assert type(mk("m", map_type, key, value, entries)) is cls
    assert type(sk_storage()) is SkStorageMap


@pytest.mark.parametrize("map_type, key, value, entries, flags, expected", [
    (MapType.SOCKMAP, 4, 2, 1, 0, errno.EINVAL),  # a socket fd is a u32 or a u64
    (MapType.SOCKMAP, 8, 4, 1, 0, errno.EINVAL),  # indexed by a u32
    (MapType.SOCKMAP, 4, 4, 0, 0, errno.EINVAL),
    (MapType.SOCKMAP, 4, 4, 1, BPF_F_NO_PREALLOC, errno.EINVAL),  # only NUMA_NODE, RDONLY, WRONLY
    (MapType.SOCKHASH, 0, 4, 1, 0, errno.EINVAL),
    (MapType.SOCKHASH, 513, 4, 1, 0, errno.E2BIG),  # keys live on the BPF stack
    (MapType.XSKMAP, 4, 8, 1, 0, errno.EINVAL),  # an AF_XDP socket fd is a u32
    (MapType.REUSEPORT_SOCKARRAY, 4, 2, 1, 0, errno.EINVAL),
    (MapType.STACK_TRACE, 4, 12, 1, 0, errno.EINVAL),  # whole u64 frames
    (MapType.STACK_TRACE, 4, 128 * 8, 1, 0, errno.EINVAL),  # more than perf_event_max_stack frames
    (MapType.STACK_TRACE, 4, 40, 1, BPF_F_STACK_BUILD_ID, errno.EINVAL),  # whole 32-byte build ids
    (MapType.STACK_TRACE, 8, 8, 1, 0, errno.EINVAL),
])
def test_creation_checks(map_type, key, value, entries, flags, expected):
    assert errno_of(mk, "m", map_type, key, value, entries, flags) == expected


def test_stack_trace_of_build_ids():
    assert mk("st", MapType.STACK_TRACE, 4, 2 * 32, 4, BPF_F_STACK_BUILD_ID).value_size == 64


@pytest.mark.parametrize("kwargs, expected", [
    ({"flags": 0}, errno.EINVAL),  # the storage is allocated per socket: BPF_F_NO_PREALLOC is required
    ({"max_entries": 1}, errno.EINVAL),
    ({"value_size": 0}, errno.EINVAL),
    ({"key_type_id": 0}, errno.EINVAL),  # BTF is required
    ({"value_size": 0xFFFF}, errno.E2BIG),
    ({"flags": BPF_F_NO_PREALLOC | BPF_F_RDONLY}, errno.EINVAL),
])
def test_sk_storage_creation_checks(kwargs, expected):
    assert errno_of(sk_storage, **kwargs) == expected


def test_sk_storage_values_may_hold_a_spin_lock():
    assert sk_storage(lock_offset=4).lock_offset == 4
    assert errno_of(mk, "sm", MapType.SOCKMAP, 4, 8, 1, lock_offset=0) == errno.EOPNOTSUPP


# --- user space: always empty, updates refused -------------------------------------------------

@pytest.mark.parametrize("make, update_errno", [
    (lambda: mk("sm", MapType.SOCKMAP, 4, 4, 2), errno.EOPNOTSUPP),
    (lambda: mk("sh", MapType.SOCKHASH, 4, 4, 2), errno.EOPNOTSUPP),
    (lambda: mk("xs", MapType.XSKMAP, 4, 4, 2), errno.EOPNOTSUPP),
    (lambda: mk("ra", MapType.REUSEPORT_SOCKARRAY, 4, 4, 2), errno.EOPNOTSUPP),
    (sk_storage, errno.EOPNOTSUPP),
    (lambda: mk("st", MapType.STACK_TRACE, 4, 8, 2), errno.EINVAL),
])
def test_empty_and_updates_refused(make, update_errno):
    m = make()
    with pytest.raises(MapError) as refused:
        m.update_elem(0, 3)
    assert refused.value.errno == update_errno
    assert m.name in str(refused.value)
    assert m.keys() == [] and m.items() == [] and len(m) == 0 and 0 not in m
    with pytest.raises(KeyError):
        m[0]
    assert errno_of(m.lookup_elem, 0) == errno.ENOENT
    m.clear()
    assert m.regions()[0].start == m.handle and len(m.regions()) == 1  # a header and nothing else


def test_socket_maps_say_why_updates_fail():
    with pytest.raises(MapError, match="no sockets"):
        mk("sm", MapType.SOCKMAP, 4, 4, 2)[1] = 5


@pytest.mark.parametrize("map_type, key, expected", [
    (MapType.SOCKMAP, 0, errno.EINVAL),  # sock_map_delete_elem of an empty slot
    (MapType.SOCKHASH, 0, errno.ENOENT),
    (MapType.REUSEPORT_SOCKARRAY, 0, errno.ENOENT),
    (MapType.REUSEPORT_SOCKARRAY, 9, errno.E2BIG),
    (MapType.XSKMAP, 9, errno.EINVAL),
    (MapType.STACK_TRACE, 3, errno.ENOENT),
    (MapType.STACK_TRACE, 4, errno.EINVAL),  # past roundup_pow_of_two(max_entries) buckets
])
def test_delete_errnos(map_type, key, expected):
    value = 8 if map_type == MapType.STACK_TRACE else 4
    assert errno_of(mk("m", map_type, 4, value, 3).delete_elem, key) == expected


def test_xskmap_delete_of_an_empty_slot_succeeds():
    mk("xs", MapType.XSKMAP, 4, 4, 2).delete_elem(1)  # xsk_map_delete_elem clears whatever is there


# --- programs ------------------------------------------------------------------------------------

def program(ptype: str, text: str, maps: dict | None = None) -> Program:
    """A program from assembly in which ``ldmap %rN, name`` loads a map (two slots, as lddw)."""
    maps = maps or {}
    insns, handles, chunk = [], {}, []
    for line in text.strip().splitlines():
        words = line.split()
        if words and words[0] == "ldmap":
            insns += asm.assemble_insns("\n".join(chunk)) if chunk else []
            chunk = []
            handles[len(insns)] = maps[words[2]].handle
            insns += isa.lddw(int(words[1].strip("%r,")), 0, isa.PSEUDO_MAP_FD)
        else:
            chunk.append(line)
    insns += asm.assemble_insns("\n".join(chunk))
    regions = [region for m in maps.values() for region in m.regions()]
    env = Environment(standard_helpers(print), regions, lambda insn, index: handles[index])
    return Program(insns, env, "prog", ptype, verify=True)


def rejected(ptype: str, text: str, maps: dict | None = None) -> str:
    with pytest.raises(VerifierError) as caught:
        program(ptype, text, maps)
    return caught.value.message


def run_both(prog: Program, ctx: bytes | None = None) -> int:
    results = {engine: prog.test_run(bytes(64), ctx=ctx, engine=engine).retval for engine in ENGINES}
    assert len(set(results.values())) == 1, results
    return results["jit"]


SK_FULLSOCK_TYPE = f"""
    ldxdw %r1, [%r1+{SK}]
    jne %r1, 0, +2
    mov %r0, 0
    exit
    call 95
    jne %r0, 0, +1
    exit
    ldxw %r0, [%r0+8]
    mov %r0, 7
    exit
"""


@pytest.mark.parametrize("ptype", ["tc", "cgroup_skb"])
def test_skb_sk_is_null_at_run_time(ptype):
    # Verified as the kernel does (skb->sk checked, then sk_fullsock's result); bpfjit has no
    # sockets, so skb->sk is NULL and the program takes its first exit.
    assert run_both(program(ptype, SK_FULLSOCK_TYPE)) == 0


@pytest.mark.parametrize("text, message", [
    (f"ldxdw %r1, [%r1+{SK}]\nldxw %r0, [%r1+0]\nmov %r0, 0\nexit", "R1 invalid mem access 'sock_common_or_null'"),
    (f"ldxdw %r1, [%r1+{SK}]\njne %r1, 0, +2\nmov %r0, 0\nexit\nldxw %r0, [%r1+8]\nmov %r0, 0\nexit",
     "R1 invalid sock_common access off=8 size=4"),  # type is a full socket's field
    (f"ldxdw %r1, [%r1+{SK}]\ncall 95\nmov %r0, 0\nexit",
     "R1 type=sock_common_or_null expected=sock_common, sock, tcp_sock, xdp_sock"),
    (SK_FULLSOCK_TYPE.replace("jne %r0, 0, +1\n    exit\n", ""), "R0 invalid mem access 'sock_or_null'"),
    (SK_FULLSOCK_TYPE.replace("ldxw %r0, [%r0+8]", "ldxh %r0, [%r0+50]"), "R0 invalid sock access off=50 size=2"),
    (SK_FULLSOCK_TYPE.replace("ldxw %r0, [%r0+8]", "stw [%r0+8], 1"), "R0 cannot write into sock"),
    (SK_FULLSOCK_TYPE.replace("call 95", "call 96").replace("ldxw %r0, [%r0+8]", "ldxdw %r0, [%r0+96]"),
     "R0 invalid tcp_sock access off=96 size=8"),
    (f"ldxdw %r1, [%r1+{SK}]\njeq %r1, 0, +1\ncall 86\nmov %r0, 0\nexit",
     "R1 must be referenced when passed to release function"),
])
def test_socket_pointer_rules(text, message):
    assert message in rejected("tc", text)


@pytest.mark.parametrize("offset, size", [(4, 4), (48, 2), (49, 1), (48, 4), (57, 1), (72, 1), (76, 4)])
def test_readable_sock_fields(offset, size):
    load = {1: "ldxb", 2: "ldxh", 4: "ldxw"}[size]
    assert run_both(program("tc", SK_FULLSOCK_TYPE.replace("ldxw %r0, [%r0+8]", f"{load} %r0, [%r0+{offset}]"))) == 0


SK_LOOKUP = """
    stdw [%r10-16], 0
    stdw [%r10-8], 0
    mov %r2, %r10
    add %r2, -16
    mov %r3, 12
    mov %r4, 0
    mov %r5, 0
    call 84
"""


def test_socket_lookup_references():
    # A lookup's socket is a reference: released after the NULL check, it is accepted (and at
    # run time nothing is found); kept, it is the kernel's unreleased reference.
    released = program("tc", SK_LOOKUP + "jeq %r0, 0, +2\nmov %r1, %r0\ncall 86\nmov %r0, 1\nexit")
    assert run_both(released) == 1
    assert "Unreleased reference id=2 alloc_insn=7" in rejected("tc", SK_LOOKUP + "mov %r0, 0\nexit")
    assert "R0 cannot write into sock" in rejected("tc", SK_LOOKUP + "jeq %r0, 0, +1\nstw [%r0+4], 1\nmov %r0, 0\nexit")


@pytest.mark.parametrize("engine", ["jit", "interp"])
def test_socket_helpers_answer_without_python(engine):
    """The socket lookups, the cookie and csum_update give their constant answers natively
    (jit/native_constants.py), as the Python helpers do: a lookup per packet costs no callback."""
    from bpfjit.runtime import skb_helpers, sock_helpers
    cases = [(SK_LOOKUP.replace("call 84", f"call {call}") + "jeq %r0, 0, +4\nmov %r1, %r0\ncall 86\nmov %r0, 1\n"
              "exit\nmov %r0, 7\nexit", 7) for call in (84, 85, 99)]
    cases += [("call 46\nexit", 0), ("mov %r2, 0\ncall 40\nexit", -skb_helpers.ENOTSUPP & (1 << 64) - 1)]
    files = {sock_helpers.__file__, skb_helpers.__file__}
    calls: list[str] = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename in files:
            calls.append(frame.f_code.co_name)

    for text, expected in cases:
        prog = program("tc", text)
        assert run_both(prog) == expected
        prog.prepare(engine)
        sys.setprofile(profile)
        try:
            assert prog.test_run(bytes(64), engine=engine).retval == expected
        finally:
            sys.setprofile(None)
        assert calls == [], text


def test_a_released_socket_is_no_pointer():
    message = rejected("tc", SK_LOOKUP + "jeq %r0, 0, +4\nmov %r6, %r0\nmov %r1, %r0\ncall 86\nldxw %r0, [%r6+4]\n"
                       "mov %r0, 0\nexit")
    assert "R6 invalid mem access 'scalar'" in message


def test_map_helper_compatibility():
    storage, sockmap = sk_storage(), mk("sockmap", MapType.SOCKMAP, 4, 4, 1)
    lookup = "stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\nldmap %r1, m\ncall {call}\nmov %r0, 0\nexit"
    message = rejected("tc", lookup.format(call=1), {"m": storage})
    assert "cannot pass map_type 24 into func bpf_map_lookup_elem#1" in message
    message = rejected("raw_tp", lookup.format(call=3), {"m": sockmap})
    assert "cannot update sockmap in this context" in message
    assert "cannot pass map_type 15 into func bpf_map_delete_elem#3" in message
    # An xdp program may delete from a sockmap; without sockets the slot is always empty.
    assert run_both(program("xdp", lookup.format(call=3), {"m": sockmap})) == 0
    stack = mk("st", MapType.STACK_TRACE, 4, 8, 1)
    assert "cannot pass map_type 7 into func bpf_map_lookup_elem#1" in rejected("xdp", lookup.format(call=1),
                                                                                {"m": stack})


def test_sockmap_update_takes_a_socket():
    sockmap = mk("sockmap", MapType.SOCKMAP, 4, 4, 1)
    update = (f"ldxdw %r3, [%r1+{SK}]\njeq %r3, 0, +7\nstw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\n"
              "ldmap %r1, m\nmov %r4, 0\ncall 2\nmov %r0, 0\nexit")
    assert run_both(program("tc", update, {"m": sockmap})) == 0
    stack_value = update.replace(f"ldxdw %r3, [%r1+{SK}]", "mov %r3, %r10\nadd %r3, -8\nstdw [%r10-8], 0")
    assert "R3 type=fp expected=sock_common, sock, tcp_sock, xdp_sock" in rejected("tc", stack_value, {"m": sockmap})


def test_xskmap_lookup_gives_an_xdp_sock():
    xsk = mk("xsk", MapType.XSKMAP, 4, 4, 1)
    body = ("stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\nldmap %r1, m\ncall 1\n"
            "jne %r0, 0, +1\nexit\n{load}\nmov %r0, 3\nexit")
    assert run_both(program("xdp", body.format(load="ldxw %r0, [%r0+0]"), {"m": xsk})) == 0  # no socket: NULL
    message = rejected("xdp", body.format(load="ldxw %r0, [%r0+4]"), {"m": xsk})
    assert "R0 invalid xdp_sock access off=4 size=4" in message


def test_sk_storage_get():
    storage = sk_storage()
    get = "ldmap %r1, m\nmov %r2, 0\nmov %r3, {value}\nmov %r4, 0\ncall 107\nexit"
    assert run_both(program("tc", get.format(value=0), {"m": storage})) == 0  # no socket, no storage: NULL
    assert "R3 type=scalar expected=fp" in rejected("tc", get.format(value=1), {"m": storage})


def test_tail_calls_invalidate_packet_pointers():
    jumps = mk("jumps", MapType.PROG_ARRAY, 4, 4, 1)
    text = """
        mov %r9, %r1
        ldxw %r6, [%r1+0]
        ldxw %r7, [%r1+4]
        mov %r8, %r6
        add %r8, 4
        jgt %r8, %r7, +7
        mov %r1, %r9
        ldmap %r2, m
        mov %r3, 0
        call 12
        ldxw %r0, [%r6+0]
        exit
        mov %r0, 0
        exit
    """
    assert "R6 invalid mem access 'scalar'" in rejected("xdp", text, {"m": jumps})


def test_context_helpers_without_sockets():
    assert run_both(program("tc", "call 46\nexit")) == 0  # get_socket_cookie: skb->sk is NULL
    assert run_both(program("tc", "call 34\nexit")) == 0  # get_hash_recalc: the skb's hash, 0 in a test run
    ctx = bytearray(192)
    struct.pack_into("<I", ctx, 68, 0x1234)  # __sk_buff.hash: the kernel's test run refuses it
    with pytest.raises(BPFError, match=r"hash must be 0.*\(EINVAL\)"):
        program("tc", "call 34\nexit").test_run(bytes(64), ctx=bytes(ctx))


@pytest.mark.parametrize("size, family, ifindex, expected", [
    (8, 2, 1, -errno.EINVAL),  # shorter than struct bpf_fib_lookup
    (64, 7, 1, -errno.EAFNOSUPPORT),
    (64, 2, 5, -errno.ENODEV),  # only the loopback device exists
    (64, 10, 1, 4),  # BPF_FIB_LKUP_RET_NOT_FWDED: no routing table
])
def test_fib_lookup(size, family, ifindex, expected):
    text = f"""
        mov %r2, 0
        {"".join(f"stdw [%r10-{8 * i}], 0" + chr(10) for i in range(1, 9))}
        stb [%r10-64], {family}
        stw [%r10-56], {ifindex}
        mov %r2, %r10
        add %r2, -64
        mov %r3, {size}
        mov %r4, 0
        call 69
        exit
    """
    assert isa.s64(run_both(program("xdp", text)) | (0 if expected >= 0 else ~0xFFFF_FFFF)) == expected
