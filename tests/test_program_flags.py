"""Program flags, BPF_PROG_LOAD's prog_flags, set before load as libbpf's bpf_program__set_flags
(``bpfjit.load(program_flags=...)``, ``--prog-flags``), with the flags libbpf's section
definitions add at load (``xdp.frags``: BPF_F_XDP_HAS_FRAGS; ``syscall``, ``uprobe.s``:
BPF_F_SLEEPABLE), checked as Linux 6.18 checks them (bpfjit/program.py check_program_flags has
the table). The kernel-marked tests load the same programs with the same flags through the kernel
engine and compare the outcomes.

tests/progs/prog_flags.c: frags (xdp.frags) and linear (xdp) return the frame's whole length; sys
(syscall) and sleepy (uprobe.s) count their calls in an array; route (``?untyped``, typed by the
tests) looks a key up in an LPM trie, a map sleepable programs may not use.
"""
from __future__ import annotations

import errno
import json
import pathlib

import pytest

import bpfjit
from bpfjit import BPFError, verdicts
from bpfjit.cli import main
from bpfjit.errors import ProgramFlagsError
from bpfjit.program import Program
from bpfjit.runtime.context import PROGRAM_TYPES
from bpfjit.program_flags import (
    BPF_F_ANY_ALIGNMENT,
    BPF_F_SLEEPABLE,
    BPF_F_STRICT_ALIGNMENT,
    BPF_F_TEST_REG_INVARIANTS,
    BPF_F_TEST_RND_HI32,
    BPF_F_TEST_STATE_FREQ,
    BPF_F_TOKEN_FD,
    BPF_F_XDP_DEV_BOUND_ONLY,
    BPF_F_XDP_HAS_FRAGS,
    MAY_NOT_SLEEP_MESSAGE,
    MUST_SLEEP_MESSAGE,
    SLEEPABLE_MAP_MESSAGE,
)

OBJECT = str(pathlib.Path(__file__).parent / "progs" / "prog_flags.o")
# Carried flags: the kernel takes them and nothing bpfjit runs would show them.
CARRIED = BPF_F_ANY_ALIGNMENT | BPF_F_TEST_RND_HI32 | BPF_F_TEST_STATE_FREQ | BPF_F_XDP_HAS_FRAGS | \
    BPF_F_XDP_DEV_BOUND_ONLY
BIG_FRAME = bytes(range(256)) * 20  # 5,120 bytes: past 3,520, a test run gives XDP frags


def load_route(prog_type: str, flags: int | None = None):
    """The LPM-trie program as a program of this type, with these flags."""
    return bpfjit.load(OBJECT, programs=["route"], program_types={"route": prog_type},
                       program_flags=None if flags is None else {"route": flags})


# --- the flags a load gives ---------------------------------------------------------------------

def test_sections_give_libbpfs_flags():
    obj = bpfjit.load(OBJECT)
    assert {name: p.flags for name, p in obj.programs.items()} == {
        "frags": BPF_F_XDP_HAS_FRAGS, "linear": 0, "sys": BPF_F_SLEEPABLE, "sleepy": BPF_F_SLEEPABLE}


@pytest.mark.parametrize("program,flags,expected", [
    ("linear", CARRIED, CARRIED),
    ("linear", BPF_F_STRICT_ALIGNMENT | BPF_F_ANY_ALIGNMENT, 0x3),  # ANY cancels STRICT, in the kernel too
    ("frags", BPF_F_TEST_RND_HI32, BPF_F_XDP_HAS_FRAGS | BPF_F_TEST_RND_HI32),
    # libbpf adds the section's at load, whatever bpf_program__set_flags set (the kernel test shows
    # the kernel loading sys with flags 0: without BPF_F_SLEEPABLE it would refuse a syscall program)
    ("sys", 0, BPF_F_SLEEPABLE),
    ("frags", 0, BPF_F_XDP_HAS_FRAGS),
])
def test_flags_set_before_load_replace_the_set_ones_and_keep_the_sections(program, flags, expected):
    obj = bpfjit.load(OBJECT, programs=[program], program_flags={program: flags})
    assert obj.programs[program].flags == expected


def test_another_type_drops_the_sections_flags_as_libbpf_1_2_does():
    """bpf_program__set_type with another type drops the section's definition, and its flags."""
    assert bpfjit.load(OBJECT, programs=["sleepy"], program_types={"sleepy": "kprobe"}).programs["sleepy"].flags \
        == BPF_F_SLEEPABLE  # the same type: the section stands
    moved = bpfjit.load(OBJECT, programs=["sleepy"], program_types={"sleepy": "tracepoint"}).programs["sleepy"]
    assert moved.flags == 0 and moved.test_run(ctx=bytes(64)).retval == 1


