"""The native packet helpers (jit/native_packet.py) against their Python references
(runtime/xdp_helpers.py, runtime/skb_helpers.py), differentially: the same program with the same
random arguments and packet runs on every engine; the reference engine calls the Python helpers,
the JIT and the native interpreter the native twins (a verified program's), and every engine
must give the same return value, packet (data_out) and context (ctx_out). The arguments cover the
error cases: moves beyond the headroom, below the minimum size, past the page; offsets past the
packet, odd or too large; unknown flags; multi-buffer packets, which the native helpers hand to
Python."""
from __future__ import annotations

import random
import struct
import sys

import pytest

from bpfjit.errors import VerifierError
from bpfjit.jit import native_helpers
from bpfjit.program import Program
from bpfjit.runtime import skb_helpers, sock_helpers, xdp_helpers
from bpfjit.runtime.kernel_helpers import HELPER_IDS
from bpfjit.runtime.stdhelpers import standard_helpers
from test_skb_helpers import PULL_DATA
from test_xdp_helpers import LOAD

MASK64 = (1 << 64) - 1
H = HELPER_IDS
NATIVE = ("xdp_adjust_head", "xdp_adjust_meta", "xdp_adjust_tail", "xdp_get_buff_len", "skb_load_bytes",
          "skb_pull_data", "skb_store_bytes", "l3_csum_replace", "l4_csum_replace", "csum_diff", "xdp_load_bytes",
          "xdp_store_bytes", "get_hash_recalc", "skb_adjust_room", "skb_change_head", "skb_change_tail",
          "skb_vlan_push", "skb_vlan_pop", "skb_load_bytes_relative")


def program(text: str, prog_type: str) -> Program:
    return Program.from_asm(text, prog_type=prog_type, helpers=standard_helpers(print))


def outcomes(prog: Program, data: bytes, ctx: bytes | None = None) -> dict[str, tuple]:
    """Per engine: (retval, data_out, ctx_out) of one run."""
    results = {}
    for engine in ("reference", "jit", "interp"):
        result = prog.test_run(data, ctx=ctx, engine=engine)
        results[engine] = (result.retval, result.data_out, result.ctx_out)
    return results


def assert_engines_agree(prog: Program, data: bytes, ctx: bytes | None = None) -> tuple:
    results = outcomes(prog, data, ctx)
    assert results["jit"] == results["reference"]
    assert results["interp"] == results["reference"]
    return results["reference"]


def low_byte(reg: int) -> str:
    return f"and %r{reg}, 255"


# adjust_meta(meta), adjust_head(head), adjust_tail(tail); r0 = the three results' low bytes
# and, from bit 24, xdp_get_buff_len.
XDP_MOVES = f"""
    mov %r6, %r1
    mov %r1, %r6
    lddw %r2, {{meta}}
    call {H["xdp_adjust_meta"]}
    mov %r7, %r0
    {low_byte(7)}
    mov %r1, %r6
    lddw %r2, {{head}}
    call {H["xdp_adjust_head"]}
    {low_byte(0)}
    lsh %r0, 8
    or %r7, %r0
    mov %r1, %r6
    lddw %r2, {{tail}}
    call {H["xdp_adjust_tail"]}
    {low_byte(0)}
    lsh %r0, 16
    or %r7, %r0
    mov %r1, %r6
    call {H["xdp_get_buff_len"]}
    lsh %r0, 24
    or %r0, %r7
    exit
"""


def xdp_case(rng: random.Random) -> tuple[dict[str, int], bytes, bytes | None]:
    """Random moves (the headroom is 216 bytes, a linear packet at most 3520) and a random packet,
    some with metadata from ctx_in, some with frags."""
    size = rng.choice([14, 15, 60, 200, 1500, 3500, 3520, 3521, 5000])
    meta_len = rng.choice([0, 0, 4, 32]) if size >= 46 else 0
    data = bytes(rng.randrange(256) for _ in range(size))
    ctx = struct.pack("<6I", meta_len, size, 0, 0, 0, 0) if meta_len else None
    pick = lambda *spans: rng.choice([rng.randint(lo, hi) for lo, hi in spans])  # noqa: E731
    args = {"meta": pick((-300, 40), (-8, 0), (-256, -248)) & MASK64,
            "head": pick((-230, -200), (-40, 40), (size - 40, size + 10), (-2**31, -2**31 + 4)) & MASK64,
            "tail": pick((-size, 0), (0, 600), (3400 - size, 3700 - size), (2**32 - 20, 2**32 + 20)) & MASK64}
    return args, data, ctx


