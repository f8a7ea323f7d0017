"""The bpftool-style type dump (``bpfjit btf dump``) against output recorded before its rewrite.

tests/golden/btf_dump/ holds what the CLI printed, text and ``--json``, for every object of
tests/progs, bench/progs, bpfjit/data and the kernel verifier corpus, and for a hand-built BTF with
every kind and every formatting case (``all_kinds_btf``). They were recorded once, with the
if-chain implementation the table in ``bpfjit.runtime.btf.text`` replaced, so these tests check
that the rewrite changed nothing, byte for byte.
"""
from __future__ import annotations

import json
import pathlib
import struct

import pytest
from conftest import KERNEL_VERIFIER
from test_btf import Builder

from bpfjit.btf import read_btf
from bpfjit.runtime.btf import (BTF, INT_BOOL, INT_CHAR, INT_SIGNED, Kind, dump_lines, dump_records,
                               parse_btf)

REPO = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "btf_dump"
# golden file prefix -> the folder its object came from (kv: the kernel verifier corpus, outside)
FOLDERS = {"tests": REPO / "tests" / "progs", "bench": REPO / "bench" / "progs",
           "data": REPO / "bpfjit" / "data"}
CASES = sorted(path.stem for path in GOLDEN.glob("*.txt"))


def all_kinds_btf() -> BTF:
    """Every kind 1-19 and one unknown kind; every INT encoding, FUNC/VAR linkage and FWD kind;
    signed and unsigned enums; bitfield and anonymous members; DATASEC entries naming a FUNC, an
    unknown kind and void."""
    b = Builder()
    u32 = b.int_("u32", 4)                                                   # 1
    b.int_("s8", 1, enc=INT_SIGNED)                                          # 2
    b.int_("char", 1, enc=INT_CHAR)                                          # 3
    b.int_("_Bool", 1, enc=INT_BOOL)                                         # 4
    b.int_("odd", 4, enc=INT_SIGNED | INT_CHAR, bits=5, bit_off=3)           # 5
    ptr = b.add(Kind.PTR, "", u32)                                           # 6
    arr = b.add(Kind.ARRAY, "", 0, [u32, u32, 3])                            # 7
    st = b.struct_("s", 16, [("a", u32, 0), ("", arr, 32)])                  # 8
    b.struct_("bits", 4, [("lo", u32, (3 << 24) | 0), ("hi", u32, (5 << 24) | 3),
                          ("w", u32, 8)], kflag=1)                           # 9
    b.struct_("", 4, [("x", u32, 0)], kind=Kind.UNION)                      # 10
    b.add(Kind.ENUM, "e", 4, [b.s("A"), 0xFFFFFFFF, b.s("B"), 7], 2, kflag=1)  # 11
    b.add(Kind.ENUM, "", 2, [b.s("U"), 0xFFFF], 1)                           # 12
    b.add(Kind.FWD, "fs", 0)                                                 # 13
    b.add(Kind.FWD, "fu", 0, kflag=1)                                        # 14
    td = b.add(Kind.TYPEDEF, "td", u32)                                      # 15
    vol = b.add(Kind.VOLATILE, "", td)                                       # 16
    b.add(Kind.CONST, "", vol)                                               # 17
    b.add(Kind.RESTRICT, "", ptr)                                            # 18
    proto = b.add(Kind.FUNC_PROTO, "", u32, [b.s("x"), u32, 0, 0], 2)       # 19
    b.add(Kind.FUNC, "f_static", proto, vlen=0)                              # 20
    fn = b.add(Kind.FUNC, "f_global", proto, vlen=1)                         # 21
    b.add(Kind.FUNC, "f_extern", proto, vlen=2)                              # 22
    b.add(Kind.FUNC, "f_odd", proto, vlen=7)                                 # 23
    b.add(Kind.FUNC_PROTO, "", 0, [], 0)                                     # 24
    v1 = b.add(Kind.VAR, "v_static", u32, [0])                               # 25
    v2 = b.add(Kind.VAR, "v_global", st, [1])                                # 26
    v3 = b.add(Kind.VAR, "v_extern", u32, [2])                               # 27
    v4 = b.add(Kind.VAR, "v_odd", u32, [9])                                  # 28
    unk = b.add(25, "future", 0, [7, 7], vlen=1)                             # 29
    b.add(Kind.DATASEC, ".data", 40, [v1, 0, 4, v2, 4, 16, v3, 20, 4, v4, 24, 4,
                                      fn, 28, 0, unk, 32, 4, 0, 36, 4], 7)   # 30
    b.add(Kind.DATASEC, ".empty", 0, [], 0)                                  # 31
    b.add(Kind.FLOAT, "float", 4)                                            # 32
    b.add(Kind.DECL_TAG, "arg:ctx", fn, [0xFFFFFFFF])                        # 33
    b.add(Kind.DECL_TAG, "member", st, [1])                                  # 34
    b.add(Kind.TYPE_TAG, "kptr", st)                                         # 35
    b.add(Kind.ENUM64, "e64", 8, [b.s("B"), 0x9ABCDEF0, 0x12345678, b.s("N"), 0, 0x80000000], 2,
          kflag=1)                                                           # 36
    b.add(Kind.ENUM64, "", 8, [b.s("U"), 0xFFFFFFFF, 0xFFFFFFFF], 1)         # 37
    layout = bytearray(4 * 26)
    layout[4 * 25: 4 * 25 + 4] = struct.pack("<BBH", 0, 8, 0)
    return parse_btf(b.build(hdr_len=32, layout=bytes(layout)))


def btf_for(case: str) -> BTF:
    """The BTF a golden case was recorded from, fixed up as the CLI fixes it."""
    if case == "synthetic-all-kinds":
        return all_kinds_btf()
    prefix, name = case.split("-", 1)
    folder = KERNEL_VERIFIER.require() / "objs" if prefix == "kv" else FOLDERS[prefix]
    return read_btf(folder / f"{name}.o")


def test_every_folder_was_recorded():
    """The golden set is not empty or partial by accident: each source has its objects."""
    prefixes = {case.split("-", 1)[0] for case in CASES}
    assert prefixes == {"tests", "bench", "data", "kv", "synthetic"}
    for prefix, folder in FOLDERS.items():
        recorded = {case.split("-", 1)[1] for case in CASES if case.startswith(prefix + "-")}
        assert recorded and recorded <= {path.stem for path in folder.glob("*.o")}


@pytest.mark.parametrize("case", CASES)
def test_text_and_json_match_the_recorded_dump(case):
    btf = btf_for(case)
    text = "".join(line + "\n" for line in dump_lines(btf))
    assert text == (GOLDEN / f"{case}.txt").read_text()
    assert json.dumps({"types": dump_records(btf)}) + "\n" == (GOLDEN / f"{case}.json").read_text()


def test_records_and_lines_agree_on_each_type():
    """One head line per record, in id order, and the kind names bpftool uses."""
    btf = all_kinds_btf()
    records = dump_records(btf)
    heads = [line for line in dump_lines(btf) if not line.startswith("\t")]
    assert [r["id"] for r in records] == list(range(1, len(btf.types)))
    assert [h.split("] ", 1)[0] for h in heads] == [f"[{r['id']}" for r in records]
    assert {r["kind"] for r in records} == {k.name for k in Kind if k != Kind.UNKN} | {"KIND_25"}


def test_empty_btf_dumps_nothing():
    btf = parse_btf(Builder().build())
    assert dump_records(btf) == [] and dump_lines(btf) == []