def test_a_program_made_alone_takes_its_types_default():
    assert Program.from_asm("mov %r0, 0\nexit", "syscall").flags == BPF_F_SLEEPABLE
    assert Program.from_asm("mov %r0, 0\nexit", "kprobe").flags == 0
    assert Program.from_asm("mov %r0, 0\nexit", "kprobe", flags=BPF_F_SLEEPABLE).flags == BPF_F_SLEEPABLE
    with pytest.raises(ProgramFlagsError) as caught:
        Program.from_asm("mov %r0, 0\nexit", "syscall", flags=0)
    assert caught.value.errno == errno.EINVAL and MUST_SLEEP_MESSAGE in str(caught.value)
    # Without the verifier the verifier's rules do not apply; BPF_PROG_LOAD's own still do.
    assert Program.from_asm("mov %r0, 0\nexit", "syscall", flags=0, verify=False).flags == 0
    with pytest.raises(ProgramFlagsError):
        Program.from_asm("mov %r0, 0\nexit", "raw", flags=0x100, verify=False)


def test_carried_flags_change_no_test_run(engine):
    """A frame past 3,520 bytes has frags whether or not the program says it handles them: the
    kernel's test run builds them either way (the kernel test measures it)."""
    obj = bpfjit.load(OBJECT, programs=["frags", "linear"], program_flags={"linear": CARRIED})
    assert (obj.programs["frags"].flags, obj.programs["linear"].flags) == (BPF_F_XDP_HAS_FRAGS, CARRIED)
    for name in ("frags", "linear"):
        assert obj.programs[name].test_run(BIG_FRAME, engine=engine).retval == len(BIG_FRAME)
        assert obj.programs[name].test_run(BIG_FRAME[:100], engine=engine).retval == 100


def test_a_sleepable_program_may_use_an_array():
    obj = bpfjit.load(OBJECT, programs=["sys", "sleepy"])
    assert obj.programs["sys"].test_run(ctx=bytes(8)).retval == 1
    assert obj.programs["sleepy"].test_run(ctx=bytes(168)).retval == 2
    assert load_route("kprobe", 0).programs["route"].test_run(ctx=bytes(168)).retval == 0  # not sleepable: the trie


def test_the_verdict_cache_keys_hold_the_flags(monkeypatch):
    asked = []
    lookup = verdicts.lookup
    monkeypatch.setattr(verdicts, "lookup", lambda key: asked.append(key) or lookup(key))
    bpfjit.load(OBJECT, programs=["linear"])
    bpfjit.load(OBJECT, programs=["linear"], program_flags={"linear": BPF_F_TEST_STATE_FREQ})
    bpfjit.load(OBJECT, programs=["linear"])
    assert len(asked) == 3 and asked[0] != asked[1] and asked[0] == asked[2]


# --- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("program,prog_type,flags,code,bits,words", [
    ("linear", None, 0x100, errno.EINVAL, 0x100, "BPF_PROG_LOAD takes no flag 0x100"),
    ("linear", None, 1 << 31, errno.EINVAL, 1 << 31, "BPF_PROG_LOAD takes no flag 0x80000000"),
    ("linear", None, BPF_F_TOKEN_FD | 0x200, errno.EINVAL, BPF_F_TOKEN_FD | 0x200,
     "BPF_PROG_LOAD takes no flag 0x200; BPF_F_TOKEN_FD needs a BPF token's fd, which a load here is not given"),
    ("linear", None, BPF_F_SLEEPABLE, errno.EINVAL, BPF_F_SLEEPABLE,
     f"BPF_F_SLEEPABLE on program type xdp: {MAY_NOT_SLEEP_MESSAGE}"),
    ("linear", None, BPF_F_STRICT_ALIGNMENT, errno.EOPNOTSUPP, BPF_F_STRICT_ALIGNMENT,
     "BPF_F_STRICT_ALIGNMENT: the kernel's verifier would then check the alignment of every pointer access"),
    ("linear", None, BPF_F_TEST_REG_INVARIANTS | BPF_F_ANY_ALIGNMENT, errno.EOPNOTSUPP, BPF_F_TEST_REG_INVARIANTS,
     "BPF_F_TEST_REG_INVARIANTS: the kernel's verifier would then fail the load (EFAULT)"),
    ("route", "kprobe", BPF_F_SLEEPABLE, errno.EINVAL, BPF_F_SLEEPABLE,
     f"names map routes (LPM_TRIE): {SLEEPABLE_MAP_MESSAGE}"),
    ("route", "syscall", None, errno.EINVAL, BPF_F_SLEEPABLE,
     f"program type syscall without BPF_F_SLEEPABLE: {MUST_SLEEP_MESSAGE}"),
    # the kernel checks the maps first (check_map_prog_compatibility, then check_attach_btf_id)
    ("route", "xdp", BPF_F_SLEEPABLE, errno.EINVAL, BPF_F_SLEEPABLE, SLEEPABLE_MAP_MESSAGE),
])
def test_flags_a_load_refuses_raise_with_their_errno(program, prog_type, flags, code, bits, words):
    with pytest.raises(ProgramFlagsError) as caught:
        bpfjit.load(OBJECT, programs=[program], program_types={program: prog_type} if prog_type else None,
                    program_flags=None if flags is None else {program: flags})
    error = caught.value
    assert (error.errno, error.flags, error.program) == (code, bits, program)
    message = str(error)
    assert message.startswith(f"prog_flags.o: program '{program}': prog_flags ")
    assert words in message
    assert message.endswith("(EINVAL)" if code == errno.EINVAL else "so bpfjit refuses the flag rather than ignore "
                            "it (EOPNOTSUPP)")