@pytest.mark.parametrize("seed", range(24))
def test_xdp_moves_match_the_reference(seed):
    rng = random.Random(seed)
    for _ in range(2):
        args, data, ctx = xdp_case(rng)
        assert_engines_agree(program(XDP_MOVES.format(**args), "xdp"), data, ctx)


@pytest.mark.parametrize("offset,expected", [(-216, 0), (-217, 0xEA), (46, 0), (47, 0xEA)])
def test_adjust_head_limits_on_every_engine(offset, expected):
    # 216 bytes of headroom past the xdp_frame; at least an Ethernet header (14) of 60 stays.
    prog = program(XDP_MOVES.format(meta=0, head=offset & MASK64, tail=0), "xdp")
    retval, data_out, _ = assert_engines_agree(prog, bytes(range(60)))
    assert retval >> 8 & 0xFF == expected
    assert len(data_out) == (60 - offset if expected == 0 else 60)


@pytest.mark.parametrize("tail,expected", [(3520 - 60, 0), (3520 - 59, 0xEA), (-46, 0), (-47, 0xEA)])
def test_adjust_tail_limits_on_every_engine(tail, expected):
    prog = program(XDP_MOVES.format(meta=0, head=0, tail=tail & MASK64), "xdp")
    retval, data_out, _ = assert_engines_agree(prog, bytes(range(60)))
    assert retval >> 16 & 0xFF == expected
    if tail > 0 and expected == 0:
        assert data_out == bytes(range(60)) + bytes(tail)


# skb_load_bytes(load_off, fp-64, size) then skb_store_bytes(store_off, fp-64, size, flags),
# l3_csum_replace and l4_csum_replace; r0 = the four results' low bytes.
SKB_REWRITE = f"""
    mov %r6, %r1
    lddw %r2, {{load_off}}
    mov %r3, %r10
    add %r3, -64
    mov %r4, {{size}}
    call {H["skb_load_bytes"]}
    mov %r7, %r0
    {low_byte(7)}
    mov %r1, %r6
    lddw %r2, {{store_off}}
    mov %r3, %r10
    add %r3, -64
    mov %r4, {{size}}
    lddw %r5, {{store_flags}}
    call {H["skb_store_bytes"]}
    {low_byte(0)}
    lsh %r0, 8
    or %r7, %r0
    mov %r1, %r6
    lddw %r2, {{l3_off}}
    lddw %r3, {{l3_old}}
    lddw %r4, {{l3_new}}
    lddw %r5, {{l3_flags}}
    call {H["l3_csum_replace"]}
    {low_byte(0)}
    lsh %r0, 16
    or %r7, %r0
    mov %r1, %r6
    lddw %r2, {{l4_off}}
    lddw %r3, {{l4_old}}
    lddw %r4, {{l4_new}}
    lddw %r5, {{l4_flags}}
    call {H["l4_csum_replace"]}
    {low_byte(0)}
    lsh %r0, 24
    or %r0, %r7
    exit
"""


def skb_case(rng: random.Random) -> tuple[dict[str, int], bytes]:
    size = rng.choice([14, 34, 60, 100, 1500])
    data = bytes(rng.randrange(256) for _ in range(size))
    offset = lambda: rng.choice([rng.randrange(size + 4), size - 2, size - 1, 0xFFFF, 0x10000,  # noqa: E731
                                 2**31, 2**32 - 2, 2**32 + 4])
    csum_flags = lambda: rng.choice([0, 2, 4, 1, 3, 8, 0x10 | 2, 0x20 | 2, 0x60 | 4, 0x20, 0x80 | 4,  # noqa: E731
                                     0x100, 1 << 40])
    word = lambda: rng.choice([0, rng.randrange(1 << 16), rng.randrange(1 << 32), rng.randrange(1 << 64)])  # noqa: E731
    args = {"load_off": offset(), "size": rng.randint(1, 64), "store_off": offset(),
            "store_flags": rng.choice([0, 1, 2, 3, 4, 1 << 33]),
            "l3_off": offset(), "l3_old": word(), "l3_new": word(), "l3_flags": csum_flags(),
            "l4_off": offset(), "l4_old": word(), "l4_new": word(), "l4_flags": csum_flags()}
    return args, data


