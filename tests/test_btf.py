"""BTF / BTF.ext parsing (bpfjit.runtime.btf) of synthetic BTF written by hand with ``Builder``:
every kind, endianness, layout sections, map-definition errors and malformed BTF.

Malformed input (hand-built corrupt BTF and BTF.ext) must give a BTFError naming what is wrong.
``Builder`` is also used by tests/test_btf_dump.py.
"""
from __future__ import annotations

import struct

import pytest

from bpfjit.errors import BTFError
from bpfjit.runtime import btf as B
from bpfjit.runtime.btf import Kind, parse_btf, parse_btf_ext, map_definitions
from bpfjit.runtime.map_types import MapType

from btf_cases import btf_fixture, obj_fixture  # noqa: F401 - the obj and btf fixtures


# --- synthetic BTF --------------------------------------------------------------------------------

class Builder:
    """Writes BTF by hand: types are (kind, name, size_or_type, trailer words, vlen, kflag)."""

    def __init__(self, endian: str = "<"):
        self.e = endian
        self.strs = bytearray(b"\0")
        self.recs: list[bytes] = []

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        return off

    def add(self, kind: int, name: str, st: int, words=(), vlen: int = 0, kflag: int = 0) -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.recs.append(struct.pack(f"{self.e}III", self.s(name), info, st)
                         + struct.pack(f"{self.e}{len(words)}I", *words))
        return len(self.recs)

    def int_(self, name, size, enc=0, bits=None, bit_off=0):
        return self.add(Kind.INT, name, size, [(enc << 24) | (bit_off << 16) | (bits or 8 * size)])

    def struct_(self, name, size, members, kflag=0, kind=Kind.STRUCT):
        words = []
        for mname, mtype, off in members:
            words += [self.s(mname), mtype, off]
        return self.add(kind, name, size, words, len(members), kflag)

    def build(self, hdr_len: int = 24, layout: bytes = b"", flags: int = 0) -> bytes:
        types = b"".join(self.recs)
        extra = b""
        if hdr_len >= 32:
            extra = struct.pack(f"{self.e}II", len(types) + len(self.strs), len(layout))
            extra += bytes(hdr_len - 32)
        hdr = struct.pack(f"{self.e}HBBIIIII", 0xEB9F, 1, flags, hdr_len, 0, len(types),
                          len(types), len(self.strs)) + extra
        return hdr + types + bytes(self.strs) + layout


def test_builder_kinds_round_trip():
    """Every kind 1-19, read back field by field."""
    b = Builder()
    u32 = b.int_("u32", 4)                                              # 1
    ptr = b.add(Kind.PTR, "", u32)                                      # 2
    arr = b.add(Kind.ARRAY, "", 0, [u32, u32, 3])                       # 3
    st = b.struct_("s", 16, [("a", u32, 0), ("b", arr, 32)])            # 4
    un = b.struct_("u", 4, [("x", u32, 0)], kind=Kind.UNION)            # 5
    en = b.add(Kind.ENUM, "e", 4, [b.s("A"), 0xFFFFFFFF], 1, kflag=1)   # 6
    fwd = b.add(Kind.FWD, "f", 0, kflag=1)                              # 7
    td = b.add(Kind.TYPEDEF, "td", u32)                                 # 8
    vol = b.add(Kind.VOLATILE, "", td)                                  # 9
    con = b.add(Kind.CONST, "", vol)                                    # 10
    res = b.add(Kind.RESTRICT, "", ptr)                                 # 11
    fn = b.add(Kind.FUNC, "fn", 13, vlen=B.FUNC_STATIC)                 # 12 (forward ref)
    proto = b.add(Kind.FUNC_PROTO, "", u32, [b.s("x"), u32, 0, 0], 2)   # 13
    var = b.add(Kind.VAR, "v", con, [B.VAR_GLOBAL_ALLOCATED])           # 14
    b.add(Kind.DATASEC, ".data", 4, [var, 0, 4], 1)                     # 15
    fl = b.add(Kind.FLOAT, "float", 4)                                  # 16
    dt = b.add(Kind.DECL_TAG, "arg:ctx", fn, [0xFFFFFFFF])              # 17
    tt = b.add(Kind.TYPE_TAG, "kptr", st)                               # 18
    e64 = b.add(Kind.ENUM64, "e64", 8, [b.s("B"), 0x9ABCDEF0, 0x12345678], 1)  # 19
    t = parse_btf(b.build())
    assert [t.type(i).kind for i in range(1, 20)] == list(range(1, 20))
    assert t.type(arr).nelems == 3 and t.size(arr) == 12 and B.describe(t, arr) == "u32[3]"
    assert [(m.name, m.bit_offset) for m in t.type(st).members] == [("a", 0), ("b", 32)]
    assert t.type(un).is_union and B.describe(t, un) == "union u"
    assert t.type(en).values[0].value == -1 and t.type(en).signed
    assert t.type(fwd).is_union and B.describe(t, fwd) == "union f"
    assert t.resolve(con) == u32 and B.describe(t, con) == "const volatile td"
    assert B.describe(t, res) == "u32 * restrict" and t.size(res) == 8
    assert t.type(proto).variadic and B.describe(t, fn) == "u32 fn(u32 x, ...)"
    assert t.type(fn).linkage == B.FUNC_STATIC
    assert t.datasecs() == {".data": [B.DatasecVar("v", var, 0, 4, 1)]}
    assert t.size(fl) == 4 and t.format_value(fl, struct.pack("<f", 1.5)) == 1.5
    assert t.type(dt).component_idx == -1 and t.type(dt).type == fn
    assert t.resolve(tt) == st and B.describe(t, tt) == "struct s __tag(kptr)"
    assert t.type(e64).values[0].value == 0x123456789ABCDEF0 and t.size(e64) == 8
    assert B.describe(t, ptr) == "u32 *" and B.describe(t, 0) == "void"