@pytest.mark.parametrize("flags,message", [
    ({"nope": 1}, "program_flags names no program 'nope' (programs: frags, linear, sys, sleepy, route)"),
    ({"linear": -1}, "program 'linear': flags must be an unsigned 32-bit int, got -1"),
    ({"linear": 1 << 32}, "program 'linear': flags must be an unsigned 32-bit int, got 4294967296"),
    ({"linear": "0x20"}, "program 'linear': flags must be an unsigned 32-bit int, got '0x20'"),
    ({"linear": True}, "program 'linear': flags must be an unsigned 32-bit int, got True"),
])
def test_bad_program_flags_get_a_clear_error(flags, message):
    with pytest.raises(BPFError) as caught:
        bpfjit.load(OBJECT, program_flags=flags)
    assert str(caught.value) == f"prog_flags.o: {message}"


# --- the command line ---------------------------------------------------------------------------

def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_prog_list_shows_the_flags(capsys):
    code, out, _ = run_cli(capsys, "prog", "list", OBJECT)
    assert code == 0
    assert [line.split("  ")[5] for line in out.splitlines()] == ["flags 0x20", "flags 0x0", "flags 0x10",
                                                                  "flags 0x10"]
    code, out, _ = run_cli(capsys, "prog", "list", OBJECT, "--json",
                           "--prog-flags", "linear=any_alignment|TEST_RND_HI32", "--prog-flags", "frags=0x40")
    assert code == 0
    assert {r["name"]: r["flags"] for r in json.loads(out)} == {
        "frags": BPF_F_XDP_HAS_FRAGS | BPF_F_XDP_DEV_BOUND_ONLY, "linear": BPF_F_ANY_ALIGNMENT | BPF_F_TEST_RND_HI32,
        "sys": BPF_F_SLEEPABLE, "sleepy": BPF_F_SLEEPABLE}


def test_prog_flags_option_on_a_run(capsys):
    code, out, _ = run_cli(capsys, "run", OBJECT, "-p", "linear", "--data-hex", BIG_FRAME[:64].hex(), "--json",
                           "--prog-flags", "linear=BPF_F_XDP_HAS_FRAGS,bpf_f_test_state_freq")
    assert code == 0 and json.loads(out)["retval"] == 64


@pytest.mark.parametrize("argv,message", [
    (["--prog-flags", "linear"], "--prog-flags 'linear': expected PROG=FLAGS"),
    (["--prog-flags", "linear=frags"], "--prog-flags 'linear=frags': 'frags' is neither an integer nor a flag"),
    (["--prog-flags", "linear=0x100"], "program 'linear': prog_flags 0x100: BPF_PROG_LOAD takes no flag 0x100 "
                                       "(EINVAL)"),
    (["--prog-flags", "linear=strict_alignment"], "(EOPNOTSUPP)"),
])
def test_bad_prog_flags_options(capsys, argv, message):
    code, _, err = run_cli(capsys, "prog", "list", OBJECT, *argv)
    assert code == 1 and message in err


# --- against the kernel -------------------------------------------------------------------------

def kernel_outcome(program: str, flags: int | None = None, prog_type: str | None = None) -> tuple[int, str]:
    """(0, "") if the kernel engine loads the program with these flags (and type), else (errno, the
    last lines of its logs)."""
    from bpfjit.kernel import kernel_test_runs
    types = {program: PROGRAM_TYPES[prog_type].kernel_type} if prog_type else None
    try:
        kernel_test_runs(OBJECT, program, [], program_flags=None if flags is None else {program: flags},
                         program_types=types, read_maps=())
    except bpfjit.KernelEngineError as error:
        return error.errno, (error.verifier_log or "") + error.libbpf_log
    return 0, ""


