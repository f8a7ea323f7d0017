"""BTF / BTF.ext parsing (bpfjit.runtime.btf) against tests/progs/btf_types.o and synthetic BTF.

Expected kinds, sizes and offsets are written by hand from tests/progs/btf_types.c and the C layout
rules (see the comments there), never produced by the parser. The ELF sections are read directly
with pyelftools so these tests do not depend on the object loader.

Malformed input (truncations, seeded random byte flips, hand-built corrupt BTF) must give a
BTFError or a successful parse, never another exception.
"""
from __future__ import annotations

import pathlib
import random
import struct
from functools import partial

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from bpfjit.errors import BPFError, BTFError
from bpfjit.runtime import btf as B
from bpfjit.runtime.btf import Kind, parse_btf, parse_btf_ext, map_definitions
from bpfjit.runtime.map_types import MapType

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
OBJ = PROGS / "btf_types.o"
SRC = PROGS / "btf_types.c"
SRC_LINES = SRC.read_text().splitlines()

BPF_F_NO_PREALLOC = 1


# --- the object -----------------------------------------------------------------------------------

class Obj:
    """The raw sections and symbols of btf_types.o, read with pyelftools."""

    def __init__(self, path: pathlib.Path):
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            self.sections = {s.name: s.data() for s in elf.iter_sections()}
            self.sizes = {s.name: s["sh_size"] for s in elf.iter_sections()}
            self.index = {s.name: i for i, s in enumerate(elf.iter_sections())}
            symtab = elf.get_section_by_name(".symtab")
            self.symbols = {}
            for sym in symtab.iter_symbols():
                if sym.name and sym["st_info"]["type"] in ("STT_OBJECT", "STT_FUNC"):
                    self.symbols[sym.name] = (sym["st_shndx"], sym["st_value"], sym["st_size"],
                                              sym["st_other"]["visibility"])
            self.relocs = {}
            for s in elf.iter_sections():
                if isinstance(s, RelocationSection):
                    self.relocs[s.name] = [(r["r_offset"], symtab.get_symbol(r["r_info_sym"]).name)
                                           for r in s.iter_relocations()]

    def fixed_btf(self) -> B.BTF:
        """parse .BTF and apply the loader's DATASEC fix-up from the ELF symbol table."""
        b = parse_btf(self.sections[".BTF"])
        for name, variables in b.datasecs().items():
            offsets = {v.name: self.symbols[v.name][1] for v in variables}
            hidden = [v.name for v in variables
                      if self.symbols[v.name][3] in ("STV_HIDDEN", "STV_INTERNAL")]
            b.fix_datasec(name, self.sizes[name], offsets, hidden)
        return b


@pytest.fixture(scope="module")
def obj() -> Obj:
    return Obj(OBJ)


@pytest.fixture(scope="module")
def btf(obj) -> B.BTF:
    return parse_btf(obj.sections[".BTF"])


@pytest.fixture(scope="module")
def fixed(obj) -> B.BTF:
    return obj.fixed_btf()


@pytest.fixture(scope="module")
def ext(obj, btf) -> B.BTFExt:
    return parse_btf_ext(obj.sections[".BTF.ext"], btf)


def struct_id(b: B.BTF, name: str, kind=Kind.STRUCT) -> int:
    tid = b.find(name, kind)
    assert tid is not None, name
    return tid


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


# --- values ---------------------------------------------------------------------------------------

def pkt_stats_bytes() -> tuple[bytes, dict]:
    """A pkt_stats image built field by field with struct.pack, and the value it holds."""
    hdr_word0 = 4 | (5 << 4) | (0xAB << 8) | (0x1234 << 16)
    hdr_word1 = (-7 & 0x1F) | (0x5A5A5A5 << 5)
    hdr = struct.pack("<IIHB", hdr_word0, hdr_word1, 8080, 1 | (0x55 << 1)) + b"\0"
    data = struct.pack("<QQ", 10, 1500) + hdr + struct.pack("<hh", -2, 0x1234)
    data += struct.pack("<4I", 1, 2, 3, 0xFFFFFFFF) + struct.pack("<6H", 1, 2, 3, 4, 5, 6)
    data += struct.pack("<f", 0.5) + struct.pack("<d", -2.25) + struct.pack("<i", -3)
    data += b"ab\xffc\0\0" + b"\x01" + struct.pack("<b", -128) + bytes(4)
    data += struct.pack("<q", -(1 << 40)) + struct.pack("<Q", 0xFEDCBA9876543210)
    assert len(data) == 104
    value = {
        "packets": 10, "bytes": 1500,
        "hdr": {"version": 4, "ihl": 5, "tos": 0xAB, "len": 0x1234, "delta": -7,
                "spare": 0x5A5A5A5, "port": 8080, "tiny": 1, "tag": 0x55},
        "w": {"u32": 0x1234FFFE, "s16": [-2, 0x1234], "bytes": [0xFE, 0xFF, 0x34, 0x12],
              "halves": {"lo": 0xFFFE, "hi": 0x1234}},
        "counts": [1, 2, 3, 0xFFFFFFFF], "grid": [[1, 2, 3], [4, 5, 6]],
        "ratio": 0.5, "avg": -2.25, "color": -3, "name": [97, 98, -1, 99, 0, 0],
        "seen": True, "delta": -128, "balance": -(1 << 40), "wide": 0xFEDCBA9876543210,
    }
    return data, value


