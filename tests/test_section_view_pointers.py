"""Global data through its section's map (``obj.maps[".bss"][0]``) types function pointers and
kptrs as ``obj.globals`` does (issue 13): a function-pointer slot reads as a FunctionHandle or
None and takes only those, of a function whose prototype fits, never an int or raw bytes; a kptr
in global data reads as an ObjectHandle or None. Programs see what the view writes, on every
engine.

Programs: tests/progs/debug_point.c (``hook`` in .bss, NULL; ``reader`` in .data, initialised
with read_word; ``tracers[3]`` in .rodata) and kptr_rules.c's fine_global_stash (``global_conn``
in .bss.STASH; the program stashes a new object with id 42 and returns 1 when the stash was
empty, 2 when it swapped one out). Expected values are derived by hand from the C sources:
trace_length gives the packet's length, trace_first_byte its first byte."""
from __future__ import annotations

import ctypes
import pathlib

import pytest

import bpfjit
from bpfjit.errors import MapError
from bpfjit.runtime.kptrs import ObjectHandle

from conftest import ENGINES

PROGS = pathlib.Path(__file__).parent / "progs"
PACKET = bytes([7]) + bytes(59)  # 60 bytes, first byte 7


@pytest.fixture
def obj():
    return bpfjit.load(PROGS / "debug_point.o")


def _raw(m) -> bytes:
    return ctypes.string_at(m.value_address(0), m.value_size)


