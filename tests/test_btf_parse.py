"""BTF / BTF.ext parsing (bpfjit.runtime.btf) of tests/progs/btf_types.o: header, types, data
sections, map definitions, special fields and BTF.ext records.

Expected kinds, sizes and offsets are written by hand from tests/progs/btf_types.c and the C layout
rules (see the comments there), never produced by the parser. The ELF sections are read directly
with pyelftools (tests/btf_cases.py) so these tests do not depend on the object loader.
"""
from __future__ import annotations

import pathlib
import struct

import pytest

from bpfjit.errors import BTFError
from bpfjit.runtime import btf as B
from bpfjit.runtime.btf import Kind, parse_btf, parse_btf_ext, map_definitions
from bpfjit.runtime.map_types import MapType

from btf_cases import btf_fixture, obj_fixture  # noqa: F401 - the obj and btf fixtures
from btf_cases import SRC_LINES, struct_id

BPF_F_NO_PREALLOC = 1


@pytest.fixture(scope="module")
def fixed(obj) -> B.BTF:
    return obj.fixed_btf()


@pytest.fixture(scope="module")
def ext(obj, btf) -> B.BTFExt:
    return parse_btf_ext(obj.sections[".BTF.ext"], btf)


def layout(b: B.BTF, tid: int) -> list[tuple[str, int, int]]:
    """(name, bit offset, bitfield size) of each member."""
    t = b.type(tid)
    return [(m.name, m.bit_offset, m.bitfield_size) for m in t.members]


# --- header and types ----------------------------------------------------------------------------

def test_header(btf):
    h = btf.header
    assert (h.magic, h.version, h.flags, h.hdr_len) == (0xEB9F, 1, 0, 24)
    assert btf.types[0].kind == Kind.UNKN and B.describe(btf, 0) == "void"
    assert len(btf) == len(btf.types) > 100


def test_bitfield_struct(btf):
    tid = struct_id(btf, "hdr_bits")
    t = btf.type(tid)
    assert t.kind == Kind.STRUCT and t.kind_flag and t.size == 12
    assert layout(btf, tid) == [
        ("version", 0, 4), ("ihl", 4, 4), ("tos", 8, 8), ("len", 16, 16), ("delta", 32, 5),
        ("spare", 37, 27), ("port", 64, 0), ("tiny", 80, 1), ("tag", 81, 7)]
    assert B.describe(btf, t.member("delta").type) == "__s32"
    assert B.describe(btf, t.member("tag").type) == "__u8"
    assert btf.alignment(tid) == 4


def test_union(btf):
    tid = struct_id(btf, "word", Kind.UNION)
    t = btf.type(tid)
    assert t.is_union and t.size == 4 and not t.kind_flag
    assert layout(btf, tid) == [("u32", 0, 0), ("s16", 0, 0), ("bytes", 0, 0), ("halves", 0, 0)]
    assert B.describe(btf, t.member("s16").type) == "__s16[2]"
    assert B.describe(btf, t.member("bytes").type) == "__u8[4]"
    halves = btf.resolved(t.member("halves").type)
    assert halves.kind == Kind.STRUCT and halves.name == "" and halves.size == 4
    assert layout(btf, halves.id) == [("lo", 0, 0), ("hi", 16, 0)]
    assert B.describe(btf, halves.id) == "struct {...}"