@pytest.mark.parametrize("seed", range(24))
# lwt_xmit starts at the network header, as socket filters do (which may not rewrite packets)
@pytest.mark.parametrize("prog_type", ["tc", "lwt_xmit"])
def test_skb_rewrites_match_the_reference(seed, prog_type):
    rng = random.Random(seed)
    for _ in range(2):
        args, data = skb_case(rng)
        assert_engines_agree(program(SKB_REWRITE.format(**args), prog_type), data + bytes(14))


@pytest.mark.parametrize("flags", [0x20 | 2, 0x60 | 2])  # BPF_F_MARK_MANGLED_0 (| BPF_F_MARK_ENFORCE)
@pytest.mark.parametrize("checksum", [0, 0xFFFE, 0x1234])
def test_l4_mangled_zero_on_every_engine(flags, checksum):
    # A UDP checksum of 0 means "none": MARK_MANGLED_0 leaves it unless ENFORCE; a result of 0 is
    # written as 0xffff. old=1, new=0 turns 0xfffe into 0 before the mark.
    args = {"load_off": 0, "size": 1, "store_off": 0, "store_flags": 0, "l3_off": 1 << 20, "l3_old": 0,
            "l3_new": 0, "l3_flags": 0, "l4_off": 20, "l4_old": 1, "l4_new": 0, "l4_flags": flags}
    data = bytes(20) + struct.pack("<H", checksum) + bytes(40)
    retval, data_out, _ = assert_engines_agree(program(SKB_REWRITE.format(**args), "tc"), data)
    assert retval >> 24 == 0
    written = struct.unpack_from("<H", data_out, 20)[0]
    if checksum == 0 and not flags & 0x40:
        assert written == 0
    else:
        assert written != 0


# skb_load_bytes(0, fp-512, 512), then csum_diff(fp-512, from_size, fp-256, to_size, seed).
CSUM_DIFF = f"""
    mov %r2, 0
    mov %r3, %r10
    add %r3, -512
    mov %r4, 512
    call {H["skb_load_bytes"]}
    mov %r1, %r10
    add %r1, -512
    mov %r2, {{from_size}}
    mov %r3, %r10
    add %r3, -256
    mov %r4, {{to_size}}
    lddw %r5, {{seed}}
    call {H["csum_diff"]}
    exit
"""


@pytest.mark.parametrize("seed", range(16))
def test_csum_diff_matches_the_reference(seed):
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(600))
    for _ in range(3):
        args = {"from_size": rng.choice([0, 4, 20, 256, 255, 2, rng.randrange(64) * 4]),
                "to_size": rng.choice([0, 4, 20, 256, 254, rng.randrange(64) * 4]),
                "seed": rng.choice([0, 0xFFFF, rng.randrange(1 << 32), rng.randrange(1 << 64)])}
        retval, _, _ = assert_engines_agree(program(CSUM_DIFF.format(**args), "tc"), data)
        if (args["from_size"] | args["to_size"]) & 3:
            assert retval == -22 & MASK64
        else:
            assert retval >> 32 == 0


# -- the resizing skb helpers (jit/native_skb.py) --------------------------------------------------

