"""Legacy packet loads (BPF_LD_ABS / BPF_LD_IND): the verifier's rules and every engine's runs.

Expected values are worked out by hand from the packet below: a socket filter sees the packet
from the network header on (the 14-byte Ethernet header pulled), a tc program from the Ethernet
header; loads are big-endian; a load outside the packet returns 0 from the current function; the
negative offsets from SKF_LL_OFF and SKF_NET_OFF read the mac and network headers.
"""
from __future__ import annotations

import pytest
from conftest import kernel_verifier_dir

import bpfjit
from bpfjit.errors import BPFRuntimeError, VerifierError
from bpfjit.program import ENGINES, Program
from bpfjit.runtime.packet_loads import SKF_LL_OFF, SKF_NET_OFF, offset_of
from bpfjit.isa import ABS, IND, LD, W, Insn
from bpfjit.verifier import cfg
from bpfjit.asm import assemble_insns
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.stdhelpers import standard_helpers
from bpfjit.verifier.legacy_packet import check_subprograms

ETHERNET = bytes(range(0xA0, 0xAE))  # 14 bytes, seen by tc only
NETWORK = bytes(range(0x10, 0x30))  # 32 bytes: byte k is 0x10 + k
FRAME = ETHERNET + NETWORK


def socket_prog(body: str) -> Program:
    return Program.from_asm(f"mov %r6, %r1\n{body}\nexit", prog_type="socket")


def runs(prog: Program, frame: bytes = FRAME) -> list[int]:
    return [prog.test_run(frame, engine=engine).retval for engine in ENGINES]


# --- runs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ("ldabsb 0", 0x10),
    ("ldabsh 0", 0x1011),
    ("ldabsw 0", 0x10111213),
    ("ldabsw 28", 0x2C2D2E2F),  # the last four bytes
    ("ldabsb 31", 0x2F),
    ("mov %r7, 5\nldindb %r7, 2", 0x17),
    ("mov %r7, 5\nldindh %r7, -1", 0x1415),  # src + imm, imm negative
    ("mov %r7, 30\nldindh %r7, 0", 0x2E2F),
    ("mov %r7, 4\nldindw %r7, 4", 0x18191A1B),
    ("ldabsw 0\nmov %r8, %r0\nldabsb 4\nadd %r0, %r8", 0x10111213 + 0x14),
], ids=lambda v: v.replace("\n", "; ") if isinstance(v, str) else None)
def test_loads_are_big_endian_from_the_network_header(body, expected):
    assert runs(socket_prog(body)) == [expected] * len(ENGINES)


def test_tc_sees_the_ethernet_header():
    prog = Program.from_asm("mov %r6, %r1\nldabsh 12\nexit", prog_type="tc")
    assert runs(prog) == [0xACAD] * len(ENGINES)


def test_a_32_bit_load_keeps_its_top_bit_and_zero_extends():
    prog = socket_prog("ldabsw 0")
    assert runs(prog, ETHERNET + b"\xff\xfe\xfd\xfc") == [0xFFFEFDFC] * len(ENGINES)


@pytest.mark.parametrize("body", [
    "ldabsb 32",  # one past the end
    "ldabsh 31",  # straddles the end
    "ldabsw 29",
    "ldabsw 0x7fffffff",
    "mov %r7, 30\nldindw %r7, 0",
    "lddw %r7, 0x100000000\nldindb %r7, 0x20",  # only the low 32 bits count: offset 32
    f"mov %r7, {SKF_LL_OFF}\nldindb %r7, -1",  # below the header offsets: a failed load
], ids=lambda v: v.replace("\n", "; "))
def test_out_of_range_returns_zero_from_the_program(body):
    prog = socket_prog(f"mov %r0, 7\n{body}\nmov %r0, 99")
    assert runs(prog) == [0] * len(ENGINES)


SUBPROGRAM_LOAD = """
    call local load
    add %r0, 1000
    exit
load:
    mov %r6, %r1
    ldabsw 40
    mov %r0, 1
    exit
"""


def test_out_of_range_inside_a_subprogram_returns_zero_to_the_caller():
    # The kernel's hidden exit leaves the current function only: main goes on with r0 = 0. The
    # subprogram returns an int by its BTF prototype (as clang's func_info would say).
    env = Environment(standard_helpers(print), returns_int={0: True, 3: True})
    prog = Program(assemble_insns(SUBPROGRAM_LOAD), env, prog_type="socket")
    assert runs(prog) == [1000] * len(ENGINES)
    assert runs(prog, ETHERNET + bytes(44)) == [1001] * len(ENGINES)


@pytest.mark.parametrize("returns_int,message", [
    (None, "LD_ABS is not allowed in subprogs without BTF"),
    ({0: True, 3: False}, "LD_ABS is only allowed in functions that return 'int'."),
])
def test_a_subprogram_with_legacy_loads_must_return_an_int_by_its_btf(returns_int, message):
    env = Environment(standard_helpers(print), returns_int=returns_int)
    with pytest.raises(VerifierError) as caught:
        Program(assemble_insns(SUBPROGRAM_LOAD), env, prog_type="socket")
    assert caught.value.message == message and caught.value.index == 3


