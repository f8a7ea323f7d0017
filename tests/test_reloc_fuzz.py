"""Corrupted relocation tables never get past the loader as a half-linked program.

Each case takes a committed object of tests/progs, damages the relocation tables (an entry's
r_offset or r_info: moved, bit-flipped, pointed at another symbol, given another type, swapped),
and checks the contract of the loader:

* ``elf.read_object`` and ``bpfjit.load`` either raise a ``BPFError`` (an ``ObjectError`` names
  the file), or give programs in which every relocated instruction (by the damaged tables, read
  here independently) became a pseudo source or a bpf-to-bpf call, no unrelocated ld_imm64 has a
  pseudo source, and every map index, data offset, function and call target is valid;
* every program of a loaded object runs on the interpreter over a 64-byte packet to a result or
  a ``BPFError``.

Before the loader checked relocations, some of these cases crashed the process: an ld_imm64 left
unpatched kept its immediate, which a helper then used as an address. So the campaign runs in a
child process, and a crash fails the test with the case that caused it instead of killing the
test run. The cases are seeded: a failure message says how to rebuild its object.
"""
from __future__ import annotations

import json
import random
import selectors
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from test_elf_loader import REL, rel_entries, rel_tables

TESTS = Path(__file__).resolve().parent
OBJECTS = sorted((TESTS / "progs").glob("*.o"))
FUZZ_SEED = 0x7E10C
DEFAULT_CASES = 13 * 24  # about 24 a committed object
SLOW_CASES = 13 * 400
MAX_STEPS = 200_000
TYPES = (0, 1, 2, 3, 4, 10)  # R_BPF_NONE, 64_64, ABS64, ABS32, NODYLD32, 64_32
UNREAD = (".rel.BTF", ".rel.BTF.ext", ".rel.debug")  # tables the loader leaves alone, as libbpf


# --- the cases ------------------------------------------------------------------------------------

def _mutate(rng: random.Random, data: bytes, name: str) -> tuple[list[tuple[int, str]], str]:
    """One damaged relocation entry (sometimes two swapped): byte edits (file offset, hex) and
    what they do, in words."""
    tables = [t for t in rel_tables(data).values() if t.count]
    read = [t for t in tables if not t.name.startswith(UNREAD)]
    table = rng.choice(read if read and rng.random() < 0.85 else tables)
    entries = rel_entries(data, table)
    number = rng.randrange(table.count)
    offset, symbol, rtype = entries[number]
    at = table.at + number * REL.size
    kind = rng.choice(("offset16", "offset-bit", "offset-near", "offset-other", "symbol", "symbol-bit", "type",
                       "swap-info", "byte"))
    new_offset, new_symbol, new_type = offset, symbol, rtype
    if kind == "offset16":  # the campaign's two-byte edit
        new_offset = (offset & ~0xFFFF) | rng.randrange(0x10000)
    elif kind == "offset-bit":
        new_offset = offset ^ (1 << rng.randrange(64))
    elif kind == "offset-near":
        new_offset = max(0, offset + rng.choice((-16, -8, -4, -1, 1, 4, 8, 16)))
    elif kind == "offset-other":
        new_offset = rng.choice(entries)[0]
    elif kind == "symbol":
        new_symbol = rng.randrange(max(entry[1] for entry in entries) + 8)
    elif kind == "symbol-bit":
        new_symbol = symbol ^ (1 << rng.randrange(32))
    elif kind == "type":
        new_type = rng.choice(TYPES) if rng.random() < 0.8 else rng.randrange(256)
    elif kind == "swap-info" and table.count > 1:
        other = rng.randrange(table.count)
        o_offset, o_symbol, o_type = entries[other]
        edits = [(at, REL.pack(offset, o_symbol << 32 | o_type).hex()),
                 (table.at + other * REL.size, REL.pack(o_offset, symbol << 32 | rtype).hex())]
        return edits, f"{name} {table.name}: r_info of #{number} and #{other} swapped"
    else:  # "byte" (or a swap in a one-entry table): one byte of the entry overwritten
        byte = rng.randrange(REL.size)
        entry = bytearray(data[at:at + REL.size])
        entry[byte] = rng.randrange(256)
        return [(at, entry.hex())], f"{name} {table.name} #{number}: byte {byte} := {entry[byte]:#04x}"
    edits = [(at, REL.pack(new_offset, new_symbol << 32 | new_type).hex())]
    return edits, (f"{name} {table.name} #{number}: offset {offset:#x}->{new_offset:#x}, symbol {symbol}->"
                   f"{new_symbol}, type {rtype}->{new_type}")


