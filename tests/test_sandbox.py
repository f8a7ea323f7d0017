"""Unverified programs (``verify=False``) run sandboxed: on the JIT as on the interpreter, a bad
memory access or a bad helper pointer ends the run with one clean BPFRuntimeError, and never
touches memory the run does not own (runaways: tests/test_run_limits.py).

The reproducers of issue 11 each run on both engines and must give the same message (for an
address inside a BPF stack, which each engine keeps in its own place, the same message but for
the address). A child-process campaign then runs the hostile programs of
tests/hostile_programs.py unverified on the JIT with a step budget, where a sandbox hole would
kill the process: each case must end in a result or a BPFRuntimeError.
"""
from __future__ import annotations

import io
import os
import pathlib
import random
import re
import subprocess
import sys
import textwrap

import pytest
from elftools.elf.elffile import ELFFile

import bpfjit
from bpfjit.asm import assemble_insns
from bpfjit.errors import BPFRuntimeError, VerifierError
from bpfjit.program import Program
from bpfjit.runtime.context import SK_BUFF, XDP_MD
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import MapSpec, create_map
from bpfjit.runtime.stdhelpers import standard_helpers


TESTS_DIR = pathlib.Path(__file__).resolve().parent
GLOBALS = TESTS_DIR / "progs" / "globals.o"
ENGINES = ("reference", "jit")
ADDRESS = re.compile(r"0x[0-9a-f]+")


def errors(prog: Program, data: bytes = bytes(8)) -> dict[str, str]:
    """The BPFRuntimeError message of a run on each engine (each run must raise one)."""
    messages = {}
    for engine in ENGINES:
        with pytest.raises(BPFRuntimeError) as info:
            prog.run(data, engine=engine)
        messages[engine] = str(info.value)
    return messages


def same_error(prog: Program, data: bytes = bytes(8)) -> str:
    """The one message both engines give."""
    messages = errors(prog, data)
    assert messages["reference"] == messages["jit"], messages
    return messages["jit"]


def same_error_but_the_address(prog: Program, data: bytes = bytes(8)) -> str:
    """The message both engines give, its address replaced by ADDR (a stack address: each engine
    has its own BPF stack)."""
    messages = {engine: ADDRESS.sub("ADDR", message) for engine, message in errors(prog, data).items()}
    assert messages["reference"] == messages["jit"], messages
    return messages["jit"]


# --- the reproducers ----------------------------------------------------------------------

def test_a_store_through_a_wild_pointer():
    prog = Program.from_asm("lddw %r1, 0x4141414141414141\nstxdw [%r1], %r1\nmov %r0, 0\nexit", verify=False)
    assert same_error(prog) == "insn 2: invalid write of 8 bytes at 0x4141414141414141"


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "unverified"])
def test_a_read_past_the_memory_is_an_error_not_a_heap_value(verify):
    # A raw program's memory has a run-time size: verified or not, the access is checked when it runs.
    prog = Program.from_asm("ldxdw %r0, [%r1+1000]\nexit", verify=verify)
    # Each run copies the memory to a buffer of its own: the address is its base + 1000.
    assert same_error_but_the_address(prog, bytes(16)) == "insn 0: invalid read of 8 bytes at ADDR"
    assert prog.run(bytes(1000) + bytes(range(1, 9))) == 0x0807060504030201  # in bounds: the bytes at 1000


def rodata_writer(tmp_path: pathlib.Path) -> pathlib.Path:
    """globals.o with thrice()'s load of the .rodata variable `factor` (r0 = *(u32 *)(r2 + 0))
    turned into a store of its argument there (*(u32 *)(r2 + 0) = r1). prog_a's first run calls
    thrice through its function-pointer table (hits becomes 1)."""
    data = bytearray(GLOBALS.read_bytes())
    text = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(".text")
    start, end = text["sh_offset"], text["sh_offset"] + text["sh_size"]
    load = bytes.fromhex("6120000000000000")
    assert data.count(load, start, end) == 1
    at = data.index(load, start, end)
    data[at:at + 8] = bytes.fromhex("6312000000000000")
    path = tmp_path / "rodata_writer.o"
    path.write_bytes(bytes(data))
    return path


def test_a_store_into_rodata(tmp_path):
    path = rodata_writer(tmp_path)
    with pytest.raises(VerifierError, match=r"^prog_a: insn 44: write into map forbidden, value_size=10 off=0 size=4"):
        bpfjit.load(path)
    for engine in ENGINES:  # a fresh object each: the first run is the one that calls thrice
        obj = bpfjit.load(path, verify=False)
        with pytest.raises(BPFRuntimeError) as info:
            obj.programs["prog_a"].test_run(bytes(64), engine=engine)
        factor = obj.maps[".rodata"].value_address(0)
        assert str(info.value).startswith(f"insn 44: invalid write of 4 bytes at {factor:#x}")
        assert obj.globals["factor"] == 3


