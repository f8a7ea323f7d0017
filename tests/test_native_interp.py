"""The native interpreter (jit/native_interp*.py) against the reference interpreter, the oracle.

Not yet an engine of Program (the wiring is the next step of issue 16), so ``run_native`` below
does what Program._invoke does for the other engines: the run's memory and regions, a RunEnv, a
RunContext for the helpers, then raise_for_status.

* the bpf_conformance suite, each file's expected result (and the reference's);
* differential runs on the valid random programs of tests/test_fuzz_diff.py: r0 and memory equal
  to the reference interpreter's, on both variants (fast: verified; checked: budgeted);
* the sandbox: unverified programs whose loads and stores leave their memory end with
  BAD_READ/BAD_WRITE and the reference's message, in-process (the checked variant never touches
  an address it has not checked);
* budgets, traps, calls, callx, helpers, static branches, the repeat loop;
* ``-m slow``: ns per run on the bench's raw programs, native interpreter vs reference vs JIT.
"""
from __future__ import annotations

import ctypes
import pathlib
import random
import re
import subprocess
import sys
import textwrap
import time

import pytest

from bpfjit import asm, isa
from bpfjit.errors import BPFRuntimeError, VerifierError
from bpfjit.isa import Insn
from bpfjit.jit.native_interp import HelperTable, NativeInterpreter, interpreter
from bpfjit.jit.native_interp_image import build_image
from bpfjit.jit.native_interp_ir import DISPATCH_INDIRECT, DISPATCH_SWITCH
from bpfjit.program import Program
from bpfjit.runtime import run_context
from bpfjit.runtime.helpers import HelperRegistry, unwind_helper
from bpfjit.runtime.memory import Regions
from bpfjit.runtime.run_context import RunContext
from bpfjit.runtime.run_memory import run_memory
from bpfjit.runtime.status import RunEnv, Status, raise_for_status

from conftest import conformance_case, conformance_helpers, conformance_params
from test_conformance import REJECTED_BY_THE_VERIFIER
from test_fuzz_diff import MAX_STEPS, random_case


def run_native(prog: Program, data: bytes = b"", max_steps: int | None = None, repeat: int = 1,
               native: NativeInterpreter | None = None) -> tuple[int, bytes]:
    """One test run of prog on the native interpreter: (r0, memory afterwards). Unverified
    programs and budgeted runs take the checked variant."""
    return run_native_ctx(prog, data, max_steps, repeat, native)[:2]


def run_native_ctx(prog: Program, data: bytes = b"", max_steps: int | None = None, repeat: int = 1,
                   native: NativeInterpreter | None = None,
                   ctx: bytes | None = None) -> tuple[int, bytes, bytes | None]:
    """run_native with a ctx in (packet programs) and out: (r0, data_out, ctx_out)."""
    native = native or interpreter()
    memory = run_memory(prog.type, prog.name, bytes(data), ctx)
    regions = Regions(prog.env.regions + memory.regions)
    verified = prog.facts.verified
    checked = not verified or max_steps is not None
    helpers = HelperTable(prog.env, verified and prog.facts.helper_args_proven)
    image = build_image(prog.insns, prog.env, prog.facts.function_starts, prog.facts.checked_accesses)
    image.bind_helpers(helpers.address)
    env = RunEnv(max_steps)
    env.mem_start, env.mem_size = (memory.r1, memory.r2) if prog.type.layout is None else (0, 0)
    table = regions.table()
    env.regions, env.region_count = ctypes.addressof(table), len(table) // 3
    run = RunContext(env, prog.env, lambda start, args: native.call_function(image, env, start, args, checked),
                     regions, native_stack=verified)
    with run_context.active(run):
        retval = native.run(image, env, memory.r1, memory.r2, repeat, checked)
    if env.status == Status.HELPER_FAILED:
        helper = prog.env.helpers.get(env.value)
        raise_for_status(env, run.errors[0] if run.errors else None, helper.name if helper else "")
    raise_for_status(env, regions=regions)
    return (0 if env.status == Status.UNWOUND else retval, *memory.read_out())


# --- bpf_conformance ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", conformance_params())
def test_conformance(path):
    case = conformance_case(path)
    prog = Program.from_bytes(asm.assemble(case.asm), helpers=conformance_helpers(),
                              verify=path.stem not in REJECTED_BY_THE_VERIFIER)
    assert run_native(prog, case.mem)[0] == case.result
    # the checked variant (a budget) gives the same, and so does the reference
    assert run_native(prog, case.mem, max_steps=1 << 40)[0] == case.result
    assert prog.run(case.mem, engine="reference") == case.result


# --- differential: random valid programs ----------------------------------------------------------