# (helper, its arguments after the context as asm operands); the stack buffer at fp-64 is
# load_bytes_relative's.
RESIZE_CALLS = {
    "skb_adjust_room": lambda rng: [_any(rng, [-40, -20, -8, -4, 0, 4, 8, 20, 28, 40, 100, 300, 0xFFF, 0x1000,
                                                -0x1000, 2**32 - 20]),
                                    rng.choice([0, 1, 1, 2]), _any(rng, ROOM_FLAGS)],
    "skb_change_head": lambda rng: [_any(rng, [0, 4, 14, 100, 300, 5000, 2**31]), rng.choice([0, 0, 0, 1])],
    "skb_change_tail": lambda rng: [_any(rng, [0, 14, 20, 34, 60, 80, 200, 1000, 3000, 20000, 2**32 - 1]),
                                    rng.choice([0, 0, 0, 1])],
    "skb_vlan_push": lambda rng: [rng.choice([0x0081, 0xA888, 0x1234]), rng.choice([7, 0xFFFF, 0x12345])],
    "skb_vlan_pop": lambda rng: [],
    "skb_load_bytes_relative": lambda rng: [rng.choice([0, 10, 14, 40, 0xFFFF, 0x10000]), "%r10-64",
                                            rng.randint(1, 64), rng.choice([0, 1, 1, 2])],
    "skb_set_tunnel_key": lambda rng: ["%r10-128", rng.choice(KEY_SIZES), rng.choice([0, 1, 2, 4, 8, 16, 31, 32, 5])],
    "skb_get_tunnel_key": lambda rng: ["%r10-192", rng.choice(KEY_SIZES), rng.choice([0, 1, 16, 17, 2])],
}
KEY_SIZES = [44, 44, 28, 24, 22, 8, 12, 48]  # struct bpf_tunnel_key and its older layouts, and others
ENCAP4, ENCAP6, GRE, UDP, ETH, DECAP4, DECAP6 = 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 6, 1 << 7, 1 << 8
ROOM_FLAGS = [0, 0, ENCAP4, ENCAP6, ENCAP4 | ENCAP6, ENCAP4 | GRE, ENCAP6 | UDP, ENCAP4 | GRE | UDP,
              ENCAP4 | ETH | 14 << 56, ENCAP4 | ETH | 10 << 56, ENCAP4 | 64 << 56, DECAP4, DECAP6, DECAP4 | DECAP6,
              1, 1 << 5, 1 << 9]
# What a call changes besides the packet, copied into cb[0..4] for ctx_out: skb->protocol, the
# VLAN tag and len.
STATE_TO_CB = "".join(f"ldxw %r2, [%r6+{at}]\nstxw [%r6+{48 + 4 * i}], %r2\n"
                      for i, at in enumerate((16, 20, 24, 28, 0)))
# ... and the words get_tunnel_key wrote at fp-192, folded, in mark and priority.
STATE_TO_CB += "mov %r8, 0\n" + "".join(f"ldxdw %r2, [%r10{-192 + 8 * i}]\nxor %r8, %r2\n" for i in range(6)) + \
    "stxw [%r6+8], %r8\nrsh %r8, 32\nstxw [%r6+32], %r8\n"


def _any(rng: random.Random, choices: list[int]) -> int:
    return rng.choice(choices) & MASK64


def calls_program(calls: list[tuple[str, list]], prologue: str = "", epilogue: str = "") -> str:
    """The calls in order (an argument "%r10-N" is that stack address), each result's low byte
    or'ed into r0 (the first call's lowest; the ninth's on the first's again), between prologue
    and epilogue; r6 holds the context."""
    text = "mov %r6, %r1\nmov %r7, 0\n" + prologue
    for position, (name, args) in enumerate(calls):
        text += "mov %r1, %r6\n"
        for reg, arg in enumerate(args, start=2):
            text += (f"mov %r{reg}, %r10\nadd %r{reg}, {arg[4:]}\n" if str(arg).startswith("%r10")
                     else f"lddw %r{reg}, {arg}\n")
        text += f"call {H[name]}\n{low_byte(0)}\nlsh %r0, {8 * position % 64}\nor %r7, %r0\n"
    return text + epilogue + "mov %r0, %r7\nexit"


def key_prologue(key: bytes) -> str:
    """A tunnel key to set at fp-128, and fp-192, where a key got lands, zeroed."""
    return "".join(f"lddw %r2, {int.from_bytes(key[i:i + 8], 'little')}\nstxdw [%r10{-128 + i}], %r2\n"
                   f"stdw [%r10{-192 + i}], 0\n" for i in range(0, 48, 8))


