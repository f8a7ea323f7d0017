"""Load options, as libbpf's open / set / load: a map's size and flags, and a program's type, set
before load (``bpfjit.load(maps=..., program_types=...)``, ``--set-map``, ``--prog-type``).

tests/progs/load_options.c declares a hash map with max_entries 0 (its loader sizes it, as
libbpf's ``bpf_map__set_max_entries``) and an XDP program in a section libbpf cannot type.
"""
from __future__ import annotations

import json
import pathlib

import pytest

import bpfjit
from bpfjit import BPFError, VerifierError
from bpfjit.cli import main
from bpfjit.runtime.maps import BPF_F_NO_PREALLOC

OBJECT = str(pathlib.Path(__file__).parent / "progs" / "load_options.o")
SIZED = {"lengths": {"max_entries": 16}}
FRAME = bytes(range(42, 42 + 20))


def test_a_map_the_object_leaves_unsized_says_how_to_size_it():
    with pytest.raises(BPFError) as caught:
        bpfjit.load(OBJECT, programs=["count_lengths"])
    message = str(caught.value)
    assert "max_entries must all be at least 1" in message
    assert "maps={'lengths': {'max_entries': N}}" in message and "--set-map lengths.max_entries=N" in message


@pytest.mark.parametrize("engine", ["jit", "reference"])
def test_a_map_sized_before_load_has_that_size_and_works(engine):
    obj = bpfjit.load(OBJECT, programs=["count_lengths"], maps=SIZED)
    lengths = obj.maps["lengths"]
    assert lengths.max_entries == 16
    program = obj.programs["count_lengths"]
    for _ in range(3):
        assert program.test_run(FRAME, engine=engine).retval == 2  # XDP_PASS
    assert program.test_run(FRAME + b"xy", engine=engine).retval == 2
    assert dict(lengths.items()) == {20: 3, 22: 1}


def test_map_flags_are_set_before_load():
    flags = {"lengths": {"max_entries": 4, "map_flags": BPF_F_NO_PREALLOC}}
    obj = bpfjit.load(OBJECT, programs=["count_lengths"], maps=flags)
    assert obj.maps["lengths"].map_flags == BPF_F_NO_PREALLOC


def test_sizes_set_before_load_drop_the_btf_type_they_no_longer_fit():
    """As libbpf's bpf_map__set_value_size: a map created with another value size than its BTF
    type's has no BTF value type (its values are bytes); the program still counts in it."""
    obj = bpfjit.load(OBJECT, programs=["count_lengths"], maps={"lengths": {"max_entries": 4, "value_size": 16,
                                                                            "numa_node": 0}})
    lengths = obj.maps["lengths"]
    assert (lengths.key_size, lengths.value_size, lengths.value_type_id) == (4, 16, 0)
    obj.programs["count_lengths"].test_run(FRAME)
    obj.programs["count_lengths"].test_run(FRAME)
    [(key, value)] = lengths.items()  # the program's update copied 16 bytes of its stack from &one
    assert key == 20 and len(value) == 16 and int.from_bytes(value[:8], "little") == 2


def test_map_extra_set_before_load_is_a_bloom_filters_hash_count():
    path = str(pathlib.Path(__file__).parent / "progs" / "bloom_perf.o")
    assert bpfjit.load(path).maps["seen"].map_extra == 3  # as the object declares it
    assert bpfjit.load(path, maps={"seen": {"map_extra": 7}}).maps["seen"].map_extra == 7


@pytest.mark.parametrize("maps,message", [
    ({"nope": {"max_entries": 1}}, "maps= names no map 'nope' (maps: lengths)"),
    ({"lengths": {"pinning": 1}}, "map 'lengths': pinning cannot be set before load (settable: max_entries, "
                                  "map_flags, key_size, value_size, map_extra, numa_node)"),
    ({"lengths": {"map_extra": -1}}, "map 'lengths': map_extra must be an unsigned 64-bit int, got -1"),
    ({"lengths": {"max_entries": -1}}, "map 'lengths': max_entries must be an unsigned 32-bit int, got -1"),
    ({"lengths": {"max_entries": "8"}}, "map 'lengths': max_entries must be an unsigned 32-bit int, got '8'"),
])
def test_bad_map_options_get_a_clear_error(maps, message):
    with pytest.raises(BPFError) as caught:
        bpfjit.load(OBJECT, programs=["count_lengths"], maps=maps)
    assert str(caught.value) == f"load_options.o: {message}"


def test_a_program_in_an_untyped_section_loads_raw_unless_given_its_type():
    with pytest.raises(VerifierError) as caught:
        bpfjit.load(OBJECT, programs=["first_byte"], maps=SIZED)
    assert caught.value.message == "R1 invalid mem access 'scalar'"  # ctx->data read as raw memory
    obj = bpfjit.load(OBJECT, programs=["first_byte"], maps=SIZED, program_types={"first_byte": "xdp"})
    program = obj.programs["first_byte"]
    assert program.prog_type == "xdp"
    for engine in ("jit", "reference"):
        assert program.test_run(FRAME, engine=engine).retval == 42


@pytest.mark.parametrize("types,message", [
    ({"nope": "xdp"}, "program_types names no program 'nope' (programs: count_lengths, first_byte)"),
    ({"first_byte": "xdpp"}, "program 'first_byte': unknown program type 'xdpp'"),
])
def test_bad_program_types_get_a_clear_error(types, message):
    with pytest.raises(BPFError) as caught:
        bpfjit.load(OBJECT, maps=SIZED, program_types=types)
    assert str(caught.value).startswith(f"load_options.o: {message}")


def test_the_cli_takes_the_same_options(capsys):
    argv = ["run", OBJECT, "-p", "first_byte", "--set-map", "lengths.max_entries=8", "--prog-type", "first_byte=xdp",
            "--data-hex", FRAME.hex(), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["retval"] == 42
    options = ["--set-map", "lengths.max_entries=8", "--prog-type", "first_byte=xdp"]
    assert main(["verify", OBJECT, *options, "--json"]) == 0
    assert {r["verdict"] for r in json.loads(capsys.readouterr().out)} == {"success"}


@pytest.mark.parametrize("option,message", [
    (["--set-map", "lengths=8"], "--set-map 'lengths=8': expected NAME.ATTR=VALUE"),
    (["--set-map", "lengths.max_entries=many"], "--set-map 'lengths.max_entries=many': 'many' is not an integer"),
    (["--prog-type", "first_byte"], "--prog-type 'first_byte': expected PROG=TYPE"),
])
def test_bad_cli_load_options_get_a_clear_error(option, message, capsys):
    assert main(["run", OBJECT, "-p", "count_lengths"] + option) != 0
    assert message in capsys.readouterr().err