def test_loads_keep_the_callee_saved_registers():
    prog = socket_prog("mov %r7, 3\nmov %r9, 40\nldindb %r7, 0\nadd %r0, %r9\nadd %r0, %r7")
    assert runs(prog) == [0x13 + 43] * len(ENGINES)


@pytest.mark.parametrize("prog_type", ["socket", "tc"])
@pytest.mark.parametrize("body, expected", [
    (f"ldabsb {SKF_LL_OFF}", ETHERNET[0]),  # the mac header: the frame's first byte, for both types
    (f"ldabsh {SKF_LL_OFF + 12}", 0xACAD),
    (f"ldabsw {SKF_LL_OFF + 12}", 0xACAD1011),  # across into the network header
    (f"ldabsb {SKF_NET_OFF}", NETWORK[0]),  # the network header: 14 bytes into the frame
    (f"ldabsw {SKF_NET_OFF + 28}", 0x2C2D2E2F),  # its last four bytes
    (f"mov %r7, 3\nldindb %r7, {SKF_NET_OFF}", NETWORK[3]),
    (f"lddw %r7, {SKF_LL_OFF + 5}\nldindb %r7, 0", ETHERNET[5]),
], ids=lambda v: v.replace("\n", "; ") if isinstance(v, str) else None)
def test_header_offsets_read_the_mac_and_network_headers(prog_type, body, expected):
    """SKF_LL_OFF + k and SKF_NET_OFF + k: k bytes into the mac and network headers, wherever data
    starts (a socket filter's data is its network header, tc's its mac header)."""
    prog = Program.from_asm(f"mov %r6, %r1\n{body}\nexit", prog_type=prog_type)
    assert runs(prog) == [expected] * len(ENGINES)


@pytest.mark.parametrize("body", [
    f"ldabsb {SKF_NET_OFF + 32}",  # one past the end
    f"ldabsw {SKF_LL_OFF + 44}",  # straddles the end
    "mov %r7, -1\nldindb %r7, 0",  # SKF_NET_OFF + 0xfffff
    f"ldabsb {SKF_NET_OFF - 1}",  # SKF_LL_OFF + 0xfffff
], ids=lambda v: v.replace("\n", "; "))
def test_header_offsets_past_the_packet_return_zero_from_the_program(body):
    prog = socket_prog(f"mov %r0, 7\n{body}\nmov %r0, 99")
    assert runs(prog) == [0] * len(ENGINES)


def test_an_unverified_programs_header_offsets_stop_the_run():
    """An unverified program's r6 need not be the context whose runtime words place its
    headers: every engine refuses the read instead of trusting them."""
    prog = Program.from_asm(f"mov %r6, %r1\nldabsb {SKF_LL_OFF}\nexit", prog_type="socket", verify=False)
    for engine in ENGINES:
        with pytest.raises(BPFRuntimeError, match=r"^insn 1: invalid read of 1 bytes at 0x"):
            prog.test_run(FRAME, engine=engine)


def test_repeated_runs_in_native_code():
    result = socket_prog("ldabsh 2").test_run(FRAME, repeat=50)
    assert result.retval == 0x1213


def test_budgeted_runs_count_the_same_instructions():
    prog = socket_prog("mov %r0, 1\nldabsb 99\nmov %r0, 2\nmov %r0, 3")
    for engine in ENGINES:  # mov, mov, ldabsb (which returns): 3 instructions
        assert prog.test_run(FRAME, engine=engine, max_steps=3).retval == 0
        with pytest.raises(BPFRuntimeError, match="instruction budget of 2 exhausted"):
            prog.test_run(FRAME, engine=engine, max_steps=2)


def test_unverified_program_with_no_skb_in_r6_fails_cleanly():
    prog = Program.from_asm("mov %r6, %r10\nldabsb 0\nexit", prog_type="socket", verify=False)
    for engine in ENGINES:
        with pytest.raises(BPFRuntimeError, match=r"^insn 1: invalid read of 8 bytes"):
            prog.test_run(FRAME, engine=engine)


def test_offset_is_the_low_32_bits_signed():
    ind = Insn(LD | IND | W, 0, 7, 0, 4)
    assert offset_of(ind, 0xFFFF_FFFF) == 3
    assert offset_of(ind, 0x1_0000_0000) == 4
    assert offset_of(ind, 0xFFFF_FFF0) == -12
    assert offset_of(Insn(LD | ABS | W, 0, 0, 0, -5), 123) == -5


# --- the verifier -----------------------------------------------------------------------------------