def test_a_store_into_rodata_has_the_same_message_on_both_engines(tmp_path):
    path = rodata_writer(tmp_path)
    messages = set()
    for engine in ENGINES:
        obj = bpfjit.load(path, verify=False)
        with pytest.raises(BPFRuntimeError) as info:
            obj.programs["prog_a"].test_run(bytes(64), engine=engine)
        messages.add(str(info.value).replace(f"{obj.maps['.rodata'].value_address(0):#x}", "FACTOR"))
    assert len(messages) == 1, messages


@pytest.mark.parametrize("text, message", [
    ("stb [%r10+0], 1\nmov %r0, 0\nexit", "insn 0: invalid write of 1 bytes at ADDR"),
    ("stdw [%r10+8], 1\nmov %r0, 0\nexit", "insn 0: invalid write of 8 bytes at ADDR"),
    ("mov %r2, %r10\nadd %r2, 8\nstdw [%r2+0], 1\nmov %r0, 0\nexit", "insn 2: invalid write of 8 bytes at ADDR"),
    ("mov %r2, %r10\nadd %r2, 4096\nldxdw %r0, [%r2+0]\nexit", "insn 2: invalid read of 8 bytes at ADDR"),
    ("mov %r2, %r10\nadd %r2, -520\nstdw [%r2+0], 1\nmov %r0, 0\nexit", "insn 2: invalid write of 8 bytes at ADDR"),
    # the frame's last byte is fine, one more is not
    ("mov %r2, %r10\nstb [%r2-1], 7\nldxdw %r0, [%r2-1]\nexit", "insn 2: invalid read of 8 bytes at ADDR"),
], ids=["r10+0", "r10+8", "copy-of-r10+8", "copy-of-r10+4096", "below-the-frame", "straddling-the-top"])
def test_stack_accesses_outside_the_frame(text, message):
    assert same_error_but_the_address(Program.from_asm(text, verify=False)) == message


@pytest.mark.parametrize("text, message", [
    ("lddw %r2, 0xdead0000\nmov %r0, 1\nlock add [%r2+0], %r0\nexit", "insn 3: invalid write of 8 bytes at 0xdead0000"),
    ("lddw %r2, 0xdead0000\nmov %r0, 1\nlock xchg32 [%r2+4], %r0\nexit",
     "insn 3: invalid write of 4 bytes at 0xdead0004"),
    ("mov %r2, 0\nmov %r0, 1\nlock cmpxchg [%r2+8], %r0\nexit", "insn 2: invalid write of 8 bytes at 0x8"),
    ("lddw %r2, 0x4141414141414141\nldacqdw %r0, [%r2+0]\nexit",
     "insn 2: invalid read of 8 bytes at 0x4141414141414141"),
], ids=["add", "xchg32", "cmpxchg-null", "load-acquire"])
def test_atomics_on_wild_pointers(text, message):
    assert same_error(Program.from_asm(text, verify=False)) == message


@pytest.mark.parametrize("offset", [64, 1024, 8192])
def test_a_helper_given_the_native_stack_outside_any_bpf_frame(offset):
    # Above r10 is the host's own stack on a JIT run: a helper must not read a key from there.
    m = create_map(MapSpec("h", MapType.HASH, 4, 8, 4))
    insns = assemble_insns(f"lddw %r1, {m.handle}\nmov %r2, %r10\nadd %r2, {offset}\ncall 1\nmov %r0, 0\nexit")
    prog = Program(insns, Environment(standard_helpers(lambda line: None), list(m.regions())), verify=False)
    assert same_error_but_the_address(prog) == "insn 4: bpf_map_lookup_elem: invalid read of 4 bytes at ADDR (arg 2)"


MISSING_MAP = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from hostile_programs import Maps
    from bpfjit import isa
    from bpfjit.asm import assemble_insns
    from bpfjit.errors import BPFRuntimeError
    from bpfjit.program import Program
    # r1 = map 5 of three (the environment resolves it to 0); bpf_map_lookup_elem(r1, &key)
    insns = (assemble_insns("stw [%r10-4], 0\\nmov %r2, %r10\\nadd %r2, -4") + isa.lddw(1, 5, isa.PSEUDO_MAP_FD)
             + assemble_insns("call 1\\nmov %r0, 0\\nexit"))
    prog = Program(insns, Maps().environment(), "p", "raw", verify=False)
    try:
        prog.run(bytes(8), engine="jit")
    except BPFRuntimeError as error:
        print(error)