def check_against_reference(insns: list[Insn], mem: bytes) -> None:
    try:
        prog = Program.from_bytes(isa.encode(insns))
    except VerifierError as error:  # a valid loop of more trips than the kernel's budget walks
        if "BPF program is too large" not in error.message:
            raise
        prog = Program.from_bytes(isa.encode(insns), verify=False)
    expected = prog.test_run(mem, engine="reference", max_steps=MAX_STEPS)
    for max_steps in (None, MAX_STEPS):
        got = run_native(prog, mem, max_steps=max_steps)
        assert got == (expected.retval, expected.data_out), (
            f"native ({'checked' if max_steps else 'fast'}) r0={got[0]:#x} mem={got[1].hex()}\n"
            f"reference r0={expected.retval:#x} mem={expected.data_out.hex()}\n"
            f"input {mem.hex()}\n{prog.disassemble()}")


DIFFERENTIAL_PROGRAMS = 400


def test_differential_random_programs():
    rnd = random.Random(0x16)
    for _ in range(DIFFERENTIAL_PROGRAMS):
        insns, mem = random_case(rnd, rnd.randint(4, 28))
        check_against_reference(insns, mem)


@pytest.mark.slow
def test_differential_random_programs_slow():
    rnd = random.Random(0x1616)
    for _ in range(20 * DIFFERENTIAL_PROGRAMS):
        insns, mem = random_case(rnd, rnd.randint(4, 40))
        check_against_reference(insns, mem)


# --- the sandbox: unverified programs ------------------------------------------------------------

def same_error_but_the_address(prog: Program, data: bytes = bytes(8)) -> str:
    """The error of prog on both interpreters, which must agree but for the run's addresses."""
    messages = []
    for run in (lambda: run_native(prog, data), lambda: prog.run(data, engine="reference")):
        with pytest.raises(BPFRuntimeError) as error:
            run()
        messages.append(re.sub(r"0x[0-9a-f]+", "ADDR", str(error.value)))
    assert messages[0] == messages[1]
    return messages[0]


@pytest.mark.parametrize("text, message", [
    ("ldxdw %r0, [%r1+8]\nexit", "insn 0: invalid read of 8 bytes at ADDR"),
    ("ldxb %r0, [%r1-1]\nexit", "insn 0: invalid read of 1 bytes at ADDR"),
    ("stw [%r1+6], 1\nmov %r0, 0\nexit", "insn 0: invalid write of 4 bytes at ADDR"),
    ("mov %r2, 0\nldxh %r0, [%r2+0]\nexit", "insn 1: invalid read of 2 bytes at ADDR"),
    ("mov %r2, -1\nstxdw [%r2-7], %r2\nmov %r0, 0\nexit", "insn 1: invalid write of 8 bytes at ADDR"),
    ("ldxdw %r0, [%r10+0]\nexit", "insn 0: invalid read of 8 bytes at ADDR"),
    ("stxdw [%r10-520], %r1\nmov %r0, 0\nexit", "insn 0: invalid write of 8 bytes at ADDR"),
    ("mov %r2, 1\nlsh %r2, 40\nlock add32 [%r2+0], %r1\nmov %r0, 0\nexit", "insn 2: invalid write of 4 bytes at ADDR"),
])
def test_sandbox_refuses_accesses_outside_the_run(text, message):
    prog = Program.from_asm(text, verify=False)
    assert same_error_but_the_address(prog) == message


def test_sandbox_accepts_the_memory_and_a_callee_frame():
    # A callee reads its caller's stack through a pointer, and the program's memory: both live.
    prog = Program.from_asm("""
        stdw [%r10-8], 40
        mov %r2, %r10
        add %r2, -8
        call local func1
        exit
    func1:
        ldxdw %r0, [%r2+0]
        ldxb %r3, [%r1+7]
        add %r0, %r3
        exit
    """, verify=False)
    assert run_native(prog, bytes(7) + b"\x02")[0] == 42 == prog.run(bytes(7) + b"\x02", engine="reference")


# --- budgets, traps, calls, helpers ---------------------------------------------------------------

def test_step_budget_stops_where_the_reference_stops():
    prog = Program.from_asm("mov %r0, 0\nloop:\nadd %r0, 1\nja loop\nexit", verify=False)
    for budget in (1, 2, 3, 1000):
        with pytest.raises(BPFRuntimeError) as native:
            run_native(prog, max_steps=budget)
        with pytest.raises(BPFRuntimeError) as reference:
            prog.test_run(b"", engine="reference", max_steps=budget)
        assert str(native.value) == str(reference.value)
        assert f"instruction budget of {budget} exhausted" in str(native.value)


def test_the_stop_flag_ends_a_run():
    # The watchdog sets RunEnv.stop; a run already stopped ends at its first poll.
    prog = Program.from_asm("loop:\nja loop\nexit", verify=False)
    native = interpreter()
    image = build_image(prog.insns, prog.env, prog.facts.function_starts, ())
    helpers = HelperTable(prog.env, False)
    image.bind_helpers(helpers.address)
    env = RunEnv(timeout=1.0)
    env.stop = 1
    native.run(image, env, 0, 0, checked=True)
    assert (env.status, env.insn) == (Status.TIME_BUDGET, 0)


