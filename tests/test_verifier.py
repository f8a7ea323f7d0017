"""The verifier's rules, one program each: what the kernel accepts runs, what it rejects is a
VerifierError with the kernel's message (kernel/bpf/verifier.c wording)."""
from __future__ import annotations

import ctypes
import pathlib

import pytest

import bpfjit
from bpfjit import VerifierError
from bpfjit.errors import BPFRuntimeError
from bpfjit.program import Program

REJECTED = [
    # registers
    ("raw", "exit", "R0 !read_ok"),
    ("raw", "mov %r0, %r3\nexit", "R3 !read_ok"),
    ("raw", "lddw %r1, 0x4141414141414141\nstxdw [%r1], %r1\nmov %r0, 0\nexit", "R1 invalid mem access 'scalar'"),
    ("raw", "mov %r0, 1\ndiv %r0, 0\nexit", "div by zero"),
    ("raw", "mov %r0, 1\nlsh %r0, 64\nexit", "invalid shift 64"),
    # the stack
    ("raw", "stdw [%r10+0], 1\nmov %r0, 0\nexit", "invalid write to stack R10 off=0 size=8"),
    ("raw", "stdw [%r10-520], 1\nmov %r0, 0\nexit", "invalid write to stack R10 off=-520 size=8"),
    ("raw", "stw [%r10-6], 1\nmov %r0, 0\nexit", "misaligned stack access"),
    ("raw", "mov %r2, %r10\nstxw [%r10-8], %r2\nmov %r0, 0\nexit", "invalid size of register spill"),
    # pointer arithmetic
    ("xdp", "mov %r0, %r1\nand %r0, 1\nexit", "R0 bitwise operator &= on pointer prohibited"),
    ("xdp", "mov %r0, %r1\nmul %r0, 2\nexit", "R0 pointer arithmetic with *= operator prohibited"),
    ("xdp", "mov32 %r0, 1\nadd32 %r1, %r0\nmov %r0, 0\nexit", "R1 32-bit pointer arithmetic prohibited"),
    ("xdp", "mov %r0, 1\nsub %r0, %r1\nexit", "R0 tried to subtract pointer from scalar"),
    # the context
    ("xdp", "ldxw %r0, [%r1+24]\nexit", "invalid bpf_context access off=24 size=4"),
    ("xdp", "add %r1, 4\nldxw %r0, [%r1+0]\nexit", "dereference of modified ctx ptr R1 off=4 disallowed"),
    ("xdp", "stw [%r1+12], 1\nmov %r0, 0\nexit", "invalid bpf_context access off=12 size=4"),
    # packets: data_end must be checked first
    ("xdp", "ldxw %r2, [%r1+0]\nldxb %r0, [%r2+0]\nexit", "invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)"),
    ("xdp", """ldxw %r2, [%r1+0]
               ldxw %r3, [%r1+4]
               mov %r4, %r2
               add %r4, 4
               jgt %r4, %r3, +2
               ldxw %r0, [%r2+2]
               exit
               mov %r0, 0
               exit""", "invalid access to packet, off=2 size=4, R2(id=0,off=0,r=4)"),
    ("xdp", "ldxw %r3, [%r1+4]\nldxb %r0, [%r3+0]\nexit", "R3 invalid mem access 'pkt_end'"),
    ("xdp", "ldxw %r3, [%r1+4]\nadd %r3, 1\nmov %r0, 0\nexit", "R3 pointer arithmetic on pkt_end prohibited"),
    ("socket", "ldxw %r2, [%r1+76]\nmov %r0, 0\nexit", "invalid bpf_context access off=76 size=4"),
    # control flow
    ("raw", "l: ja l\nexit", "unreachable insn 1"),  # check_cfg runs first
    ("raw", "mov %r0, 0\nl: jeq %r0, 0, l\nexit", "infinite loop detected at insn 1"),
]


@pytest.mark.parametrize("ptype, text, message", REJECTED)
def test_rejected_with_the_kernels_message(ptype, text, message):
    with pytest.raises(VerifierError) as caught:
        Program.from_asm(text, prog_type=ptype, verify=True)
    assert message in caught.value.message
    assert caught.value.log.endswith(caught.value.message)