def resize_program(calls: list[tuple[str, list]], key: bytes = bytes(48)) -> str:
    """calls_program with a tunnel key at fp-128, then the skb's state in cb."""
    return calls_program(calls, key_prologue(key), STATE_TO_CB)


def _tunnel_key(rng: random.Random) -> bytes:
    """A struct bpf_tunnel_key (and 4 bytes more): random, but mostly with no tunnel_ext (which
    the kernel refuses) and now and then no flow label (which only an IPv6 tunnel may have)."""
    key = bytearray(rng.randrange(256) for _ in range(48))
    if rng.random() < 0.8:
        key[22:24] = bytes(2)
    if rng.random() < 0.5:
        key[24:28] = bytes(4)
    return bytes(key)


def _frame(rng: random.Random) -> bytes:
    """An Ethernet frame: IPv4, IPv6, 802.1Q over IPv4, QinQ, or ARP, with some payload."""
    payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 20, 60, 200])))
    ipv4, ipv6 = b"\x08\x00" + bytes(range(20)), b"\x86\xdd" + bytes(range(40))
    l3 = rng.choice([ipv4, ipv6, b"\x81\x00\x00\x05" + ipv4, b"\x88\xa8\x00\x06\x81\x00\x00\x07" + ipv4,
                     b"\x08\x06" + bytes(28)])
    return bytes(range(1, 13)) + l3 + payload


@pytest.mark.parametrize("seed", range(40))
# A socket filter (whose data starts at the network header, the mac header before it) may only
# read the headers; it sees no cb in ctx_out.
@pytest.mark.parametrize("prog_type,names", [("tc", list(RESIZE_CALLS)), ("socket", ["skb_load_bytes_relative"])])
def test_skb_resizes_match_the_reference(seed, prog_type, names):
    """Random sequences of the resizing helpers with random arguments, refusals and packets past
    the storage's room included, on a packet of any kind and, now and then, a GSO skb: every
    engine leaves the same results, packet and sk_buff state."""
    rng = random.Random(seed)
    for _ in range(3):
        calls = [(name, RESIZE_CALLS[name](rng)) for name in rng.choices(names, k=rng.randint(1, 6))]
        ctx = bytearray(192)
        if rng.random() < 0.1:
            struct.pack_into("<I", ctx, 176, 1400)  # gso_size
        key = key_prologue(_tunnel_key(rng))
        text = calls_program(calls, key) if prog_type == "socket" else calls_program(calls, key, STATE_TO_CB)
        assert_engines_agree(program(text, prog_type), _frame(rng), bytes(ctx))


@pytest.mark.parametrize("set_flags", [0, 1, 4 | 8, 2 | 16, 1 | 2 | 4 | 8 | 16])
@pytest.mark.parametrize("size", [44, 28, 24, 22, 8])
def test_tunnel_keys_set_and_got_match_the_reference(set_flags, size):
    rng = random.Random(set_flags << 8 | size)
    key = bytearray(rng.randrange(256) for _ in range(48))
    key[22:24] = bytes(2)
    if not set_flags & 1:
        key[24:28] = bytes(4)
    for get_flags in (set_flags & 1, set_flags & 1 | 16, set_flags & 1 ^ 1):
        calls = [("skb_set_tunnel_key", ["%r10-128", size, set_flags]),
                 ("skb_get_tunnel_key", ["%r10-192", size, get_flags])]
        retval, _, _ = assert_engines_agree(program(resize_program(calls, bytes(key)), "tc"),
                                            bytes(12) + b"\x08\x00" + bytes(20), bytes(192))
        ipv6 = set_flags & 1
        if get_flags & 1 != ipv6:
            assert retval == (-71 & 0xFF) << 8  # the set succeeds, the get is -EPROTO
        elif size == 8 and ipv6:
            assert retval == (-22 & 0xFF) << 8  # the oldest layout holds no IPv6 address: -EINVAL
        else:
            assert retval == 0