def test_big_endian_btf():
    b = Builder(">")
    u16 = b.int_("u16", 2)
    st = b.struct_("s", 4, [("a", u16, 0), ("b", u16, 16)])
    t = parse_btf(b.build())
    assert [(m.name, m.bit_offset) for m in t.type(st).members] == [("a", 0), ("b", 16)]
    assert t.format_value(st, b"\x00\x01\x00\x02") == {"a": 1, "b": 2}
    assert t.encode_value(st, {"a": 1, "b": 2}) == b"\x00\x01\x00\x02"


def test_wide_vlen_and_kind_masks():
    b = Builder()
    n = 0x10001  # needs more than 16 bits of vlen
    words = []
    for i in range(n):
        words += [0, i]
    b.add(Kind.ENUM, "many", 4, words, n)
    t = parse_btf(b.build())
    assert len(t.type(1).values) == n and t.type(1).values[-1].value == n - 1
    # kind 0x45 is kind 5 only with the old 5-bit mask; the wide mask sees an unknown kind 69
    b = Builder()
    b.add(0x45, "x", 4)
    with pytest.raises(BTFError, match="unknown kind 69"):
        parse_btf(b.build())


def test_layout_section_skips_unknown_kinds():
    b = Builder()
    u32 = b.int_("u32", 4)
    b.add(25, "future", 0, [7, 7, 7, 7], vlen=2)  # info_sz 0, elem_sz 8 per the layout table
    after = b.add(Kind.PTR, "", u32)
    layout = bytearray(4 * 26)
    layout[4 * 25: 4 * 25 + 4] = struct.pack("<BBH", 0, 8, 0)
    data = b.build(hdr_len=32, layout=bytes(layout))
    t = parse_btf(data)
    assert isinstance(t.type(2), B.UnknownType) and t.type(2).kind == 25
    assert t.type(after).kind == Kind.PTR and t.type(after).type == u32
    assert t.header.hdr_len == 32 and t.header.layout_len == len(layout)
    # without the layout table the unknown kind is an error
    with pytest.raises(BTFError, match="type id 2: unknown kind 25"):
        parse_btf(b.build(hdr_len=32))
    with pytest.raises(BTFError, match="unknown kind 25"):
        parse_btf(b.build())


