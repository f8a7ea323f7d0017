"""The compiler at scale and when it fails (issue 12). Compile cost grows about linearly with a
program's size: switch recovery tries each compare as a root at most once, and large modules
take a short pass pipeline. Times are measured in the bench, not asserted here: these tests check
the mechanisms and that the code they give is right. A bug of the lowering names the
instruction it was lowering."""
from __future__ import annotations

import pytest

from bpfjit.bench.scaling import early_returns
from bpfjit.errors import JITError
from bpfjit.jit import engine, switches
from bpfjit.program import Program

ENTRIES = [(0, 0), (1, 1), (1499, 1499), (777, 777), (1500, -1), (1 << 40, -1)]


def test_a_chain_too_large_for_a_switch_is_walked_once(monkeypatch):
    monkeypatch.setattr(switches, "MAX_CASES", 100)
    calls = []
    recover = switches._recover
    monkeypatch.setattr(switches, "_recover", lambda *args: calls.append(args[1]) or recover(*args))
    program = Program(early_returns(300))
    assert switches.find_switches(program.insns, 0, len(program.insns), program.facts) == {}
    assert calls == [1]  # the root; every compare under it is not tried again


def test_a_long_chain_is_one_switch():
    program = Program(early_returns(1500))
    found = switches.find_switches(program.insns, 0, len(program.insns), program.facts)
    assert list(found) == [1] and len(found[1].cases) == 1500


@pytest.mark.parametrize("large", [False, True])
def test_large_modules_take_the_short_pipeline_and_stay_right(monkeypatch, large):
    """The same program through O2 and through the large-module pipeline (forced by lowering the
    threshold), with the object-code cache off so that both really compile."""
    monkeypatch.setenv("BPFJIT_CACHE", "off")
    monkeypatch.setattr(engine, "LARGE_MODULE_BLOCKS", 0 if large else 1 << 30)
    taken = []
    run = engine.llvm.create_new_module_pass_manager
    monkeypatch.setattr(engine.llvm, "create_new_module_pass_manager", lambda: taken.append(1) or run())
    program = Program(early_returns(1500))
    for value, expected in ENTRIES:
        memory = value.to_bytes(8, "little")
        assert program.run(memory) == expected & (1 << 64) - 1 == program.run(memory, engine="reference")
    assert bool(taken) == large


def test_a_lowering_bug_names_the_instruction(monkeypatch):
    from bpfjit.jit.lower import _FunctionLowering
    program = Program.from_asm("mov %r0, 1\nexit")
    monkeypatch.setattr(_FunctionLowering, "lower_alu", lambda *args: 1 // 0)
    with pytest.raises(JITError, match=r"insn 0 \(r0 = 0x1\): lowering failed: ZeroDivisionError"):
        program.compile()


def test_the_scaling_bench_times_a_chain_and_the_import():
    from bpfjit.bench import scaling
    result = scaling.compile_chain(20, rounds=1)
    assert (result.compares, result.instructions) == (20, 63)
    assert result.verify_seconds > 0 and result.compile_seconds > 0
    assert 0 < scaling.import_ms(rounds=1) < 10_000