def test_a_packet_that_outgrows_its_storage_moves_on_every_engine():
    # Three pushes of 0xfff bytes: past the test run's 256 bytes of headroom, where the native
    # helper hands the call to Python, which moves the packet to a bigger buffer; then a change
    # of tail past the new buffer's end. A fourth push would pass the skb's largest size.
    grow = ("skb_adjust_room", [0xFFF, 1, 0])
    prog = program(resize_program([grow] * 3 + [("skb_change_tail", [16000, 0])]), "tc")
    retval, data_out, _ = assert_engines_agree(prog, bytes(12) + b"\x08\x00" + bytes(20))
    assert retval == 0 and len(data_out) == 16000


def python_helper_calls(prog: Program, data: bytes, engine: str) -> list[str]:
    """The functions of the Python packet helpers' modules entered during one run."""
    files = {xdp_helpers.__file__, skb_helpers.__file__, sock_helpers.__file__}
    calls: list[str] = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename in files:
            calls.append(frame.f_code.co_name)

    prog.prepare(engine) if engine != "reference" else None
    sys.setprofile(profile)
    try:
        prog.test_run(data, engine=engine)
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("engine", ["jit", "interp"])
def test_verified_runs_enter_no_python_packet_helper(engine):
    xdp = program(XDP_MOVES.format(meta=-4 & MASK64, head=-20 & MASK64, tail=8), "xdp")
    skb = program(SKB_REWRITE.format(load_off=0, size=8, store_off=8, store_flags=2, l3_off=24, l3_old=1,
                                     l3_new=2, l3_flags=4, l4_off=40, l4_old=3, l4_new=4, l4_flags=0x10 | 4), "tc")
    diff = program(CSUM_DIFF.format(from_size=20, to_size=20, seed=0), "tc")
    pull = program(PULL_DATA.format(length=40), "tc")
    copy = program(LOAD.format(offset=8, size=4), "xdp")
    hashed = program("call 34\nexit", "tc")  # get_hash_recalc
    # A tail change, an IPIP encapsulation and back, two VLAN tags pushed and one popped, a
    # header read and a pushed head: each succeeds, within the storage's room.
    resize = program(resize_program([("skb_change_tail", [80, 0]), ("skb_adjust_room", [20, 1, ENCAP4]),
                                     ("skb_adjust_room", [-20 & MASK64, 1, 0]), ("skb_vlan_push", [0x0081, 5]),
                                     ("skb_vlan_push", [0x0081, 6]), ("skb_vlan_pop", []),
                                     ("skb_load_bytes_relative", [0, "%r10-64", 20, 1]),
                                     ("skb_change_head", [14, 0]), ("skb_set_tunnel_key", ["%r10-128", 44, 1]),
                                     ("skb_get_tunnel_key", ["%r10-192", 44, 17])]), "tc")
    ipv4 = bytes(12) + b"\x08\x00" + bytes(46)
    for prog, data in ((xdp, bytes(60)), (skb, bytes(60)), (diff, bytes(600)), (pull, bytes(60)), (copy, bytes(60)),
                       (hashed, bytes(60)), (resize, ipv4)):
        assert python_helper_calls(prog, data, "reference")  # the check sees Python helpers
        assert python_helper_calls(prog, data, engine) == []
    assert resize.test_run(ipv4, engine=engine).retval == 0
    bound = {H[name] for name in NATIVE}
    for prog in (xdp, skb, diff, pull, copy, hashed, resize):
        bindings = prog.compile().bindings
        for helper_id in bound & {int(name[len("bpfjit_h"):]) for name in bindings if name.startswith("bpfjit_h")}:
            assert native_helpers.bound_natively(bindings[f"bpfjit_h{helper_id}"])


def test_a_multi_buffer_tail_stays_native():
    # 5000 bytes: 3520 linear and a frag of 1480, which the native adjust_tail shrinks.
    prog = program(XDP_MOVES.format(meta=0, head=0, tail=-100 & MASK64), "xdp")
    retval, data_out, _ = assert_engines_agree(prog, bytes(range(250)) * 20)
    assert retval >> 24 == 4900 and data_out == (bytes(range(250)) * 20)[:4900]
    assert python_helper_calls(prog, bytes(5000), "jit") == []