def test_old_style_int_bitfields():
    """kind_flag 0: the bitfield width comes from the INT's nr_bits."""
    b = Builder()
    u3 = b.int_("u3", 4, bits=3)
    s5 = b.int_("s5", 4, enc=B.INT_SIGNED, bits=5)
    st = b.struct_("s", 4, [("a", u3, 0), ("b", s5, 3)])
    t = parse_btf(b.build())
    assert t.format_value(st, bytes([0b11111101, 0, 0, 0])) == {"a": 5, "b": -1}
    assert t.encode_value(st, {"a": 5, "b": -1}) == bytes([0b11111101, 0, 0, 0])


def test_anonymous_members_flatten():
    b = Builder()
    u16 = b.int_("u16", 2)
    inner = b.struct_("", 4, [("lo", u16, 0), ("hi", u16, 16)])
    un = b.struct_("", 4, [("w", b.int_("u32", 4), 0), ("", inner, 0)], kind=Kind.UNION)
    outer = b.struct_("o", 8, [("x", u16, 0), ("", un, 32)])
    t = parse_btf(b.build())
    value = t.format_value(outer, bytes([1, 0, 0, 0, 2, 0, 3, 0]))
    assert value == {"x": 1, "w": 0x00030002, "lo": 2, "hi": 3}
    assert t.encode_value(outer, {"x": 1, "lo": 2, "hi": 3}) == bytes([1, 0, 0, 0, 2, 0, 3, 0])