def test_a_legacy_packet_load_without_a_context_fails_as_on_the_reference():
    """r6 is no skb in an unverified raw program: the checked variant refuses the context read."""
    insns = [Insn(isa.LD | isa.ABS | isa.W, imm=0), Insn(isa.EXIT_OP)]
    prog = Program(insns, verify=False)
    assert same_error_but_the_address(prog) == "insn 0: invalid read of 8 bytes at ADDR"


def test_calls_keep_the_callers_registers_and_depth_is_limited():
    prog = Program.from_asm("""
        mov %r6, 7
        mov %r1, 5
        call local func1
        add %r0, %r6
        add %r0, %r1
        exit
    func1:
        mov %r6, 100
        mov %r0, %r1
        mov %r1, 1000
        exit
    """, verify=False)  # the verifier forbids reading r1 after a call: the reference keeps it
    assert run_native(prog)[0] == 17 == prog.run(b"", engine="reference")
    # f1 calls itself through a function pointer: only the run can stop it.
    deep = Program([Insn(isa.CALL_OP, src=isa.CALL_LOCAL, imm=1), Insn(isa.EXIT_OP),
                    *isa.lddw(2, -1, isa.PSEUDO_FUNC), Insn(isa.CALLX_OP, dst=2), Insn(isa.EXIT_OP)], verify=False)
    with pytest.raises(BPFRuntimeError) as native:
        run_native(deep)
    with pytest.raises(BPFRuntimeError) as reference:
        deep.run(b"", engine="reference")
    assert str(native.value) == str(reference.value) == "insn 4: more than 8 nested calls"


def test_callx_reaches_functions_and_helpers_or_fails():
    helpers = HelperRegistry([unwind_helper()])
    helpers.register(7, lambda a, b, c, d, e: a * 3)
    prog = Program.from_asm("mov %r1, 14\nmov %r2, 7\ncall %r2\nexit", helpers=helpers, verify=False)
    assert run_native(prog)[0] == 42
    bad = Program.from_asm("mov %r2, 1234\ncall %r2\nexit", helpers=helpers, verify=False)
    with pytest.raises(BPFRuntimeError, match="insn 1: callx to 0x4d2, which is neither"):
        run_native(bad)


def test_a_failing_helper_names_its_call_and_unwind_stops():
    helpers = HelperRegistry([unwind_helper()])
    helpers.register(9, lambda a, b, c, d, e: 1 // 0, name="boom")
    prog = Program.from_asm("mov %r0, 1\ncall 9\nexit", helpers=helpers)
    with pytest.raises(BPFRuntimeError, match=r"insn 1: helper 9 \(boom\) failed: ZeroDivisionError"):
        run_native(prog)
    unwinding = Program.from_asm("mov %r1, 0\ncall 5\nmov %r0, 9\nexit", helpers=helpers)
    assert run_native(unwinding)[0] == 0 == unwinding.run(b"", engine="reference")


def test_static_branches_follow_their_key():
    prog = Program.from_asm("mov %r0, 1\ngoto_or_nop +1\nmov %r0, 2\nexit")
    key = prog.declare_static_key("k", [1])
    for enabled in (False, True):
        key.set(enabled)
        expected = prog.run(b"", engine="reference")
        assert run_native(prog)[0] == expected


def test_repeat_runs_in_the_native_loop_on_the_same_memory():
    prog = Program.from_asm("ldxdw %r0, [%r1+0]\nadd %r0, 1\nstxdw [%r1+0], %r0\nexit")
    assert run_native(prog, bytes(8), repeat=1000) == (1000, (1000).to_bytes(8, "little"))


def test_both_dispatch_forms_agree():
    prog = Program.from_asm("mov %r0, 3\nloop:\nmul %r0, 3\njlt %r0, 1000, loop\nexit")
    assert {run_native(prog, native=NativeInterpreter(dispatch))[0]
            for dispatch in (DISPATCH_INDIRECT, DISPATCH_SWITCH)} == {2187}


# --- hostile programs, unverified, in a child process (a sandbox hole must not kill the tests) ---

HOSTILE_CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])
    os.environ["BPFJIT_CACHE"] = "off"
    from test_native_interp import hostile_child
    hostile_child(int(sys.argv[2]), [int(seed) for seed in sys.argv[3:]])