def make_cases(count: int, seed: int = FUZZ_SEED) -> list[dict]:
    """count cases over every committed object in turn; the same seed gives the same cases."""
    rng = random.Random(seed)
    images = {path: path.read_bytes() for path in OBJECTS}
    cases = []
    for index in range(count):
        path = OBJECTS[index % len(OBJECTS)]
        edits, what = [], []
        for _ in range(1 if rng.random() < 0.8 else 2):
            more, words = _mutate(rng, images[path], path.name)
            edits += more
            what.append(words)
        cases.append({"object": str(path), "edits": edits, "what": "; ".join(what)})
    return cases


# --- what the child checks for each case -----------------------------------------------------------

def check_linked(linked, data: bytes) -> None:
    """Every relocated instruction was patched, to a valid target; nothing else was."""
    from bpfjit import isa
    from bpfjit.runtime.kfuncs import is_kfunc_call
    code_relocations = {(table.target, offset // 8) for table in rel_tables(data).values()
                        if not table.name.startswith(UNREAD) for offset, _, _ in rel_entries(data, table)}
    maps = set(linked.map_symbols)
    sizes = {d.name: len(d.image) for d in linked.data_sections}
    for prog in linked.programs:
        starts = set(prog.function_tokens.values())
        for index in isa.slots(prog.insns):
            insn, where = prog.insns[index], f"{prog.name} insn {index} (from {prog.origins[index]})"
            relocated = prog.origins[index] in code_relocations
            assert not relocated or insn.is_lddw or insn.is_local_call or is_kfunc_call(insn), \
                f"{where}: relocated {insn}"
            if insn.is_lddw:
                assert (insn.src != 0) == relocated, f"{where}: relocated={relocated} but {insn}"
                if insn.src == isa.PSEUDO_MAP_IDX:
                    assert linked.map_names[insn.imm] in maps, f"{where}: {insn}"
                elif insn.src == isa.PSEUDO_MAP_IDX_VALUE:
                    assert insn.next_imm < sizes[linked.map_names[insn.imm]], f"{where}: {insn}"
                elif insn.src == isa.PSEUDO_FUNC:
                    assert index + 1 + insn.imm in starts, f"{where}: {insn}"
                else:
                    assert insn.src == 0, f"{where}: {insn}"
            elif insn.is_local_call:
                assert insn.call_target(index) in starts, f"{where}: call to {insn.call_target(index)}"
    functions = {f.number: f for f in linked.functions}
    for d in linked.data_sections:
        for _, target in d.pointers:
            assert (target[0] == "func" and target[1] in functions) or (target[0] == "map" and target[1] in maps) \
                or (target[0] == "data" and target[2] <= sizes[target[1]]), f"{d.name}: pointer {target}"
    for _, target in linked.map_relocations:
        assert (target[0] == "func" and functions[target[1]].is_program) or (
            target[0] == "map" and target[1] in maps), f".maps: slot {target}"


def run_case(case: dict, folder: Path, stats: dict[str, int]) -> None:
    """One case: damage, read, link, load, run; any exception but a BPFError propagates."""
    import bpfjit
    from bpfjit.errors import BPFError, ObjectError
    from bpfjit.runtime import elf
    data = bytearray(Path(case["object"]).read_bytes())
    for at, hex_bytes in case["edits"]:
        patch = bytes.fromhex(hex_bytes)
        data[at:at + len(patch)] = patch
    path = folder / Path(case["object"]).name
    path.write_bytes(data)
    try:
        linked = elf.read_object(bytes(data), str(path))
    except ObjectError as exc:
        assert str(exc).startswith(f"{path}: "), f"the error does not name the file: {exc}"
        stats["rejected by the linker"] += 1
        return
    check_linked(linked, bytes(data))
    try:
        obj = bpfjit.load(path)
    except BPFError:
        stats["rejected at load"] += 1
        return
    stats["loaded"] += 1
    for program in obj.programs.values():
        try:
            program.test_run(bytes(64), engine="reference", max_steps=MAX_STEPS)
            stats["ran"] += 1
        except BPFError:
            stats["failed cleanly"] += 1


def child_main(cases_file: str) -> None:
    """The child: one "start N" line before each case, "done" and the outcome counts at the end."""
    import collections
    import traceback

    import bpfjit
    bpfjit.register_helper("get_current_pid_tgid", lambda *regs: 1234 << 32)  # user_helper.o needs it
    cases = json.loads(Path(cases_file).read_text())
    stats: dict[str, int] = collections.Counter()
    with tempfile.TemporaryDirectory() as folder:
        for number, case in enumerate(cases):
            print(f"start {number}", flush=True)
            try:
                run_case(case, Path(folder), stats)
            except Exception:  # noqa: BLE001 - the point of the campaign: report, then go on
                text = traceback.format_exc().strip().splitlines()
                print(f"fail {number} {json.dumps(text[-6:])}", flush=True)
    print(f"done {json.dumps(stats)}", flush=True)


# --- the tests ----------------------------------------------------------------------------------------

CHILD = "import sys; sys.path.insert(0, sys.argv[1]); import test_reloc_fuzz; test_reloc_fuzz.child_main(sys.argv[2])"
CASE_SECONDS = 30  # a case that runs longer hangs: the child is killed and the next one goes on


def run_campaign(cases: list[dict], tmp_path: Path) -> dict[str, int]:
    """Run the cases in child processes; fail listing every case that broke the contract,
    crashed the child or hung it (a new child takes over after the case that killed the last)."""
    broken: list[str] = []
    stats: dict[str, int] = {}
    first = 0
    while first < len(cases):
        cases_file = tmp_path / "cases.json"
        cases_file.write_text(json.dumps(cases[first:]))
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(TESTS), str(cases_file)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        current, finished = first, False
        with selectors.DefaultSelector() as selector:
            selector.register(child.stdout, selectors.EVENT_READ)
            while not finished and selector.select(timeout=CASE_SECONDS):
                line = child.stdout.readline()
                if not line:
                    break
                word, _, rest = line.rstrip("\n").partition(" ")
                if word == "start":
                    current = first + int(rest)
                elif word == "fail":
                    number, _, text = rest.partition(" ")
                    broken.append(f"{cases[first + int(number)]['what']}: {' | '.join(json.loads(text))}")
                elif word == "done":
                    for key, value in json.loads(rest).items():  # (a killed child's counts are lost)
                        stats[key] = stats.get(key, 0) + value
                    finished = True
        if not finished:
            child.kill()
            status = child.wait()
            hung = status == -signal.SIGKILL
            what = f"hung (no result in {CASE_SECONDS} s)" if hung else f"killed the child (status {status})"
            broken.append(f"{cases[current]['what']}: {what}: {child.stderr.read()[-500:].strip()}")
            first = current + 1
        else:
            child.wait()
            first = len(cases)
        child.stdout.close()
        child.stderr.close()
    assert not broken, f"{len(broken)} of {len(cases)} cases broke the contract:\n" + "\n".join(broken[:20])
    return stats


def test_corrupted_relocations(tmp_path):
    stats = run_campaign(make_cases(DEFAULT_CASES), tmp_path)
    # the campaign reached every stage: cases rejected at link time, and cases that loaded and ran
    assert stats.get("rejected by the linker", 0) > DEFAULT_CASES // 4, stats
    assert stats.get("loaded", 0) > DEFAULT_CASES // 10 and stats.get("ran", 0) > 0, stats


@pytest.mark.slow
def test_corrupted_relocations_long(tmp_path):
    stats = run_campaign(make_cases(SLOW_CASES, seed=FUZZ_SEED + 1), tmp_path)
    assert stats.get("loaded", 0) > 0 and stats.get("rejected by the linker", 0) > 0, stats


def test_the_cases_damage_every_object_and_are_reproducible():
    cases = make_cases(DEFAULT_CASES)
    assert cases == make_cases(DEFAULT_CASES)
    assert {case["object"] for case in cases} == {str(path) for path in OBJECTS}
    for case in cases:
        original = Path(case["object"]).read_bytes()
        tables = rel_tables(original).values()
        for at, hex_bytes in case["edits"]:
            assert any(t.at <= at and at + len(hex_bytes) // 2 <= t.at + t.count * REL.size for t in tables)