def _special_btf(members_of_value):
    b = Builder()
    u32 = b.int_("u32", 4)
    lock = b.struct_("bpf_spin_lock", 4, [("val", u32, 0)])
    timer = b.struct_("bpf_timer", 16, [])
    ids = {"u32": u32, "lock": lock, "timer": timer}
    ids["lock2"] = b.add(Kind.ARRAY, "", 0, [lock, u32, 2])
    ids["wrapped"] = b.struct_("w", 8, [("pad", u32, 0), ("l", lock, 32)])
    ids["head"] = b.struct_("bpf_list_head", 16, [])
    members = [(name, ids[kind], off) for name, kind, off in members_of_value(ids)]
    size = max(off // 8 + 16 for _n, _k, off in members_of_value(ids))
    value = b.struct_("value", size, members)
    return parse_btf(b.build()), value


def test_second_spin_lock_is_an_error():
    t, v = _special_btf(lambda ids: [("a", "lock", 0), ("b", "wrapped", 64)])
    with pytest.raises(BTFError, match="more than one 'struct bpf_spin_lock'.*0 and 12"):
        t.find_special_fields(v)
    t, v = _special_btf(lambda ids: [("a", "lock2", 0)])
    with pytest.raises(BTFError, match="more than one 'struct bpf_spin_lock'"):
        t.find_special_fields(v)
    t, v = _special_btf(lambda ids: [("a", "timer", 0), ("b", "timer", 128)])
    with pytest.raises(BTFError, match="more than one 'struct bpf_timer'"):
        t.find_special_fields(v)
    t, v = _special_btf(lambda ids: [("a", "wrapped", 64), ("h", "head", 128), ("t", "timer", 256)])
    sf = t.find_special_fields(v)
    assert (sf.spin_lock, sf.timer, sf.others) == (12, 32, ((16, "bpf_list_head"),))


# --- map definition errors ----------------------------------------------------------------------

def _maps_btf(members, name="m"):
    """A .maps DATASEC with one map whose definition has the given members; each member is
    (name, how, arg): how = uint (value) | type (type id key) | ulong (value) | raw (type id)."""
    b = Builder()
    i32 = b.int_("int", 4, enc=B.INT_SIGNED)
    idx = b.int_("__ARRAY_SIZE_TYPE__", 4)
    u64 = b.int_("u64", 8)
    named = {"int": i32, "u64": u64}
    out = []
    for mname, how, arg in members:
        if how == "uint":
            arr = b.add(Kind.ARRAY, "", 0, [i32, idx, arg])
            tid = b.add(Kind.PTR, "", arr)
        elif how == "type":
            tid = b.add(Kind.PTR, "", named[arg])
        elif how == "ulong":
            tid = b.add(Kind.ENUM64, "", 8, [b.s("v"), arg & 0xFFFFFFFF, arg >> 32], 1)
        elif how == "values_struct":
            inner = _inner(b, i32, idx, named)
            ptr = b.add(Kind.PTR, "", inner)
            tid = b.add(Kind.ARRAY, "", 0, [ptr, idx, 0])
        else:
            tid = arg if isinstance(arg, int) else named[arg]
        out.append((mname, tid, 64 * len(out)))
    st = b.struct_("", 8 * len(out), out)
    var = b.add(Kind.VAR, name, st, [1])
    b.add(Kind.DATASEC, ".maps", 8 * len(out), [var, 0, 8 * len(out)], 1)
    return parse_btf(b.build())


def _inner(b, i32, idx, named):
    arr = b.add(Kind.ARRAY, "", 0, [i32, idx, 2])  # ARRAY map type
    type_ptr = b.add(Kind.PTR, "", arr)
    arr4 = b.add(Kind.ARRAY, "", 0, [i32, idx, 4])
    size_ptr = b.add(Kind.PTR, "", arr4)
    return b.struct_("inner", 24, [("type", type_ptr, 0), ("key_size", size_ptr, 64),
                                   ("value_size", size_ptr, 128)])


def test_map_def_synthetic_ok():
    t = _maps_btf([("type", "uint", MapType.HASH_OF_MAPS), ("max_entries", "uint", 3),
                   ("key", "type", "u64"), ("map_extra", "ulong", 1 << 40),
                   ("numa_node", "uint", 1), ("values", "values_struct", None)])
    (d,) = map_definitions(t, 48)
    assert (d.type, d.key_size, d.value_size, d.max_entries, d.map_extra, d.numa_node) == \
        (MapType.HASH_OF_MAPS, 8, 4, 3, 1 << 40, 1)
    assert (d.inner.type, d.inner.key_size, d.inner.value_size) == (MapType.ARRAY, 4, 4)
    assert d.values_kind == "maps" and d.key_type_id == t.find("u64")


@pytest.mark.parametrize("members, message", [
    ([("type", "uint", 2), ("colour", "uint", 1)], "map 'm'.*unknown member 'colour'"),
    ([("type", "uint", 2), ("key_size", "uint", 4), ("key", "type", "u64")],
     "member 'key'.*conflicting key size 4 != 8"),
    ([("type", "uint", 2), ("max_entries", "type", "u64")], "member 'max_entries'.*__uint"),
    ([("type", "uint", 2), ("key", "raw", "int")], "member 'key'.*__type"),
    ([("type", "uint", 2), ("pinning", "uint", 7)], "invalid pinning value 7"),
    ([("type", "uint", MapType.HASH), ("values", "values_struct", None)],
     "member 'values'.*map-in-map or prog array"),
    ([("type", "uint", MapType.ARRAY_OF_MAPS), ("values", "values_struct", None),
      ("max_entries", "uint", 1)], "'values' must be the last member"),
    ([("type", "uint", 2), ("type", "uint", 2)], "member 'type'.*given twice"),
])
def test_map_def_errors(members, message):
    t = _maps_btf(members)
    with pytest.raises(BTFError, match=message):
        map_definitions(t)


# --- hand-made malformed BTF --------------------------------------------------------------------

def _bad_name_offset(b: Builder) -> None:
    b.recs.append(struct.pack("<III", 5000, Kind.INT << 24, 4) + struct.pack("<I", 32))


@pytest.mark.parametrize("build, message", [
    (lambda b: b.add(Kind.PTR, "", 77), "type id 1: type refers to type id 77"),
    (lambda b: (b.add(Kind.TYPEDEF, "a", 2), b.add(Kind.CONST, "", 1)), "type id 1: cycle"),
    (lambda b: b.add(Kind.TYPEDEF, "a", 1), "type id 1: cycle"),
    (_bad_name_offset, "type id 1 name: string offset 5000"),
    (lambda b: b.add(Kind.FUNC, "f", b.int_("u32", 4)), "type id 2.*not a FUNC_PROTO"),
    (lambda b: b.int_("bad", 3, bits=24), "type id 1: invalid INT"),
    (lambda b: b.int_("bad", 4, bits=33), "type id 1: invalid INT"),
    (lambda b: b.int_("bad", 32, bits=8), "type id 1: invalid INT"),
    (lambda b: b.add(Kind.FLOAT, "f", 5), "type id 1: invalid FLOAT size 5"),
    (lambda b: b.add(Kind.ENUM, "e", 3), "type id 1: invalid ENUM size 3"),
], ids=["dangling", "modifier-cycle", "self-typedef", "name-offset", "func-type", "int-size",
        "int-bits", "int-too-wide", "float-size", "enum-size"])
def test_malformed_types(build, message):
    """Records the kernel rejects at load: each error names the type id."""
    b = Builder()
    build(b)
    with pytest.raises(BTFError, match=message):
        parse_btf(b.build())


def _good() -> bytes:
    b = Builder()
    b.int_("u32", 4)
    return b.build()


@pytest.mark.parametrize("corrupt, message", [
    (lambda good: b"\x00\x00" + good[2:], "bad magic"),
    (lambda good: good[:2] + b"\x02" + good[3:], "version 2"),
    (lambda good: good[:4] + struct.pack("<I", 8) + good[8:], "hdr_len 8"),
    (lambda good: good[:-1] + b"x", "string section.*NUL"),
    (lambda good: good[:5], "hdr_len at byte offset 4.*past the end"),
    (lambda good: good[:24 + 8], "type section at byte offset 24"),
], ids=["magic", "version", "hdr-len", "strings-unterminated", "truncated-header",
        "truncated-types"])
def test_malformed_header(corrupt, message):
    with pytest.raises(BTFError, match=message):
        parse_btf(corrupt(_good()))


def test_array_cycles_are_caught_where_types_are_walked():
    """An array nested in itself passes the parse-time checks (which follow only modifiers); every
    walk over the type stops at the nesting limit instead of recursing forever."""
    b = Builder()
    u32 = b.int_("u32", 4)
    b.add(Kind.ARRAY, "", 0, [2, u32, 1])
    t = parse_btf(b.build())
    for call in (lambda: t.size(2), lambda: B.describe(t, 2), lambda: t.find_special_fields(2),
                 lambda: t.encode_value(2, [[0]])):
        with pytest.raises(BTFError, match="nested too deeply"):
            call()


def test_array_sizes_overflow_u32():
    b = Builder()
    u64 = b.int_("u64", 8)
    big = b.add(Kind.ARRAY, "", 0, [u64, u64, 1 << 31])
    bigger = b.add(Kind.ARRAY, "", 0, [big, u64, 1 << 31])
    t = parse_btf(b.build())
    with pytest.raises(BTFError, match="overflows u32"):
        t.size(bigger)
    with pytest.raises(BTFError, match="overflows u32"):
        t.encode_value(big, [])


def test_btf_ext_malformed_handmade(btf, obj):
    data = obj.sections[".BTF.ext"]
    hdr_len = struct.unpack_from("<I", data, 4)[0]
    func_off = struct.unpack_from("<I", data, 8)[0]
    with pytest.raises(BTFError, match="rec_size 4"):
        bad = bytearray(data)
        struct.pack_into("<I", bad, hdr_len + func_off, 4)
        parse_btf_ext(bytes(bad), btf)
    with pytest.raises(BTFError, match="string offset"):
        bad = bytearray(data)
        struct.pack_into("<I", bad, hdr_len + func_off + 4, 0x7FFFFFFF)
        parse_btf_ext(bytes(bad), btf)
    with pytest.raises(BTFError, match="type id 123456"):
        bad = bytearray(data)
        struct.pack_into("<I", bad, hdr_len + func_off + 12 + 4, 123456)
        parse_btf_ext(bytes(bad), btf)


def test_btf_ext_core_relos(btf):
    """A hand-made hdr_len 32 BTF.ext with one CO-RE relocation (clang only emits them for
    preserve_access_index types, which btf_types.c has none of)."""
    pos = btf.strings.index(b"xdp\0")
    acc = btf.strings.index(b"0\0") if b"0\0" in btf.strings else 0
    core = struct.pack("<I", 16) + struct.pack("<II", pos, 1) + struct.pack("<IIII", 8, 33, acc, 0)
    hdr = struct.pack("<HBBIIIIIII", 0xEB9F, 1, 0, 32, 0, 0, 0, 0, 0, len(core))
    ext = parse_btf_ext(hdr + core, btf)
    assert ext.core_relos == [B.CoreRelo("xdp", 8, 33, btf.string(acc), 0)]
    assert ext.core_relos[0].insn_index == 1 and ext.core_relo_rec_size == 16