# Across frags: adjust_tail(tail), load_bytes(load_off, fp-64, size), store_bytes(store_off,
# fp-64, size), xdp_get_buff_len. The buffer starts zeroed: a load that fails leaves it as it was.
def frag_ops(tail: int, load_off: int, store_off: int, size: int) -> str:
    return calls_program([("xdp_adjust_tail", [tail]), ("xdp_load_bytes", [load_off, "%r10-64", size]),
                          ("xdp_store_bytes", [store_off, "%r10-64", size]), ("xdp_get_buff_len", [])],
                         "".join(f"stdw [%r10{-64 + i}], 0\n" for i in range(0, 64, 8)))


@pytest.mark.parametrize("seed", range(24))
def test_multi_buffer_moves_and_copies_match_the_reference(seed):
    """Tails grown into the last frag's page or shrunk across frags (dropping them, then into the
    linear part), and copies that start, end or pass in any piece, on packets of one to four
    frags: every engine leaves the same results and packet."""
    rng = random.Random(seed)
    size = rng.choice([3521, 4000, 3520 + 4096, 3520 + 4096 + 100, 3520 + 3 * 4096 + 7])
    data = bytes(rng.randrange(256) for _ in range(size))
    for _ in range(3):
        args = {"tail": rng.choice([0, 1, 100, 4000, 4096, -1, -100, -2000, -4096 - 10, -size + 14, -size + 13,
                                    -size]) & MASK64,
                "load_off": rng.choice([0, 3500, 3519, 3520, 5000, size - 64, size - 8, size, 0xFFFF, 0x10000]),
                "store_off": rng.choice([10, 3510, 3520, 7000, size - 32, size - 1, size + 1]),
                "size": rng.choice([1, 8, 32, 64])}
        prog = program(frag_ops(**args), "xdp")
        assert_engines_agree(prog, data)
    assert python_helper_calls(prog, data, "jit") == []


def test_a_native_helper_on_a_context_of_another_kind_fails_cleanly(engine):
    """The verifier refuses a helper of another program type with the kernel's message; unverified,
    the helper finds a context of the wrong kind at run time and ends the run cleanly."""
    from bpfjit.errors import BPFRuntimeError
    head = f"mov %r2, -4\ncall {H['xdp_adjust_head']}\nexit"
    csum = f"mov %r2, 0\nmov %r3, 1\nmov %r4, 2\nmov %r5, 2\ncall {H['l3_csum_replace']}\nexit"
    with pytest.raises(VerifierError, match="program of this type cannot use helper bpf_xdp_adjust_head#44"):
        program(head, "tc")
    with pytest.raises(VerifierError, match="program of this type cannot use helper bpf_l3_csum_replace#10"):
        program(csum, "xdp")
    helpers = standard_helpers(print)
    prog = Program.from_asm(head, prog_type="tc", helpers=helpers, verify=False)
    with pytest.raises(BPFRuntimeError, match="not the context of an XDP program"):
        prog.test_run(bytes(60), engine=engine)
    prog = Program.from_asm(csum, prog_type="xdp", helpers=helpers, verify=False)
    with pytest.raises(BPFRuntimeError, match="not the context of an skb program"):
        prog.test_run(bytes(60), engine=engine)


def test_a_budgeted_run_checks_accesses_against_the_moved_packet(engine):
    # With max_steps the native interpreter checks every access against the run's region table,
    # which the native adjust_head keeps on the packet: the new head is readable.
    text = f"""
        mov %r6, %r1
        mov %r2, -20
        call {H["xdp_adjust_head"]}
        ldxw %r2, [%r6+0]
        ldxw %r3, [%r6+4]
        mov %r4, %r2
        add %r4, 21
        jgt %r4, %r3, +4
        ldxb %r0, [%r2+0]
        ldxb %r5, [%r2+20]
        add %r0, %r5
        exit
        mov %r0, 99
        exit
    """
    # r0 = the new head's first byte (headroom: 0) + the old head's (7)
    result = program(text, "xdp").test_run(bytes([7]) + bytes(59), engine=engine, max_steps=1000)
    assert result.retval == 7
