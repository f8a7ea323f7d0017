"""Redirect maps (DEVMAP, DEVMAP_HASH, CPUMAP, XSKMAP) and the redirect helpers on every engine,
with results worked out by hand from net/core/filter.c (bpf_xdp_redirect, bpf_redirect,
__bpf_xdp_redirect_map), kernel/bpf/devmap.c and kernel/bpf/cpumap.c (tests/progs/redirect_maps.c).

bpf_redirect_map returns XDP_REDIRECT (4) when the map holds the key (or, on a DEVMAP, for a
broadcast), else the fallback action in its flags' low two bits; flags a map does not take give
XDP_ABORTED (0). RunResult.redirect says where the packet would go, only when the program returned
the redirect action.
"""
from __future__ import annotations

import errno
import pathlib
import struct

import pytest

from bpfjit.errors import MapError
from bpfjit.object import load
from bpfjit.runtime.run_context import Redirect
from test_helper_bench_progs import python_helper_calls

OBJ = pathlib.Path(__file__).resolve().parent / "progs" / "redirect_maps.o"
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 0, 1, 2, 3, 4
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
BPF_F_INGRESS, BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS = 1, 1 << 3, 1 << 4


def packet(key: int, flags: int) -> bytes:
    """The programs' input: the key and the flags as the first two u32s of a 64-byte frame."""
    return struct.pack("<II", key, flags) + bytes(56)


@pytest.fixture(scope="module")
def obj():
    return load(OBJ, ncpus=3)  # CPUMAP keys 0-2 are CPUs, 3 is not


@pytest.fixture(autouse=True)
def empty_maps(obj):
    for name in ("ports", "ports_hash", "cpus"):
        obj.maps[name].clear()


def run(obj, program: str, key: int, flags: int, engine: str):
    return obj.programs[program].test_run(packet(key, flags), engine=engine)


@pytest.mark.parametrize("program, name", [("to_port", "ports"), ("to_port_hash", "ports_hash"), ("to_cpu", "cpus")])
def test_a_held_key_redirects_to_the_entry(obj, engine, program, name):
    obj.maps[name][2] = struct.pack("<I", 192).ljust(obj.maps[name].value_size, b"\0")
    result = run(obj, program, 2, XDP_DROP, engine)
    assert (result.retval, result.redirect) == (XDP_REDIRECT, Redirect(map=name, key=2))


@pytest.mark.parametrize("program", ["to_port", "to_port_hash", "to_cpu", "to_xsk"])
@pytest.mark.parametrize("fallback", [XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX])
def test_a_missing_key_returns_the_fallback_in_the_flags(obj, engine, program, fallback):
    result = run(obj, program, 3, fallback, engine)
    assert (result.retval, result.redirect) == (fallback, None)


@pytest.mark.parametrize("program", ["to_port", "to_port_hash", "to_cpu", "to_xsk"])
def test_flags_a_map_does_not_take_abort(obj, engine, program):
    # Bit 2 is neither a fallback bit nor a redirect flag; CPUMAP and XSKMAP take no broadcast.
    assert run(obj, program, 0, 1 << 2, engine).retval == XDP_ABORTED
    if program in ("to_cpu", "to_xsk"):
        assert run(obj, program, 0, BPF_F_BROADCAST | XDP_PASS, engine).retval == XDP_ABORTED


@pytest.mark.parametrize("program, name", [("to_port", "ports"), ("to_port_hash", "ports_hash")])
def test_a_devmap_broadcast_redirects_even_from_an_empty_map(obj, engine, program, name):
    flags = BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS | XDP_DROP
    result = run(obj, program, 5, flags, engine)
    assert result.retval == XDP_REDIRECT
    assert result.redirect == Redirect(map=name, key=5, flags=BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS)


def test_xdp_redirect_to_an_interface(obj, engine):
    result = run(obj, "to_ifindex", 42, 0, engine)
    assert (result.retval, result.redirect) == (XDP_REDIRECT, Redirect(ifindex=42))
    # bpf_xdp_redirect takes no flags at all, BPF_F_INGRESS included.
    assert (run(obj, "to_ifindex", 42, BPF_F_INGRESS, engine).retval) == XDP_ABORTED


def test_tc_redirect_to_an_interface(obj, engine):
    result = run(obj, "tc_to_ifindex", 9, BPF_F_INGRESS, engine)
    assert (result.retval, result.redirect) == (TC_ACT_REDIRECT, Redirect(ifindex=9, flags=BPF_F_INGRESS))
    assert run(obj, "tc_to_ifindex", 9, 2, engine).retval == TC_ACT_SHOT


def test_a_program_reads_a_devmap_value(obj, engine):
    obj.maps["ports"][1] = struct.pack("<Ii", 3, 0)
    assert run(obj, "port_ifindex", 1, 0, engine).retval == 3
    assert run(obj, "port_ifindex", 0, 0, engine).retval == XDP_PASS


def test_no_redirect_is_reported_when_the_program_passes(obj, engine):
    result = obj.programs["redirect_then_pass"].test_run(packet(0, 0), engine=engine)
    assert (result.retval, result.redirect) == (XDP_PASS, None)


