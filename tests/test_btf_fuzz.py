"""Malformed BTF / BTF.ext (bpfjit.runtime.btf): truncations and seeded random byte flips of
tests/progs/btf_types.o's sections, and random bytes, must give a BTFError or a successful parse,
never another exception.
"""
from __future__ import annotations

import pathlib
import random
import struct
from functools import partial

import pytest

from bpfjit.errors import BPFError, BTFError
from bpfjit.runtime import btf as B
from bpfjit.runtime.btf import Kind, parse_btf, parse_btf_ext, map_definitions

from btf_cases import btf_fixture, obj_fixture  # noqa: F401 - the obj and btf fixtures


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