def test_the_map_view_reads_function_pointers_as_the_globals_view_does(obj):
    functions = obj.functions
    assert obj.maps[".bss"][0]["hook"] is None
    assert obj.maps[".data"][0] == {"reader": functions["read_word"], "word": 42}
    assert obj.maps[".rodata"][0] == {"tracers": [functions["trace_length"], functions["trace_first_byte"],
                                                  functions["trace_count"]]}
    obj.globals["hook"] = functions["trace_count"]
    assert obj.maps[".bss"][0]["hook"] == functions["trace_count"]
    assert obj.maps[".bss"].lookup_elem(0)["hook"].name == "trace_count"
    assert dict(obj.maps[".bss"].items())[0]["hook"] == functions["trace_count"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_function_written_through_the_map_view_is_what_programs_call(obj, engine):
    bss = obj.maps[".bss"]
    program = obj.programs["debug_point"]
    for tracer, expected in (("trace_length", 60), ("trace_first_byte", 7)):
        bss[0] = dict(bss[0], hook=obj.functions[tracer])
        assert obj.globals["hook"] == obj.functions[tracer]
        program.test_run(PACKET, engine=engine)
        assert bss[0]["last"] == expected, tracer
    bss.update_elem(0, dict(bss[0], hook=None, last=0))
    assert obj.globals["hook"] is None
    program.test_run(PACKET, engine=engine)
    assert (bss[0]["last"], bss[0]["traced"]) == (0, 2)  # NULL: not traced
    # A program's own store shows through the view too.
    obj.programs["arm_length"].test_run(PACKET, engine=engine)
    assert bss[0]["hook"] == obj.functions["trace_length"]


@pytest.mark.parametrize("engine", ENGINES)
def test_an_initialised_slot_switches_through_the_map_view(obj, engine):
    """reader may name another function of its prototype; the program then calls it with &word."""
    data = obj.maps[".data"]
    data[0] = {"reader": obj.functions["read_word"], "word": 9}
    obj.programs["debug_point"].test_run(PACKET, engine=engine)
    assert obj.globals["read_back"] == 9


def test_the_map_view_refuses_what_the_globals_view_refuses(obj):
    bss, data = obj.maps[".bss"], obj.maps[".data"]
    obj.globals["hook"] = obj.functions["trace_first_byte"]
    before = _raw(bss), _raw(data)
    value = bss[0]
    with pytest.raises(bpfjit.BPFError, match=r"^hook is a function pointer: assign a function .* not 74565$"):
        bss[0] = dict(value, hook=0x12345)
    with pytest.raises(bpfjit.BPFError, match=r"^cannot assign read_word to hook: arg0 read_word\(unsigned long "
                                              r"long \*\) doesn't match hook\(struct xdp_md \*\)$"):
        bss[0] = dict(value, hook=obj.functions["read_word"])
    other = bpfjit.load(PROGS / "debug_point.o")
    with pytest.raises(bpfjit.BPFError, match="^hook: trace_length is not a function of debug_point.o"):
        bss[0] = dict(value, hook=other.functions["trace_length"])
    with pytest.raises(bpfjit.BPFError, match=r"^\.bss holds function pointers: .* not bytes$"):
        bss[0] = bytes(bss.value_size)
    with pytest.raises(bpfjit.BPFError, match=r"^hook holds function pointers: .* not bytes$"):
        bss[0] = dict(value, hook=bytes(8))
    with pytest.raises(MapError, match=r"^map \.bss: cannot encode value: .*expected a dict, got int$"):
        bss[0] = 0x12345
    with pytest.raises(bpfjit.BPFError, match="^reader is initialised with a function: it can name another one"):
        data[0] = {"reader": None, "word": 1}
    with pytest.raises(bpfjit.BPFError, match="^reader is initialised with a function: it can name another one"):
        data[0] = {"word": 1}  # left out: NULL too
    assert (_raw(bss), _raw(data)) == before  # no refused write changed anything
    assert obj.globals["hook"].name == "trace_first_byte"


def test_rodata_function_pointers_stay_frozen(obj):
    with pytest.raises(MapError, match="frozen"):
        obj.maps[".rodata"][0] = {"tracers": [obj.functions["trace_count"]] * 3}


@pytest.mark.parametrize("engine", ENGINES)
def test_an_array_of_function_pointers_through_the_map_view(engine):
    """callx_globals.c: safe_ops[2] = { add_one, square } in .data; the program calls
    safe_ops[len & 1](len), so a 60-byte packet calls safe_ops[0] with 60."""
    obj = bpfjit.load(PROGS / "callx_globals.o")
    data, add_one, square = obj.maps[".data"], obj.functions["add_one"], obj.functions["square"]
    assert data[0] == {"safe_ops": [add_one, square]}
    obj.programs["safe_calls"].test_run(PACKET, engine=engine)
    assert obj.globals["result"] == 61
    data[0] = {"safe_ops": [square, add_one]}
    obj.programs["safe_calls"].test_run(PACKET, engine=engine)
    assert obj.globals["result"] == 3600
    with pytest.raises(bpfjit.BPFError, match=r"^safe_ops\[1\] is a function pointer: assign a function .* not 5$"):
        data[0] = {"safe_ops": [add_one, 5]}
    with pytest.raises(bpfjit.BPFError, match=r"^safe_ops\[0\] is initialised with a function"):
        data[0] = {"safe_ops": [None, add_one]}
    with pytest.raises(bpfjit.BPFError, match=r"^safe_ops\[1\] is initialised with a function"):
        obj.globals["safe_ops"] = [add_one, None]
    assert obj.globals["safe_ops"] == [square, add_one]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_kptr_in_global_data_reads_as_an_object_handle(engine):
    obj = bpfjit.load(PROGS / "kptr_rules.o", programs=["fine_global_stash"])
    stash, view = obj.programs["fine_global_stash"], obj.maps[".bss.STASH"]
    assert view[0] == {"global_conn": None} and obj.globals["global_conn"] is None
    assert stash.test_run(PACKET, engine=engine).retval == 1
    held = view[0]["global_conn"]
    assert isinstance(held, ObjectHandle) and held.live and held.read()["id"] == 42
    assert obj.globals["global_conn"] == held
    # The globals view never stores into the field: the object stays stashed.
    obj.globals["global_conn"] = None
    obj.globals["global_conn"] = held
    assert obj.globals["global_conn"] == held and obj.kptr_objects.live == 1
    assert stash.test_run(PACKET, engine=engine).retval == 2  # swapped the stashed one out
    assert obj.kptr_objects.live == 1
    with pytest.raises(bpfjit.BPFError, match=r"^global_conn: the kptr field at offset 0 holds an object only "
                                              r"programs store \(give an object handle or None\), not 'x'$"):
        obj.globals["global_conn"] = "x"
    # The map view updates the element as the kernel's array update does: the bytes given for the
    # field are not copied, and the object the element held is released (bpf_obj_free_fields).
    view[0] = view[0]
    assert view[0] == {"global_conn": None} and obj.kptr_objects.live == 0
    assert stash.test_run(PACKET, engine=engine).retval == 1