def rejected(text: str, prog_type: str = "socket", returns_int: dict[int, bool] | None = None) -> VerifierError:
    with pytest.raises(VerifierError) as info:
        env = Environment(standard_helpers(print), returns_int=returns_int)
        Program(assemble_insns(text), env, prog_type=prog_type)
    return info.value


@pytest.mark.parametrize("prog_type", ["raw", "xdp", "cgroup_skb", "lwt_in", "kprobe"])
def test_only_socket_filters_and_tc_may_use_them(prog_type):
    error = rejected("mov %r6, %r1\nldabsb 0\nexit", prog_type)
    assert error.message == "BPF_LD_[ABS|IND] instructions not allowed for this program type"
    assert error.index == 1


@pytest.mark.parametrize("prog_type", ["socket", "tc", "action"])
def test_accepted_for_skb_program_types(prog_type):
    Program.from_asm("mov %r6, %r1\nldabsb 0\nexit", prog_type=prog_type)


@pytest.mark.parametrize("text, message", [
    ("ldabsb 0\nexit", "R6 !read_ok"),
    ("mov %r6, 0\nldabsb 0\nexit", "at the time of BPF_LD_ABS|IND R6 != pointer to skb"),
    ("mov %r6, %r10\nldabsb 0\nexit", "at the time of BPF_LD_ABS|IND R6 != pointer to skb"),
    ("mov %r6, %r1\nadd %r6, 4\nldabsb 0\nexit", "dereference of modified ctx ptr R6 off=4 disallowed"),
    ("mov %r6, %r1\nldindb %r7, 0\nexit", "R7 !read_ok"),
    ("mov %r6, %r1\nldabsb 0\nmov %r0, %r1\nexit", "R1 !read_ok"),
    ("mov %r6, %r1\nldabsb 0\nmov %r0, %r5\nexit", "R5 !read_ok"),
], ids=lambda v: v.replace("\n", "; "))
def test_rejections_with_the_kernels_messages(text, message):
    assert rejected(text).message == message


def test_r0_is_an_unknown_scalar_not_bounded_by_the_width():
    # As the kernel (mark_reg_unknown): after a byte load, r0 > 255 is still a path to explore.
    error = rejected("""
        mov %r6, %r1
        ldabsb 0
        jle %r0, 255, small
        mov %r0, %r9
    small:
        exit
    """)
    assert (error.message, error.index) == ("R9 !read_ok", 3)


def test_the_pointer_in_r6_survives_the_load():
    Program.from_asm("mov %r6, %r1\nldabsb 0\nldabsh 2\nldxw %r0, [%r6+0]\nexit", prog_type="socket")


def test_refused_inside_a_spin_lock():
    # The kernel's selftest "spin_lock: test11 ld_abs under lock", from the corpus.
    path = kernel_verifier_dir() / "objs" / "verifier_spin_lock.bpf.o"
    with pytest.raises(VerifierError) as info:
        bpfjit.load(path, programs=["test11_ld_abs_under_lock"])
    assert info.value.message == "BPF_LD_[ABS|IND] cannot be used inside bpf_spin_lock-ed region"


def test_a_subprogram_must_cope_with_the_failed_load():
    # The kernel explores the hidden return with r0 = 0: here the caller then reads r9, unset.
    error = rejected("""
        call local load
        jne %r0, 0, done
        mov %r0, %r9
    done:
        mov %r0, 0
        exit
    load:
        mov %r6, %r1
        ldabsw 0
        mov %r0, 1
        exit
    """, returns_int={0: True, 5: True})
    assert error.message == "R9 !read_ok"


def test_subprogram_rules_of_btf_func_info():
    prog = Program.from_asm("""
        call local load
        exit
    load:
        mov %r6, %r1
        ldabsw 0
        exit
    """, prog_type="socket", verify=False)
    insns, facts = prog.original_insns, prog.facts
    check_subprograms(insns, facts, {0: False, 2: True})  # main's return type does not matter
    with pytest.raises(VerifierError, match=r"^insn 2: LD_ABS is only allowed in functions that return 'int'\.$"):
        check_subprograms(insns, facts, {0: True, 2: False})
    with pytest.raises(VerifierError, match=r"^insn 2: LD_ABS is not allowed in subprogs without BTF$"):
        check_subprograms(insns, facts, None)
    main_only = cfg.analyse(insns[2:], ())
    check_subprograms(insns[2:], main_only, None)  # in the main function they need no BTF


def test_every_path_to_a_load_has_the_skb_in_r6():
    # r6 is read by the load: a path with another r6 must not be pruned against one with the skb
    # (the load reads r6 + the native ctx's data slot: a scalar there would be a wild read).
    error = rejected("""
        mov %r6, %r1
        ldxw %r2, [%r6+0]
        jeq %r2, 7, other
        ja join
    other:
        mov %r6, 0
    join:
        ldabsb 0
        exit
    """)
    assert (error.message, error.index) == ("at the time of BPF_LD_ABS|IND R6 != pointer to skb", 5)