@pytest.mark.parametrize("held", [True, False])
def test_the_last_redirect_helper_of_a_run_decides(obj, engine, held):
    # The JIT inlines bpf_redirect_map into RunEnv words that bpf_redirect (Python) writes too:
    # whichever ran last counts, and a redirect_map that misses clears what bpf_redirect recorded.
    if held:
        obj.maps["ports"][3] = {"ifindex": 12, "bpf_prog": {"fd": 0}}
    first = obj.programs["ifindex_then_port"].test_run(packet(3, XDP_PASS), engine=engine)
    assert (first.retval, first.redirect) == (XDP_REDIRECT, Redirect(map="ports", key=3) if held else None)
    last = obj.programs["port_then_ifindex"].test_run(packet(3, XDP_PASS), engine=engine)
    assert (last.retval, last.redirect) == (XDP_REDIRECT, Redirect(ifindex=7))


def test_a_record_lasts_the_repeats_of_a_test_run(obj, engine):
    obj.maps["ports"][5] = {"ifindex": 12, "bpf_prog": {"fd": 0}}
    result = obj.programs["to_port"].test_run(packet(5, 0), engine=engine, repeat=3)
    assert (result.retval, result.redirect) == (XDP_REDIRECT, Redirect(map="ports", key=5))


@pytest.mark.parametrize("native_engine", ["jit", "interp"])
def test_native_redirects_call_no_python(obj, native_engine):
    # The JIT inlines both redirect helpers; the native interpreter runs them itself.
    obj.maps["ports"][1] = {"ifindex": 12, "bpf_prog": {"fd": 0}}
    obj.maps["cpus"][2] = {"qsize": 64, "bpf_prog": {"fd": 0}}
    for program, key, flags, retval in (("to_port", 1, XDP_PASS, XDP_REDIRECT), ("to_cpu", 2, XDP_PASS, XDP_REDIRECT),
                                        ("to_port", 6, XDP_PASS, XDP_PASS), ("to_ifindex", 9, 0, XDP_REDIRECT),
                                        ("to_ifindex", 9, BPF_F_INGRESS, XDP_ABORTED),
                                        ("tc_to_ifindex", 9, BPF_F_INGRESS, TC_ACT_REDIRECT),
                                        ("tc_to_ifindex", 9, 2, TC_ACT_SHOT)):
        obj.programs[program].prepare(native_engine)
        with python_helper_calls() as calls:
            result = obj.programs[program].test_run(packet(key, flags), engine=native_engine, repeat=10)
        assert calls[0] == 0
        assert result.retval == retval


def test_devmap_values_read_back_as_ifindex_and_program_id(obj):
    ports = obj.maps["ports"]
    ports[4] = struct.pack("<Ii", 7, -1)  # a negative fd means "no program"
    assert ports[4] == {"ifindex": 7, "bpf_prog": {"fd": 0, "id": 0}}
    ports[4] = struct.pack("<Ii", 0, 0)  # ifindex 0 empties the slot
    assert 4 not in ports
    ports.delete_elem(4)  # deleting an empty slot succeeds, as in the kernel


@pytest.mark.parametrize("name, value, err", [
    ("ports", struct.pack("<Ii", 1, 5), errno.EBADF),      # a program fd: bpfjit has none
    ("ports", struct.pack("<Ii", 0, 5), errno.EINVAL),     # a program without a device
    ("ports_hash", struct.pack("<I", 0), errno.EINVAL),    # DEVMAP_HASH needs an ifindex
    ("cpus", struct.pack("<Ii", 16385, 0), errno.EOVERFLOW),  # qsize over 16384
])
def test_updates_the_kernel_refuses(obj, name, value, err):
    with pytest.raises(MapError) as raised:
        obj.maps[name][1] = value
    assert raised.value.errno == err


def test_map_bounds(obj):
    with pytest.raises(MapError) as raised:
        obj.maps["ports"][8] = struct.pack("<Ii", 1, 0)
    assert raised.value.errno == errno.E2BIG
    with pytest.raises(MapError) as raised:
        obj.maps["ports"].delete_elem(8)
    assert raised.value.errno == errno.EINVAL
    with pytest.raises(MapError) as raised:  # a CPU the object does not have (ncpus=3)
        obj.maps["cpus"][3] = struct.pack("<Ii", 64, 0)
    assert raised.value.errno == errno.ENODEV
    with pytest.raises(MapError) as raised:
        obj.maps["sockets"][0] = 3
    assert raised.value.errno == errno.EOPNOTSUPP


# --- a map type bpfjit does not implement refuses only the programs that use it ---------------

UNSUPPORTED = pathlib.Path(__file__).resolve().parent / "progs" / "unsupported_map.o"


def test_only_the_programs_using_an_unimplemented_map_are_refused(engine):
    obj = load(UNSUPPORTED)
    assert set(obj.programs) == {"plain"}
    assert obj.programs["plain"].test_run(bytes(64), engine=engine).retval == 1
    assert "cgroups" not in obj.maps
    reason = obj.refused["uses_cgroups"]
    assert reason == ("unsupported_map.o: program uses_cgroups uses map cgroups: map type CGROUP_ARRAY (8) "
                      "is not supported")
    with pytest.raises(KeyError, match="CGROUP_ARRAY"):
        obj.programs["uses_cgroups"]


def test_naming_a_program_that_uses_an_unimplemented_map_fails_the_load():
    with pytest.raises(MapError, match="program uses_cgroups uses map cgroups: map type CGROUP_ARRAY") as raised:
        load(UNSUPPORTED, programs=["uses_cgroups"])
    assert raised.value.errno == errno.EOPNOTSUPP
    assert set(load(UNSUPPORTED, programs=["plain"]).programs) == {"plain"}