ACCEPTED = [
    ("raw", "mov %r0, 0\nexit", b"", 0),
    # a bounded loop: explored iteration by iteration
    ("raw", "mov %r0, 0\nl: add %r0, 1\njlt %r0, 10, l\nexit", b"", 10),
    # spill and fill keep a pointer's type
    ("xdp", """stxdw [%r10-8], %r1
               ldxdw %r2, [%r10-8]
               ldxw %r0, [%r2+12]
               exit""", bytes(64), 1),
    # a checked packet read, through a copy of the checked pointer
    ("xdp", """ldxw %r2, [%r1+0]
               ldxw %r3, [%r1+4]
               mov %r4, %r2
               add %r4, 14
               jgt %r4, %r3, +2
               ldxb %r0, [%r2+13]
               exit
               mov %r0, 0
               exit""", bytes(13) + b"\x07" + bytes(50), 7),
    # a dead branch is not explored: r1 is known to be 5
    ("raw", "mov %r1, 5\njeq %r1, 5, +1\nldxdw %r0, [%r1+0]\nmov %r0, 2\nexit", b"", 2),
    # a raw program's memory is checked at run time, not proven
    ("raw", "ldxb %r0, [%r1+3]\nexit", b"\0\0\0\x09", 9),
    # w3 = w2 of a 32-bit value links them: w2 < 9 proves r3 < 9, so the bad load is dead code
    ("raw", """mov %r0, 0
               ldxw %r2, [%r1+0]
               mov32 %r3, %r2
               jlt32 %r2, 9, +1
               exit
               jlt %r3, 9, +1
               ldxdw %r0, [%r9+0]
               exit""", b"\x05\0\0\0", 0),
    # a 32-bit fill of the low half of a spilled 64-bit value is that value truncated: here 0
    ("raw", """mov %r0, 0
               ldxdw %r2, [%r1+0]
               lsh %r2, 32
               stxdw [%r10-8], %r2
               ldxw %r3, [%r10-8]
               jeq %r3, 0, +1
               ldxdw %r0, [%r9+0]
               exit""", bytes(8), 0),
]


@pytest.mark.parametrize("ptype, text, data, expected", ACCEPTED)
def test_accepted_programs_run_on_both_engines(ptype, text, data, expected):
    prog = Program.from_asm(text, prog_type=ptype, verify=True)
    assert prog.verification is not None and prog.verification.stats.insns_processed > 0
    for engine in ("jit", "reference"):
        assert prog.test_run(data, engine=engine).retval == expected


def test_map_value_bounds_and_null_checks(tmp_path):
    """Map lookups give map_value_or_null: a NULL check makes them map values of value_size
    bytes; an access past the value is the kernel's invalid access to map value."""
    from bpfjit.runtime.maps import MapSpec, create_map
    from bpfjit.runtime.map_types import MapType
    from bpfjit.runtime.environment import Environment
    from bpfjit.runtime.stdhelpers import standard_helpers
    from bpfjit import isa
    m = create_map(MapSpec("counts", MapType.ARRAY, 4, 8, 4))
    env = Environment(standard_helpers(print), [*m.regions()], lambda insn, index: m.handle)
    load = isa.lddw(1, 0, isa.PSEUDO_MAP_FD)
    body = [
        *bpfjit.asm.assemble_insns("stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4"), *load,
        *bpfjit.asm.assemble_insns("call 1"),
    ]

    def program(tail: str) -> Program:
        return Program(body + bpfjit.asm.assemble_insns(tail), env, "prog", "raw", verify=True)

    with pytest.raises(VerifierError, match="R0 invalid mem access 'map_value_or_null'"):
        program("ldxdw %r0, [%r0+0]\nexit")
    with pytest.raises(VerifierError, match="invalid access to map value, value_size=8 off=8 size=1"):
        program("jeq %r0, 0, +2\nldxb %r0, [%r0+8]\nexit\nmov %r0, 0\nexit")
    ok = program("jeq %r0, 0, +2\nldxdw %r0, [%r0+0]\nexit\nmov %r0, 0\nexit")
    assert ok.test_run(engine="reference").retval == 0


def _map_pointer_program(map_type, tail: str) -> Program:
    """`r1 = map ll` of a fresh map of map_type, then tail."""
    from bpfjit.runtime.maps import MapSpec, create_map
    from bpfjit.runtime.environment import Environment
    from bpfjit.runtime.stdhelpers import standard_helpers
    from bpfjit import isa
    m = create_map(MapSpec("m", map_type, 4, 8, 4))
    env = Environment(standard_helpers(print), [*m.regions()], lambda insn, index: m.handle)
    prog = Program([*isa.lddw(1, 0, isa.PSEUDO_MAP_FD), *bpfjit.asm.assemble_insns(tail)], env, "prog", "socket")
    prog.map_keepalive = m
    return prog


@pytest.mark.parametrize("map_type, struct", [("ARRAY", "bpf_array"), ("HASH", "bpf_htab")])
def test_a_map_pointer_reads_only_the_ops_member_of_its_kernel_struct(map_type, struct):
    """check_ptr_to_map_access: a read of struct bpf_map's ops pointer (8 bytes at 0) is accepted,
    and gives the same number on every engine (bpfjit's map header's first 8 bytes); negative
    offsets, writes and partial reads of ops are refused with the kernel's messages, and members
    past ops, which bpfjit cannot know without kernel BTF, with bpfjit's own."""
    from bpfjit.runtime.map_types import MapType
    kind = MapType[map_type]
    ok = _map_pointer_program(kind, "ldxdw %r0, [%r1+0]\nexit")
    header = kind | 4 << 32  # the header's map_type and key_size (runtime/maps/base.py HEADER)
    assert int.from_bytes(ctypes.string_at(ok.map_keepalive.handle, 8), "little") == header
    for engine in ("jit", "interp", "reference"):
        assert ok.test_run(bytes(64), engine=engine).retval == header
    for tail, message in [
        ("ldxdw %r6, [%r1-8]\nmov %r0, 1\nexit", f"R1 is {struct} invalid negative access: off=-8"),
        ("stxdw [%r1+0], %r1\nmov %r0, 1\nexit", f"only read from {struct} is supported"),
        ("ldxw %r6, [%r1+1]\nmov %r0, 1\nexit",
         "cannot access ptr member ops with moff 0 in struct bpf_map with off 1 size 4"),
        ("ldxw %r6, [%r1+0]\nmov %r0, 1\nexit",
         "cannot access ptr member ops with moff 0 in struct bpf_map with off 0 size 4"),
        ("ldxw %r6, [%r1+8]\nmov %r0, 1\nexit", f"struct {struct} at off=8 size=4: bpfjit has no kernel BTF"),
    ]:
        with pytest.raises(VerifierError) as caught:
            _map_pointer_program(kind, tail)
        assert message in caught.value.message


