"""A program looking up an inner map through an ARRAY_OF_MAPS initialised in .maps."""
from __future__ import annotations

import pathlib

from bpfjit.object import load

OBJ = pathlib.Path(__file__).resolve().parent / "progs" / "map_in_map.o"


def test_inner_maps_count(engine):
    obj = load(OBJ)
    prog = obj.programs["count"]
    # First byte even -> inner_a gets +10 in slot 1; odd -> inner_b gets +11.
    assert prog.test_run(b"\x00" + bytes(63), repeat=2, engine=engine).retval == 2  # XDP_PASS
    assert prog.test_run(b"\x01" + bytes(63), engine=engine).retval == 2
    assert obj.maps["inner_a"].items() == [(0, 0), (1, 20)]
    assert obj.maps["inner_b"].items() == [(0, 0), (1, 11)]