""")


def hostile_child(max_steps: int, seeds: list[int]) -> None:
    """In the child: each hostile case unverified on the checked variant and on the reference.
    Unverified programs may leak the run's addresses into r0 and memory, and those differ between
    runs: the engines must agree on how each run ended (a result, or an error at one insn)."""
    from hostile_programs import Maps, build, make_case, run_once
    from bpfjit.errors import DecodeError, ProgramError
    maps = Maps()
    for seed in seeds:
        print("case", seed, flush=True)
        case = make_case(seed)
        try:
            prog = build(case, maps, verify=False)
        except (DecodeError, ProgramError):  # not even structurally a program
            continue
        for data in case.inputs:
            reference = run_once(prog, maps, case, data, "reference", max_steps=max_steps)
            native = native_outcome(prog, maps, case, data, max_steps)
            print("error" if native.error is not None else "result", flush=True)
            if (native.error is None, native.error_at) != (reference.error is None, reference.error_at):
                print(f"MISMATCH seed {seed}: native {native} reference {reference}", flush=True)
    print("done", flush=True)


def native_outcome(prog: Program, maps, case, data: bytes, max_steps: int):
    """hostile_programs.run_once on the native interpreter."""
    from hostile_programs import Outcome
    maps.fill(case.map_seed)
    try:
        retval, data_out, ctx_out = run_native_ctx(prog, data, max_steps=max_steps, ctx=case.ctx)
    except BPFRuntimeError as error:
        return Outcome(None, None, None, None, error.reason, error.index)
    return Outcome(retval, data_out, ctx_out, maps.dump())


def hostile_campaign(seed: int, count: int) -> list[str]:
    rnd = random.Random(seed)
    seeds = [rnd.getrandbits(48) for _ in range(count)]
    proc = subprocess.run([sys.executable, "-c", HOSTILE_CHILD, str(pathlib.Path(__file__).parent), "20000",
                           *map(str, seeds)], capture_output=True, text=True, timeout=120 + 2 * count)
    lines = proc.stdout.splitlines()
    culprit = next((line for line in reversed(lines) if line.startswith("case ")), "(none)")
    assert proc.returncode == 0 and lines[-1:] == ["done"], (
        f"the child ended with {proc.returncode} in {culprit}\n{proc.stderr[-3000:]}")
    mismatches = [line for line in lines if line.startswith("MISMATCH")]
    assert not mismatches, "\n".join(mismatches[:5])
    return lines


def test_hostile_programs_never_crash_the_checked_variant():
    kinds = [line for line in hostile_campaign(0x16_5A4D, 200) if line in ("error", "result")]
    assert kinds.count("error") >= 50 and kinds.count("result") >= 50, {k: kinds.count(k) for k in set(kinds)}


# --- ns per run on the bench's programs (-m slow prints the table) ------------------------------

def per_run_ns(run, repeat: int) -> float:
    """Best of three: the mean wall time per run of run(repeat)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter_ns()
        run(repeat)
        best = min(best, (time.perf_counter_ns() - start) / repeat)
    return best


def bench_rows() -> list[tuple[str, dict[str, float]]]:
    """Each micro-suite program on its interpreter-sized input: ns per run on the native
    interpreter (both dispatch forms), the reference interpreter and the JIT; results checked."""
    import bpfjit
    from bench.cases import MICRO_CASES
    natives = {dispatch: NativeInterpreter(dispatch) for dispatch in (DISPATCH_INDIRECT, DISPATCH_SWITCH)}
    rows = []
    for case in MICRO_CASES:
        prog = bpfjit.load(case.object_path(), programs=[case.function]).programs[case.function]
        data = case.interp_data()
        expected = case.expected(data)
        assert prog.test_run(data, engine="jit").retval == expected
        reference = prog.test_run(data, engine="reference")
        assert reference.retval == expected
        repeat = max(1, int(2e8 // max(reference.duration_ns, 1)))  # ~0.2 s of reference time per round
        times = {}
        for dispatch, native in natives.items():
            assert run_native(prog, data, native=native)[0] == expected
            times[dispatch] = per_run_ns(
                lambda n, prog=prog, data=data, native=native: run_native(prog, data, repeat=n, native=native),
                1000 * repeat)
        times["reference"] = reference.duration_ns
        times["jit"] = per_run_ns(lambda n, prog=prog, data=data: prog.test_run(data, repeat=n), 1000 * repeat)
        rows.append((case.name, times))
    return rows


@pytest.mark.slow
def test_bench_native_interpreter(capsys):
    rows = bench_rows()
    with capsys.disabled():
        print(f"\n{'program':<16}{'indirectbr':>12}{'switch':>12}{'reference':>14}{'jit':>10}  (ns per run)")
        for name, t in rows:
            print(f"{name:<16}{t[DISPATCH_INDIRECT]:>12.0f}{t[DISPATCH_SWITCH]:>12.0f}{t['reference']:>14.0f}"
                  f"{t['jit']:>10.0f}")
    for name, t in rows:  # the native loop is far from the Python reference on every program
        assert t[DISPATCH_INDIRECT] * 20 < t["reference"], name