def test_verified_by_default_and_sandboxed_on_opt_out():
    # Program, from_asm and load verify unless told not to; verify=False loads what the verifier
    # refuses, and the bad access ends the run cleanly, with the same message on both engines.
    hostile = "lddw %r1, 0x4141414141414141\nstxdw [%r1], %r1\nmov %r0, 0\nexit"
    with pytest.raises(VerifierError, match=r"insn 2: R1 invalid mem access 'scalar'"):
        Program.from_asm(hostile)
    unverified = Program.from_asm(hostile, verify=False)
    assert unverified.verification is None
    for engine in ("reference", "jit"):
        with pytest.raises(BPFRuntimeError, match=r"^insn 2: invalid write of 8 bytes at 0x4141414141414141$"):
            unverified.run(bytes(8), engine=engine)
    assert Program.from_asm("mov %r0, 0\nexit").verification is not None

    progs = pathlib.Path(__file__).parent / "progs"
    obj = bpfjit.load(progs / "xdp_parse.o")
    assert all(p.verification is not None for p in obj.programs.values())
    with pytest.raises(VerifierError, match=r"^unchecked_lookup: insn 7: R0 invalid mem access 'map_value_or_null'"):
        bpfjit.load(progs / "rejected_lines.o")
    loose = bpfjit.load(progs / "rejected_lines.o", verify=False)
    assert all(p.verification is None for p in loose.programs.values())
    for engine in ("reference", "jit"):  # the lookup of key 64 (skb->len) finds nothing: NULL
        with pytest.raises(BPFRuntimeError, match=r"^insn 7: invalid read of 8 bytes at 0x0$"):
            loose.programs["unchecked_lookup"].test_run(bytes(64), engine=engine)


def _global_data(size: int):
    from bpfjit.runtime.maps import MapSpec, create_map
    from bpfjit.runtime.map_types import MapType
    return create_map(MapSpec("data", MapType.ARRAY, 4, size, 1))


def test_a_map_value_address_is_the_value_its_offset_names(monkeypatch):
    """ld_imm64 of a map value (src 2) carries the offset into the value in its second imm: the
    value is the one that starts that far before the address, even where another map's value
    ends exactly there (the allocator may place two globals back to back)."""
    from bpfjit import isa
    from bpfjit.runtime.environment import Environment
    from bpfjit.runtime.stdhelpers import standard_helpers
    from bpfjit.verifier import verify as verify_module
    first, second = _global_data(16), _global_data(32)
    second_base = second.value_address(0)
    real_base = verify_module._value_base
    monkeypatch.setattr(verify_module, "_value_base",  # `first` ends where `second` starts
                        lambda m: second_base - 16 if m is first else real_base(m))
    env = Environment(standard_helpers(print), [*first.regions(), *second.regions()],
                      lambda insn, index: second_base + insn.next_imm)
    load = [isa.Insn(isa.LDDW, 1, isa.PSEUDO_MAP_VALUE, 0, second.handle, 0), isa.Insn(0, imm=0)]
    prog = Program(load + bpfjit.asm.assemble_insns("ldxdw %r0, [%r1+24]\nexit"), env, "prog", "raw", verify=True)
    second[0] = bytes(24) + (0x1234).to_bytes(8, "little")
    assert prog.test_run(b"", engine="reference").retval == 0x1234


@pytest.mark.parametrize("offset", [32, 40, -8])
def test_a_map_value_pointer_past_the_value_is_refused_as_the_kernel_does(offset):
    from bpfjit import isa
    from bpfjit.runtime.environment import Environment
    from bpfjit.runtime.stdhelpers import standard_helpers
    data = _global_data(32)
    env = Environment(standard_helpers(print), [*data.regions()],
                      lambda insn, index: data.value_address(0) + insn.next_imm)
    load = [isa.Insn(isa.LDDW, 1, isa.PSEUDO_MAP_VALUE, 0, data.handle, offset), isa.Insn(0, imm=offset)]
    with pytest.raises(VerifierError) as caught:
        Program(load + bpfjit.asm.assemble_insns("mov %r0, 0\nexit"), env, "prog", "raw", verify=True)
    assert caught.value.message == f"invalid access to map value pointer, value_size=32 off={offset & 0xFFFFFFFF}"