def test_format_pkt_stats(btf):
    data, value = pkt_stats_bytes()
    assert btf.format_value(struct_id(btf, "pkt_stats"), data) == value


def test_encode_pkt_stats_round_trip(btf):
    tid = struct_id(btf, "pkt_stats")
    data, value = pkt_stats_bytes()
    assert btf.encode_value(tid, value) == data
    assert btf.encode_value(tid, btf.format_value(tid, data)) == data
    assert btf.encode_value(tid, data) == data  # raw bytes of the exact size


def test_random_round_trips(btf):
    """Random images with zeroed padding and 0/1 bools survive format -> encode."""
    rng = random.Random(1234)
    tid = struct_id(btf, "pkt_stats")
    hdr = struct_id(btf, "hdr_bits")
    for _ in range(200):
        v = btf.format_value(hdr, rng.randbytes(12))
        image = btf.encode_value(hdr, v)
        assert image[11] == 0 and btf.format_value(hdr, image) == v
        data = bytearray(rng.randbytes(104))
        data[82] &= 1  # _Bool
        data[84:88] = bytes(4)  # padding
        data[27] = 0  # hdr_bits tail padding
        data[60:64] = struct.pack("<f", rng.random())  # no NaN payload games
        data[64:72] = struct.pack("<d", rng.random())
        assert btf.encode_value(tid, btf.format_value(tid, bytes(data))) == bytes(data)


def test_encode_bitfields_individually(btf):
    hdr = struct_id(btf, "hdr_bits")
    assert btf.encode_value(hdr, {"ihl": 0xF}) == b"\xf0" + bytes(11)
    assert btf.encode_value(hdr, {"delta": -1}) == bytes(4) + b"\x1f" + bytes(7)
    assert btf.encode_value(hdr, {"spare": (1 << 27) - 1}) == \
        bytes(4) + struct.pack("<I", 0xFFFFFFE0) + bytes(4)
    assert btf.encode_value(hdr, {"tag": 0x7F, "tiny": 0}) == bytes(10) + b"\xfe\x00"
    assert btf.encode_value(hdr, {"len": 0xFFFF, "version": 1}) == b"\x01\x00\xff\xff" + bytes(8)
    with pytest.raises(BTFError, match="does not fit in 4 bits"):
        btf.encode_value(hdr, {"ihl": 16})
    with pytest.raises(BTFError, match="does not fit in 5 bits"):
        btf.encode_value(hdr, {"delta": -17})


def test_encode_defaults_and_errors(btf):
    tid = struct_id(btf, "pkt_stats")
    assert btf.encode_value(tid, {}) == bytes(104)
    part = btf.encode_value(tid, {"grid": [[0, 0, 0], [0, 0, 0x0102]], "name": b"xyz\0\0\0"})
    assert part[58:60] == b"\x02\x01" and part[76:82] == b"xyz\0\0\0"
    with pytest.raises(BTFError, match="no member 'nope'"):
        btf.encode_value(tid, {"nope": 1})
    with pytest.raises(BTFError, match="expected 4 elements"):
        btf.encode_value(tid, {"counts": [1, 2, 3]})
    with pytest.raises(BTFError, match="expected 2 elements"):
        btf.encode_value(tid, {"grid": [[1, 2, 3]]})
    with pytest.raises(BTFError, match="5 bytes given, expected 6"):
        btf.encode_value(tid, {"name": b"short"})
    with pytest.raises(BTFError, match="does not fit in 64 bits"):
        btf.encode_value(tid, {"packets": 1 << 64})
    with pytest.raises(BTFError, match="expected an int"):
        btf.encode_value(tid, {"packets": "10"})
    with pytest.raises(BTFError, match="expected a dict"):
        btf.encode_value(tid, [1, 2])
    with pytest.raises(BTFError, match="value of 103 bytes"):
        btf.format_value(tid, bytes(103))
    # both signed and unsigned spellings of a pattern are accepted
    assert btf.encode_value(tid, {"packets": -1})[:8] == b"\xff" * 8
    with pytest.raises(BTFError):
        btf.encode_value(struct_id(btf, "xdp_btf", Kind.FUNC), 0)


def test_encode_scalars_and_pointers(btf):
    color = struct_id(btf, "color", Kind.ENUM)
    assert btf.encode_value(color, -3) == struct.pack("<i", -3)
    assert btf.format_value(color, struct.pack("<i", -3)) == -3
    wide = struct_id(btf, "wide", Kind.ENUM64)
    assert btf.format_value(wide, struct.pack("<Q", 1 << 63)) == 1 << 63
    lv = struct_id(btf, "locked_val")
    image = btf.encode_value(lv, {"owned": 0x1122334455667788, "pair": {"slot": [1, 2]},
                                  "lock": {"val": 1}, "timer": bytes(16)})
    assert image[32:40] == struct.pack("<Q", 0x1122334455667788)
    assert image[56:72] == struct.pack("<QQ", 1, 2) and image[8:12] == struct.pack("<I", 1)
    value = btf.format_value(lv, image)
    assert value["timer"] == {} and value["pair"] == {"slot": [1, 2]}
    assert value["lock"] == {"val": 1}
    assert btf.encode_value(lv, value) == image


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