def bpfjit_outcome(program: str, flags: int | None = None, prog_type: str | None = None) -> tuple[int, str]:
    try:
        bpfjit.load(OBJECT, programs=[program], program_types={program: prog_type} if prog_type else None,
                    program_flags=None if flags is None else {program: flags})
    except ProgramFlagsError as error:
        return error.errno, str(error)
    return 0, ""


@pytest.mark.kernel
def test_the_kernel_takes_the_flags_bpfjit_takes_and_refuses_those_it_refuses(kernel_engine):
    """Every bit of prog_flags on an XDP program: what bpfjit takes the kernel takes, what bpfjit
    refuses with EINVAL the kernel refuses with EINVAL, and what bpfjit refuses with EOPNOTSUPP
    (the kernel's effect is not bpfjit's) the kernel takes."""
    outcomes = {}
    for bit in range(32):
        ours, theirs = bpfjit_outcome("linear", 1 << bit)[0], kernel_outcome("linear", 1 << bit)[0]
        outcomes[1 << bit] = (ours, theirs)
        assert theirs == (0 if ours == errno.EOPNOTSUPP else ours), f"bit {bit}: bpfjit {ours}, kernel {theirs}"
    assert {flag for flag, (ours, _) in outcomes.items() if ours == 0} == {
        BPF_F_ANY_ALIGNMENT, BPF_F_TEST_RND_HI32, BPF_F_TEST_STATE_FREQ, BPF_F_XDP_HAS_FRAGS, BPF_F_XDP_DEV_BOUND_ONLY}
    assert kernel_outcome("linear", CARRIED | BPF_F_STRICT_ALIGNMENT)[0] == bpfjit_outcome(
        "linear", CARRIED | BPF_F_STRICT_ALIGNMENT)[0] == 0


@pytest.mark.kernel
@pytest.mark.parametrize("program,prog_type,flags,words", [
    ("sys", None, 0, ""),  # libbpf adds the section's BPF_F_SLEEPABLE: the kernel loads it
    ("sleepy", None, None, ""),
    ("frags", None, BPF_F_SLEEPABLE, MAY_NOT_SLEEP_MESSAGE),
    ("route", "kprobe", 0, ""),
    ("route", "kprobe", BPF_F_SLEEPABLE, SLEEPABLE_MAP_MESSAGE),
    ("route", "syscall", None, MUST_SLEEP_MESSAGE),
    ("route", "syscall", BPF_F_SLEEPABLE, SLEEPABLE_MAP_MESSAGE),
    ("route", "xdp", BPF_F_SLEEPABLE, SLEEPABLE_MAP_MESSAGE),
    ("route", "raw_tp", BPF_F_SLEEPABLE, SLEEPABLE_MAP_MESSAGE),
    ("route", "socket", BPF_F_XDP_HAS_FRAGS | BPF_F_XDP_DEV_BOUND_ONLY, ""),  # any type takes them
])
def test_the_kernel_applies_the_sleepable_rules_as_bpfjit_does(kernel_engine, program, prog_type, flags, words):
    ours, why = bpfjit_outcome(program, flags, prog_type)
    theirs, log = kernel_outcome(program, flags, prog_type)
    assert ours == theirs == (errno.EINVAL if words else 0)
    assert words in why and words in log


@pytest.mark.kernel
def test_frags_change_no_test_run_in_the_kernel_either(kernel_engine):
    from bpfjit.kernel import KernelRun, kernel_test_runs
    obj = bpfjit.load(OBJECT, programs=["frags", "linear"])
    for name, flags in (("frags", None), ("linear", None), ("linear", BPF_F_XDP_HAS_FRAGS)):
        runs = kernel_test_runs(OBJECT, name, [KernelRun(BIG_FRAME), KernelRun(BIG_FRAME[:100])], read_maps=(),
                                program_flags=None if flags is None else {name: flags})
        assert [r.retval for r in runs.results] == [len(BIG_FRAME), 100]
        assert [obj.programs[name].test_run(frame).retval for frame in (BIG_FRAME, BIG_FRAME[:100])] == \
            [len(BIG_FRAME), 100]


@pytest.mark.kernel
def test_the_kernel_engine_takes_prog_flags_from_the_command_line(kernel_engine, capsys):
    code, out, _ = run_cli(capsys, "run", OBJECT, "-p", "linear", "--engine", "kernel", "--json",
                           "--data-hex", BIG_FRAME[:64].hex(), "--prog-flags", "linear=xdp_has_frags|test_rnd_hi32")
    assert code == 0 and json.loads(out)["retval"] == 64