def test_pkt_stats_layout(btf):
    tid = struct_id(btf, "pkt_stats")
    t = btf.type(tid)
    assert t.size == 104 and btf.size(tid) == 104 and btf.alignment(tid) == 8
    byte_offsets = {m.name: m.bit_offset // 8 for m in t.members}
    assert byte_offsets == {
        "packets": 0, "bytes": 8, "hdr": 16, "w": 28, "counts": 32, "grid": 48, "ratio": 60,
        "avg": 64, "color": 72, "name": 76, "seen": 82, "delta": 83, "balance": 88, "wide": 96}
    assert all(m.bitfield_size == 0 for m in t.members) and not t.kind_flag
    described = {m.name: B.describe(btf, m.type) for m in t.members}
    assert described == {
        "packets": "__u64", "bytes": "__u64", "hdr": "struct hdr_bits", "w": "union word",
        "counts": "pkt_counter_t[4]", "grid": "__u16[2][3]", "ratio": "float", "avg": "double",
        "color": "enum color", "name": "char[6]", "seen": "_Bool", "delta": "__s8",
        "balance": "__s64", "wide": "enum wide"}
    sizes = {m.name: btf.size(m.type) for m in t.members}
    assert sizes == {"packets": 8, "bytes": 8, "hdr": 12, "w": 4, "counts": 16, "grid": 12,
                     "ratio": 4, "avg": 8, "color": 4, "name": 6, "seen": 1, "delta": 1,
                     "balance": 8, "wide": 8}


def test_arrays(btf):
    t = btf.type(struct_id(btf, "pkt_stats"))
    grid = btf.type(t.member("grid").type)
    assert grid.kind == Kind.ARRAY and grid.nelems == 2
    row = btf.type(grid.type)
    assert row.kind == Kind.ARRAY and row.nelems == 3 and B.describe(btf, row.type) == "__u16"
    assert btf.type(grid.index_type).kind == Kind.INT
    name = btf.type(t.member("name").type)
    char = btf.type(name.type)
    assert char.kind == Kind.INT and char.name == "char" and char.size == 1
    assert char.signed  # char is signed on the BPF target


def test_ints_floats_bool(btf):
    t = btf.type(struct_id(btf, "pkt_stats"))
    for member, (name, size, signed) in {
            "packets": ("unsigned long long", 8, False), "balance": ("long long", 8, True),
            "delta": ("signed char", 1, True)}.items():
        i = btf.resolved(t.member(member).type)
        assert (i.kind, i.name, i.size, i.bits, i.bit_offset, i.signed) == \
            (Kind.INT, name, size, 8 * size, 0, signed)
    seen = btf.resolved(t.member("seen").type)
    assert seen.is_bool and seen.size == 1
    ratio, avg = btf.type(t.member("ratio").type), btf.type(t.member("avg").type)
    assert (ratio.kind, ratio.size, avg.kind, avg.size) == (Kind.FLOAT, 4, Kind.FLOAT, 8)


def test_enums(btf):
    color = btf.type(struct_id(btf, "color", Kind.ENUM))
    assert color.size == 4 and color.signed
    assert [(v.name, v.value) for v in color.values] == [
        ("COLOR_RED", 0), ("COLOR_GREEN", 1), ("COLOR_BLUE", 7), ("COLOR_NONE", -3)]
    wide = btf.type(struct_id(btf, "wide", Kind.ENUM64))
    assert wide.size == 8 and not wide.signed
    assert [(v.name, v.value) for v in wide.values] == [
        ("WIDE_SMALL", 1), ("WIDE_BIG", 1 << 32), ("WIDE_TOP", 0xFEDCBA9876543210)]


def test_typedef_chain(btf):
    v = struct_id(btf, "vcounter_t", Kind.TYPEDEF)
    chain = []
    cur = v
    while btf.type(cur).kind in B.MODIFIER_KINDS:
        t = btf.type(cur)
        chain.append((t.kind, t.name))
        cur = t.type
    assert chain == [(Kind.TYPEDEF, "vcounter_t"), (Kind.VOLATILE, ""),
                     (Kind.TYPEDEF, "pkt_counter_t"), (Kind.TYPEDEF, "counter_t"),
                     (Kind.TYPEDEF, "__u32")]
    base = btf.resolved(v)
    assert (base.kind, base.name, base.size) == (Kind.INT, "unsigned int", 4)
    assert btf.resolve(v) == cur == base.id
    assert btf.size(v) == 4
    assert B.describe(btf, btf.type(v).type) == "volatile pkt_counter_t"


def test_special_structs_and_kptrs_in_btf(btf):
    lv = btf.type(struct_id(btf, "locked_val"))
    assert lv.size == 72
    assert {m.name: m.bit_offset // 8 for m in lv.members} == {
        "counter": 0, "lock": 8, "pad": 12, "timer": 16, "owned": 32, "peek": 40, "pcpu": 48,
        "pair": 56}
    assert btf.size(struct_id(btf, "bpf_spin_lock")) == 4
    timer = btf.type(struct_id(btf, "bpf_timer"))
    assert timer.size == 16 and timer.members == ()  # anonymous bitfields are not emitted
    owned = btf.type(lv.member("owned").type)
    assert owned.kind == Kind.PTR
    tag = btf.type(owned.type)
    assert (tag.kind, tag.name) == (Kind.TYPE_TAG, "kptr")
    assert btf.resolve(owned.type) == struct_id(btf, "node_data")
    assert btf.size(lv.member("owned").type) == 8


def test_functions(btf):
    for name in ("xdp_btf", "tail_target"):
        f = btf.type(struct_id(btf, name, Kind.FUNC))
        assert f.linkage == B.FUNC_GLOBAL
        proto = btf.type(f.type)
        assert proto.kind == Kind.FUNC_PROTO and not proto.variadic
        assert B.describe(btf, proto.return_type) == "int"
        assert [(p.name, B.describe(btf, p.type)) for p in proto.params] == [
            ("ctx", "struct xdp_md *")]
        assert B.describe(btf, f.id) == f"int {name}(struct xdp_md *ctx)"
    xdp_md = btf.type(struct_id(btf, "xdp_md"))
    assert xdp_md.size == 24
    assert [(m.name, m.bit_offset // 8) for m in xdp_md.members] == [
        ("data", 0), ("data_end", 4), ("data_meta", 8), ("ingress_ifindex", 12),
        ("rx_queue_index", 16), ("egress_ifindex", 20)]
    with pytest.raises(BTFError, match="FUNC"):
        btf.size(struct_id(btf, "xdp_btf", Kind.FUNC))
    with pytest.raises(BTFError):
        btf.size(0)


def test_find_and_lookups(btf):
    assert btf.find("no_such_type") is None
    assert btf.find("pkt_stats", Kind.UNION) is None
    assert btf.type(struct_id(btf, "pkt_stats")).name == "pkt_stats"
    with pytest.raises(BTFError, match="type id 100000"):
        btf.type(100000)
    with pytest.raises(BTFError, match="type id -1"):
        btf.type(-1)


# --- data sections -----------------------------------------------------------------------------

# (var name, size, linkage), by hand from the C source.
EXPECTED_DATASECS = {
    ".rodata": {("cfg_threshold", 4, 1), ("cfg_mode", 1, 1)},
    ".data": {("data_counter", 8, 1), ("data_hits", 4, 1)},
    ".bss": {("last_stats", 104, 1), ("bss_counter", 4, 1)},
    ".data.custom": {("custom_val", 4, 1), ("custom_static", 8, 0)},
    "license": {("LICENSE", 4, 1)},
}
MAP_NAMES = {"stats_map", "sized_hash", "inner_a", "inner_b", "outer", "jmp_table", "events",
             "seen_filter", "lock_map"}


def test_datasecs_raw(btf, obj):
    """clang leaves DATASEC sizes (and global variables' offsets) at zero: the loader fixes them."""
    secs = btf.datasecs()
    assert set(secs) == set(EXPECTED_DATASECS) | {".maps"}
    for name, expected in EXPECTED_DATASECS.items():
        assert {(v.name, v.size, v.linkage) for v in secs[name]} == expected
    assert {v.name for v in secs[".maps"]} == MAP_NAMES
    # clang-19 (SPEC 10.14): every DATASEC has size 0 and every *global* variable offset 0, which
    # is why the loader must call fix_datasec; static variables get their real offset.
    for name, variables in secs.items():
        assert btf.datasec(name).size == 0
        for v in variables:
            if v.linkage == B.VAR_GLOBAL_ALLOCATED:
                assert v.offset == 0, v
    assert [v.offset for v in secs[".data.custom"] if v.name == "custom_static"] == [8]


def test_fix_datasec(fixed, obj):
    secs = fixed.datasecs()
    # C layout of the fixed-size sections (a u32 then a u8; a u64 then a u32)
    assert [(v.name, v.offset) for v in secs[".rodata"]] == [("cfg_threshold", 0), ("cfg_mode", 4)]
    assert [(v.name, v.offset) for v in secs[".data"]] == [("data_counter", 0), ("data_hits", 8)]
    assert [(v.name, v.offset) for v in secs[".data.custom"]] == [("custom_val", 0),
                                                                  ("custom_static", 8)]
    for name, variables in secs.items():
        ds = fixed.datasec(name)
        assert ds.size == obj.sizes[name]
        assert [v.offset for v in variables] == sorted(v.offset for v in variables)
        for v in variables:
            shndx, value, size, _vis = obj.symbols[v.name]
            assert (v.offset, v.size) == (value, size)
            assert shndx == obj.index[name]
            var = fixed.type(v.type_id)
            assert v.offset % fixed.alignment(var.type) == 0
        for a, b in zip(variables, variables[1:]):
            assert a.offset + a.size <= b.offset
    assert obj.sizes[".rodata"] == 5 and obj.sizes[".data"] == 12
    assert fixed.format_value(fixed.find(".rodata", Kind.DATASEC), obj.sections[".rodata"]) == {
        "cfg_threshold": 100, "cfg_mode": 2}
    assert fixed.format_value(fixed.find(".data", Kind.DATASEC), obj.sections[".data"]) == {
        "data_counter": 5, "data_hits": 3}
    assert fixed.format_value(fixed.find(".data.custom", Kind.DATASEC),
                              obj.sections[".data.custom"]) == {"custom_val": 42,
                                                                "custom_static": 7}
    assert fixed.format_value(fixed.find("license", Kind.DATASEC), obj.sections["license"]) == {
        "LICENSE": list(b"GPL\0")}


def test_fix_datasec_errors_and_hidden(obj):
    b = parse_btf(obj.sections[".BTF"])
    with pytest.raises(BTFError, match="data_hits"):
        b.fix_datasec(".data", 12, {"data_counter": 0})
    with pytest.raises(BTFError, match="does not fit"):
        b.fix_datasec(".data", 12, {"data_counter": 0, "data_hits": 10})
    with pytest.raises(BTFError, match="no DATASEC"):
        b.fix_datasec(".nope", 4, {})
    # hidden symbols become static (libbpf btf_fixup_datasec), which makes the section non-mmapable
    b.fix_datasec(".data", 12, {"data_counter": 0, "data_hits": 8}, static_names=["data_hits"])
    linkages = {v.name: v.linkage for v in b.datasecs()[".data"]}
    assert linkages == {"data_counter": 1, "data_hits": 0}


def test_format_encode_data_section_image(fixed):
    ds = fixed.find(".data", Kind.DATASEC)
    image = fixed.encode_value(ds, {"data_hits": 9})
    assert image == bytes(8) + struct.pack("<I", 9)
    with pytest.raises(BTFError, match="no variable 'nope'"):
        fixed.encode_value(ds, {"nope": 1})


# --- maps -----------------------------------------------------------------------------------------

def test_map_definitions(fixed, obj):
    u32, u64 = struct_id(fixed, "__u32", Kind.TYPEDEF), struct_id(fixed, "__u64", Kind.TYPEDEF)
    pkt_stats, locked_val = struct_id(fixed, "pkt_stats"), struct_id(fixed, "locked_val")
    defs = {d.name: d for d in map_definitions(fixed, obj.sizes[".maps"])}
    assert set(defs) == MAP_NAMES

    def check(name, type_, key_size, value_size, max_entries, key_type_id=0, value_type_id=0,
              **extra):
        d = defs[name]
        assert (d.type, d.key_size, d.value_size, d.max_entries, d.key_type_id,
                d.value_type_id) == (type_, key_size, value_size, max_entries, key_type_id,
                                     value_type_id), name
        for k, v in {"map_flags": 0, "numa_node": 0, "pinning": 0, "map_extra": 0,
                     "inner": None, "values_kind": None, **extra}.items():
            assert getattr(d, k) == v, (name, k)
        assert d.offset == obj.symbols[name][1], name
        assert d.size == obj.symbols[name][2], name
        assert fixed.size(d.def_type_id) == d.size or d.values_kind, name

    check("stats_map", MapType.ARRAY, 4, 104, 16, u32, pkt_stats)
    check("sized_hash", MapType.HASH, 8, 16, 128, map_flags=BPF_F_NO_PREALLOC)
    check("inner_a", MapType.ARRAY, 4, 8, 4, u32, u64)
    check("inner_b", MapType.ARRAY, 4, 8, 4, u32, u64)
    check("outer", MapType.ARRAY_OF_MAPS, 4, 4, 2, values_kind="maps", inner=defs["outer"].inner)
    check("jmp_table", MapType.PROG_ARRAY, 4, 4, 4, values_kind="progs")
    check("events", MapType.RINGBUF, 0, 0, 4096)
    check("seen_filter", MapType.BLOOM_FILTER, 0, 4, 64, 0, u32, map_extra=3)
    check("lock_map", MapType.HASH, 4, 72, 8, u32, locked_val, pinning=B.PIN_BY_NAME)

    inner = defs["outer"].inner
    assert (inner.type, inner.key_size, inner.value_size, inner.max_entries, inner.key_type_id,
            inner.value_type_id, inner.inner) == (MapType.ARRAY, 4, 8, 4, u32, u64, None)
    assert inner.name == "outer.inner"
    assert defs["sized_hash"].present == {"type", "max_entries", "key_size", "value_size",
                                          "map_flags"}


def test_map_values_relocations_land_in_values(fixed, obj):
    """.rel.maps initialisers point into the `values` array of outer / jmp_table (offset 24)."""
    defs = {d.name: d for d in map_definitions(fixed, obj.sizes[".maps"])}
    relocs = sorted(obj.relocs[".rel.maps"])
    outer, jmp = defs["outer"].offset, defs["jmp_table"].offset
    assert relocs == sorted([(outer + 24, "inner_a"), (outer + 32, "inner_b"),
                             (jmp + 24 + 8, "tail_target")])


def test_map_definitions_need_fixed_datasec(btf, obj):
    with pytest.raises(BTFError, match="overlap"):
        map_definitions(btf, obj.sizes[".maps"])
    with pytest.raises(BTFError, match="past the end of .maps"):
        b = obj.fixed_btf()
        map_definitions(b, 100)


def test_map_types_match_uapi():
    header = pathlib.Path("/usr/include/linux/bpf.h")
    if not header.exists():
        pytest.skip("no uapi header")
    text = header.read_text()
    body = text[text.index("enum bpf_map_type {"):]
    body = body[:body.index("};")]
    names = [line.strip().rstrip(",").split("=")[0].strip() for line in body.splitlines()[1:]
             if line.strip().startswith("BPF_MAP_TYPE_")]
    for value, name in enumerate(names):  # the header has no explicit values
        assert MapType[name[len("BPF_MAP_TYPE_"):]] == value, name
    assert MapType.INSN_ARRAY == 34 and MapType.ARENA == 33


# --- special fields -------------------------------------------------------------------------------

def test_special_fields(btf):
    lv = struct_id(btf, "locked_val")
    node = struct_id(btf, "node_data")
    sf = btf.find_special_fields(lv)
    assert sf.spin_lock == 8 and sf.timer == 16 and sf.others == ()
    assert [(k.offset, k.tag, k.type_id) for k in sf.kptrs] == [
        (32, "kptr", node), (40, "kptr_untrusted", node), (48, "percpu_kptr", node),
        (56, "kptr", node), (64, "kptr", node)]
    assert btf.find_special_fields(struct_id(btf, "pkt_stats")).empty
    assert btf.find_special_fields(struct_id(btf, "__u32", Kind.TYPEDEF)).empty


# --- BTF.ext -------------------------------------------------------------------------------------

def test_func_info(ext, btf, obj):
    assert set(ext.func_info) == {"xdp"}
    assert ext.func_info_rec_size == 8 and ext.line_info_rec_size == 16
    infos = ext.func_info["xdp"]
    got = sorted((fi.insn_off_bytes, btf.type(fi.type_id).name) for fi in infos)
    want = sorted((obj.symbols[n][1], n) for n in ("xdp_btf", "tail_target"))
    assert got == want
    for fi in infos:
        assert btf.type(fi.type_id).kind == Kind.FUNC
        assert fi.insn_index * 8 == fi.insn_off_bytes


def test_line_info(ext, obj):
    lines = ext.line_info["xdp"]
    assert lines == sorted(lines, key=lambda li: li.insn_off_bytes)
    for li in lines:
        assert li.file.endswith("btf_types.c")
        assert li.line_text == SRC_LINES[li.line - 1], li
        assert li.insn_off_bytes % 8 == 0 and li.insn_off_bytes < obj.sizes["xdp"]
    start = obj.symbols["xdp_btf"][1]
    first = [li for li in lines if li.insn_off_bytes == start]
    assert len(first) == 1
    want_line = SRC_LINES.index("int xdp_btf(struct xdp_md *ctx)") + 1
    assert (first[0].line, first[0].line_text) == (want_line, "int xdp_btf(struct xdp_md *ctx)")
    tail = [li for li in lines if li.insn_off_bytes == obj.symbols["tail_target"][1]][0]
    assert tail.line_text.strip() == "return XDP_DROP;" and tail.column == 2
    texts = {li.line_text.strip() for li in lines}
    assert "bpf_spin_lock(&lv->lock);" in texts
    assert ext.core_relos == []