# --- fuzzing: truncation and byte flips ---------------------------------------------------------

def exercise(data: bytes, ext_data: bytes | None = None) -> str:
    """Parse and use everything; only BTFError may escape. Returns 'ok' or 'error'."""
    try:
        b = parse_btf(data)
    except BTFError:
        return "error"
    B.dump_records(b)
    B.dump_lines(b)
    for t in b.types:
        for query in (partial(B.describe, b), b.size, b.resolve, b.find_special_fields,
                      b.alignment):
            try:
                query(t.id)
            except BTFError:
                pass
        try:
            size = b.size(t.id)
        except BTFError:
            continue
        if size <= 4096:
            try:
                value = b.format_value(t.id, bytes(range(256)) * (size // 256) + bytes(size % 256))
                b.encode_value(t.id, value)
            except BTFError:
                pass
    try:
        b.datasecs()
        map_definitions(b)
    except BTFError:
        pass
    if ext_data is not None:
        try:
            parse_btf_ext(ext_data, b)
        except BTFError:
            pass
    return "ok"


def test_truncated_btf(obj):
    data = obj.sections[".BTF"]
    rng = random.Random(7)
    cuts = set(range(0, 80)) | {rng.randrange(len(data)) for _ in range(150)} | \
        set(range(len(data) - 40, len(data)))
    outcomes = {exercise(data[:cut]) for cut in sorted(cuts)}
    assert outcomes == {"error"}  # every strict prefix is malformed (the string table is cut)
    assert exercise(data) == "ok"


def test_truncated_btf_ext(obj, btf):
    data = obj.sections[".BTF.ext"]
    for cut in range(len(data)):
        with pytest.raises(BTFError):
            parse_btf_ext(data[:cut], btf)


def _flip(data: bytes, rng: random.Random, n: int) -> bytes:
    buf = bytearray(data)
    for _ in range(n):
        pos = rng.randrange(len(buf))
        how = rng.randrange(4)
        if how == 0:
            buf[pos] ^= 1 << rng.randrange(8)
        elif how == 1:
            buf[pos] = rng.randrange(256)
        elif how == 2:
            buf[pos] = rng.choice([0, 0xFF, 0x7F, 0x80, 0x13])
        else:  # a whole u32 (ids, offsets, info words)
            pos -= pos % 4
            struct.pack_into("<I", buf, min(pos, len(buf) - 4),
                             rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(1 << 32),
                                         rng.randrange(200), 0x13000000, 0x80000000]))
    return bytes(buf)


def test_random_byte_flips_btf(obj):
    data, ext_data = obj.sections[".BTF"], obj.sections[".BTF.ext"]
    rng = random.Random(20260801)
    seen = {"ok": 0, "error": 0}
    for i in range(300):
        seen[exercise(_flip(data, rng, 1 + i % 4), ext_data)] += 1
    assert seen["ok"] > 20 and seen["error"] > 20, seen


def test_random_byte_flips_btf_ext(obj, btf):
    data = obj.sections[".BTF.ext"]
    rng = random.Random(99)
    ok = err = 0
    for i in range(400):
        try:
            parse_btf_ext(_flip(data, rng, 1 + i % 3), btf)
            ok += 1
        except BTFError:
            err += 1
    assert ok and err


def test_random_bytes_never_crash():
    rng = random.Random(5)
    for _ in range(300):
        n = rng.randrange(64)
        junk = rng.randbytes(n)
        if rng.random() < 0.7:  # a plausible header so the body gets parsed
            junk = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, rng.randrange(64), 0,
                               rng.randrange(64)) + junk
        assert exercise(junk) in ("ok", "error")


def test_errors_are_bpf_errors():
    assert issubclass(BTFError, BPFError)


@pytest.mark.slow
def test_truncated_btf_every_cut(obj):
    data = obj.sections[".BTF"]
    assert {exercise(data[:cut]) for cut in range(len(data))} == {"error"}


@pytest.mark.slow
def test_random_byte_flips_btf_long(obj):
    data, ext_data = obj.sections[".BTF"], obj.sections[".BTF.ext"]
    rng = random.Random(1)
    for i in range(5000):
        exercise(_flip(data, rng, 1 + i % 6), ext_data)


@pytest.mark.slow
def test_vmlinux_btf():
    path = pathlib.Path("/sys/kernel/btf/vmlinux")
    if not path.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux")
    b = parse_btf(path.read_bytes())
    task = b.find("task_struct", Kind.STRUCT)
    assert task is not None and b.size(task) > 1000
    for t in b.types:
        B.describe(b, t.id)
        if isinstance(t, B.Struct) and t.size <= 4096:
            data = bytes(t.size)
            assert b.encode_value(t.id, b.format_value(t.id, data)) == data