""")


def test_a_lookup_in_a_map_the_environment_does_not_have():
    proc = subprocess.run([sys.executable, "-c", MISSING_MAP, str(TESTS_DIR)], capture_output=True, text=True,
                          timeout=120)
    assert (proc.returncode, proc.stdout) == (0, "insn 5: bpf_map_lookup_elem: 0x0 is not a map (arg 1)\n"), proc


# --- hostile programs, unverified, in a child process --------------------------------------------

CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])
    os.environ["BPFJIT_CACHE"] = "off"
    from hostile_programs import Maps, build, make_case, run_once
    from bpfjit.errors import DecodeError, ProgramError
    maps = Maps()
    for seed in map(int, sys.argv[3:]):
        print("case", seed, flush=True)
        case = make_case(seed)
        try:
            prog = build(case, maps, verify=False)
        except (DecodeError, ProgramError):  # not even structurally a program
            print("unloadable", flush=True)
            continue
        for data in case.inputs:  # a result, or a BPFRuntimeError (run_once catches only that)
            outcome = run_once(prog, maps, case, data, "jit", max_steps=int(sys.argv[2]))
            print("error" if outcome.error is not None else "result", flush=True)
        prog.compile(sandboxed=True).close()
    print("done", flush=True)
""")
MAX_STEPS = 20_000


def run_hostile_campaign(seed: int, count: int) -> list[str]:
    """Run `count` hostile cases unverified on the JIT in a child; the child's lines."""
    rnd = random.Random(seed)
    seeds = [rnd.getrandbits(48) for _ in range(count)]
    proc = subprocess.run([sys.executable, "-c", CHILD, str(TESTS_DIR), str(MAX_STEPS), *map(str, seeds)],
                          capture_output=True, text=True, timeout=60 + count)
    lines = proc.stdout.splitlines()
    culprit = next((line for line in reversed(lines) if line.startswith("case ")), "(none)")
    assert proc.returncode == 0, (f"the child ended with {proc.returncode} (a negative number is the signal that "
                                  f"killed it) in {culprit} (hostile_programs.make_case(seed))\n"
                                  f"{proc.stderr[-3000:]}")
    assert lines[-1:] == ["done"], proc.stderr[-3000:]
    return lines[:-1]


def test_hostile_programs_run_unverified_on_the_jit_never_crash():
    lines = run_hostile_campaign(0x5A4D_B0C5, int(os.environ.get("BPFJIT_SANDBOX_PROGRAMS", "300")))
    kinds = [line for line in lines if not line.startswith("case ")]
    # Most cases load and run; many fault (the sandbox's work), many end with a result.
    assert kinds.count("error") >= 100 and kinds.count("result") >= 100, {k: kinds.count(k) for k in set(kinds)}


@pytest.mark.slow
def test_hostile_programs_run_unverified_on_the_jit_never_crash_long():
    seed = int(os.environ.get("BPFJIT_SLOW_SEED", "0"), 0) or random.SystemRandom().getrandbits(32)
    count = int(os.environ.get("BPFJIT_SLOW_PROGRAMS", "5000"))
    lines = run_hostile_campaign(seed, count)
    assert sum(line.startswith("case ") for line in lines) == count, f"campaign seed {seed:#x} (BPFJIT_SLOW_SEED)"


# --- the context's pointer words -----------------------------------------------------------------

ALL_ENGINES = ("reference", "interp", "jit")


@pytest.mark.parametrize("engine", ALL_ENGINES)
def test_an_unverified_store_into_the_contexts_packet_pointers_is_refused(engine):
    """A packet program's native context holds the packet's pointers: the sandbox's packet region
    is read from them, and so is the run's output. A store there through a computed pointer (not a
    ctx field access the loader rewrites) would move the packet over any memory (a hostile
    program's run read the host's memory at a garbage address and killed the process), so the
    context is read-only but for the fields a program may write."""
    end = XDP_MD.field("data_end").native_offset
    prog = Program.from_asm(f"mov %r2, %r1\nadd %r2, -8\nstdw [%r2+{end + 8}], 0x7fffffff\nmov %r0, 2\nexit",
                            prog_type="xdp", verify=False)
    refused = r"^insn 2: invalid write of 8 bytes at 0x[0-9a-f]+ \(read-only context\)"
    with pytest.raises(BPFRuntimeError, match=refused):
        prog.test_run(bytes(64), engine=engine)


@pytest.mark.parametrize("engine", ALL_ENGINES)
def test_an_unverified_store_into_a_writable_skb_field_lands(engine):
    mark = SK_BUFF.field("mark").native_offset
    prog = Program.from_asm(f"mov %r2, %r1\nadd %r2, -8\nstw [%r2+{mark + 8}], 0x1234\nmov %r0, 0\nexit",
                            prog_type="tc", verify=False)
    result = prog.test_run(bytes(64), bytes(SK_BUFF.size), engine=engine)
    assert int.from_bytes(result.ctx_out[8:12], "little") == 0x1234  # __sk_buff.mark


def test_frames_lie_end_to_end_on_both_interpreters():
    """An unverified callee storing 8 bytes below its own frame reaches its caller's frame on the
    reference and on the native interpreter alike (frame k at k * 512 of one frame stack on both),
    so the two agree on hostile programs that step out of a frame."""
    prog = Program.from_asm("stdw [%r10-8], 1\ncall local callee\nldxdw %r0, [%r10-8]\nexit\n"
                            "callee:\nstdw [%r10-520], 7\nmov %r0, 0\nexit", verify=False)
    assert prog.run(bytes(8), engine="reference") == prog.run(bytes(8), engine="interp") == 7
