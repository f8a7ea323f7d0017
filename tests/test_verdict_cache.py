"""Verdicts are cached with the code: a program accepted before is not verified again, and
anything the verdict depends on (the program, a helper's prototype, a frozen value the verifier
folded) makes another entry."""
from __future__ import annotations

import pathlib

import pytest

import bpfjit
from bpfjit.object import program_names
from bpfjit.program import Program
from bpfjit.runtime.helpers import Helper, HelperRegistry, Prototype
from bpfjit.verifier import verify as verify_module

PROGS = pathlib.Path(__file__).parent / "progs"

LOOP = """
    mov %r0, 0
    mov %r1, 0
    add %r0, %r1
    add %r1, 1
    jlt %r1, 20, -3
    exit
"""


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> pathlib.Path:
    monkeypatch.setenv("BPFJIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("BPFJIT_CACHE", raising=False)
    return tmp_path


@pytest.fixture
def verifications(monkeypatch) -> list[int]:
    """Counts the verifier's runs."""
    calls: list[int] = []
    real = verify_module.Verifier.run

    def counted(self):
        calls.append(1)
        return real(self)
    monkeypatch.setattr(verify_module.Verifier, "run", counted)
    return calls


def test_an_accepted_program_is_verified_once(cache_dir, verifications):
    first = Program.from_asm(LOOP)
    second = Program.from_asm(LOOP)
    assert len(verifications) == 1
    assert second.verification.stats.insns_processed == first.verification.stats.insns_processed
    assert second.run(b"") == first.run(b"") == sum(range(20))
    assert list(cache_dir.glob("*.verdict"))


def test_another_program_is_verified_again(cache_dir, verifications):
    Program.from_asm(LOOP)
    Program.from_asm(LOOP.replace("20", "21"))
    assert len(verifications) == 2


def test_a_helper_prototype_is_part_of_the_key(cache_dir, verifications):
    text = "mov %r1, 1\ncall 99\nexit"

    def registry(args: tuple[str, ...]) -> HelperRegistry:
        return HelperRegistry([Helper(99, "h", lambda *a: 7, Prototype("integer", args))])
    Program.from_asm(text, helpers=registry(("any",)))
    Program.from_asm(text, helpers=registry(("any", "any")))
    assert len(verifications) == 2


def test_rejections_are_not_cached(cache_dir, verifications):
    for _ in range(2):
        with pytest.raises(bpfjit.VerifierError):
            Program.from_asm("exit")
    assert not list(cache_dir.glob("*.verdict"))


def test_frozen_rodata_is_part_of_the_key(cache_dir, verifications):
    """The verifier folds loads from frozen .rodata (globals.c's ``factor``): another value,
    another verdict; the same value, a hit."""
    path = PROGS / "globals.o"
    name = [n for n in program_names(path) if n != "prog_a"][0]
    bpfjit.load(path, programs=[name], rodata={"factor": 3})
    bpfjit.load(path, programs=[name], rodata={"factor": 3})
    assert len(verifications) == 1
    bpfjit.load(path, programs=[name], rodata={"factor": 4})
    assert len(verifications) == 2
