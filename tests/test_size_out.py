"""BPF_PROG_TEST_RUN's output buffers: ``Program.test_run(data_size_out=..., ctx_size_out=...)``
and ``bpfjit run --data-size-out/--ctx-size-out`` (issue 15, point 6).

The expected outputs follow net/bpf/test_run.c (bpf_test_finish, bpf_ctx_finish; see
docs/semantics.md, Test runs): an output longer than its buffer is cut to it, the full size is
still reported and the call fails with ENOSPC (retval stands); with XDP frags the kernel keeps
every frag and shortens the linear part; a cut packet means no ctx is copied out; a ctx_out
buffer of size 0 is refused (EINVAL); a ctx_out buffer alone runs on a zeroed context. Program:
tests/progs/xdp_parse.c (XDP_PASS for non-IPv4 frames, XDP_DROP for a frame shorter than an
Ethernet header). The tests marked kernel check the same answers against the Linux kernel.
"""
from __future__ import annotations

import errno
import json
import pathlib
import struct

import pytest

import bpfjit
from bpfjit.cli import main
from bpfjit.errors import BPFError, KernelEngineError
from bpfjit.program import Program, RunResult

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
XDP_PARSE = PROGS / "xdp_parse.o"
GLOBALS = PROGS / "globals.o"  # prog_b: a socket filter
XDP_DROP, XDP_PASS = 1, 2
ARP = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06"  # an Ethernet header xdp_parse passes (not IPv4)
FRAME = ARP + bytes(range(46))  # 60 bytes
LINEAR_MAX = 3520  # an XDP test run's linear bytes; the rest goes to 4,096-byte frags
BIG = ARP + bytes(i % 251 for i in range(5120 - len(ARP)))  # 3,520 linear bytes + 1,600 in one frag
XDP_MD_SIZE, SK_BUFF_SIZE = 24, 192


def xdp_md(data: int, data_end: int) -> bytes:
    return struct.pack("<6I", data, data_end, 0, 0, 0, 0)


@pytest.fixture(scope="module")
def xdp() -> Program:
    return bpfjit.load(XDP_PARSE).programs["prog"]


def test_no_sizes_copy_everything(xdp, engine):
    result = xdp.test_run(FRAME, engine=engine)
    assert (result.retval, result.data_out, result.data_size_out, result.errno) == (XDP_PASS, FRAME, 60, 0)


@pytest.mark.parametrize("size", [0, 60, 1000])
def test_a_buffer_the_packet_fits_or_no_size_hint(xdp, engine, size):
    result = xdp.test_run(FRAME, engine=engine, data_size_out=size)
    assert (result.data_out, result.data_size_out, result.errno) == (FRAME, 60, 0)


def test_a_short_data_buffer_cuts_the_packet_and_reports_its_size(xdp, engine):
    result = xdp.test_run(FRAME, engine=engine, data_size_out=20)
    assert (result.retval, result.data_out, result.data_size_out, result.errno) == (XDP_PASS, FRAME[:20], 60,
                                                                                    errno.ENOSPC)


def test_a_cut_packet_copies_no_ctx(xdp, engine):
    result = xdp.test_run(FRAME, xdp_md(0, 60), engine=engine, data_size_out=20, ctx_size_out=XDP_MD_SIZE)
    assert (result.errno, result.ctx_out, result.ctx_size_out) == (errno.ENOSPC, None, None)


def test_a_short_ctx_buffer_cuts_the_ctx(xdp, engine):
    result = xdp.test_run(FRAME, xdp_md(0, 60), engine=engine, ctx_size_out=8)
    # xdp_md out: data 0, data_end 60 (offsets from data_meta), then the input fields
    assert (result.data_out, result.errno) == (FRAME, errno.ENOSPC)
    assert (result.ctx_out, result.ctx_size_out) == (struct.pack("<2I", 0, 60), XDP_MD_SIZE)


def test_a_ctx_buffer_alone_runs_on_a_zeroed_ctx(xdp, engine):
    # A zeroed xdp_md says data_end 0: no linear bytes, the whole frame in a frag, so the program
    # sees data == data_end and drops it.
    result = xdp.test_run(FRAME, engine=engine, ctx_size_out=100)
    assert (result.retval, result.data_out, result.errno) == (XDP_DROP, FRAME, 0)
    assert (result.ctx_out, result.ctx_size_out) == (bytes(XDP_MD_SIZE), XDP_MD_SIZE)


def test_frags_are_kept_and_the_linear_part_cut(xdp, engine):
    frags = len(BIG) - LINEAR_MAX
    result = xdp.test_run(BIG, engine=engine, data_size_out=4000)
    assert (result.retval, result.data_size_out, result.errno) == (XDP_PASS, len(BIG), errno.ENOSPC)
    assert result.data_out == BIG[:4000 - frags] + BIG[LINEAR_MAX:]


def test_a_buffer_smaller_than_the_frags_gets_nothing(xdp, engine):
    with pytest.raises(BPFError, match=r"data_size_out 1000 cannot hold the packet's 1600 bytes of frags.*\(ENOSPC\)"):
        xdp.test_run(BIG, engine=engine, data_size_out=1000)


def test_a_ctx_buffer_of_size_0_is_refused(xdp, engine):
    with pytest.raises(BPFError, match=r"ctx_size_out is 0.*\(EINVAL\)"):
        xdp.test_run(FRAME, xdp_md(0, 60), engine=engine, ctx_size_out=0)


@pytest.mark.parametrize("size", [-1, 1 << 32, "8", 2.0])
def test_sizes_must_be_u32(xdp, size):
    with pytest.raises(BPFError, match=r"data_size_out must be an int from 0 to 2\*\*32-1"):
        xdp.test_run(FRAME, data_size_out=size)


def test_skb_ctx_out_is_cut_like_xdp(engine):
    socket_filter = bpfjit.load(GLOBALS).programs["prog_b"]
    whole = socket_filter.test_run(FRAME, engine=engine, ctx_size_out=SK_BUFF_SIZE)
    assert (len(whole.ctx_out), whole.ctx_size_out, whole.errno) == (SK_BUFF_SIZE, SK_BUFF_SIZE, 0)
    cut = socket_filter.test_run(FRAME, engine=engine, ctx_size_out=100)
    assert (cut.ctx_out, cut.ctx_size_out, cut.errno) == (whole.ctx_out[:100], SK_BUFF_SIZE, errno.ENOSPC)


def test_raw_programs_cut_their_memory_and_have_no_ctx(engine):
    raw = Program.from_asm("stb [%r1+0], 7\nmov %r0, %r2\nexit")
    result = raw.test_run(b"abcdef", engine=engine, data_size_out=2)
    assert (result.retval, result.data_out, result.data_size_out, result.errno) == (6, b"\x07b", 6, errno.ENOSPC)
    with pytest.raises(BPFError, match=r"raw programs have no ctx.*\(EINVAL\)"):
        raw.test_run(b"abcdef", engine=engine, ctx_size_out=8)


@pytest.mark.parametrize("sizes", [{"data_size_out": 0}, {"ctx_size_out": 8}])
def test_ctx_only_programs_copy_nothing_out(sizes):
    raw_tp = Program.from_asm("mov %r0, 0\nexit", prog_type="raw_tp")
    with pytest.raises(BPFError, match=r"raw_tp programs copy nothing out: .* must be None \(EINVAL\)"):
        raw_tp.test_run(ctx=bytes(8), **sizes)


def test_a_result_made_by_hand_reports_what_it_holds():
    result = RunResult(2, b"abc", 1.0, b"xy")
    assert (result.data_size_out, result.ctx_size_out, result.errno) == (3, 2, 0)


# --- the command line ----------------------------------------------------------------------------

def test_cli_reports_the_cut(capsys):
    assert main(["run", str(XDP_PARSE), "--data-hex", FRAME.hex(), "--data-size-out", "20", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["data_out"], record["data_size_out"], record["errno"]) == (FRAME[:20].hex(), 60, "ENOSPC")
    assert main(["run", str(XDP_PARSE), "--data-hex", FRAME.hex(), "--data-size-out", "20"]) == 0
    assert "data_out: 20 of 60 bytes (ENOSPC" in capsys.readouterr().out


def test_cli_ctx_size_out(capsys):
    argv = ["run", str(XDP_PARSE), "--data-hex", FRAME.hex(), "--ctx-hex", xdp_md(0, 60).hex()]
    assert main([*argv, "--ctx-size-out", "8", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["ctx_out"], record["ctx_size_out"], record["errno"]) == (struct.pack("<2I", 0, 60).hex(), 24,
                                                                            "ENOSPC")
    assert main([*argv, "--ctx-size-out", "0"]) == 1
    assert "ctx_size_out is 0" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "x", "4294967296"])
def test_cli_refuses_bad_sizes(capsys, value):
    assert main(["run", str(XDP_PARSE), "--data-hex", FRAME.hex(), "--data-size-out", value]) == 1
    assert capsys.readouterr().err.count("\n") == 1


# --- against the kernel --------------------------------------------------------------------------

KERNEL_CASES = {  # name: (data, ctx, data_size_out, ctx_size_out)
    "fits": (FRAME, None, 60, None),
    "data_cut": (FRAME, None, 20, None),
    "data_cut_with_ctx": (FRAME, xdp_md(0, 60), 20, XDP_MD_SIZE),
    "ctx_cut": (FRAME, xdp_md(0, 60), None, 8),
    "ctx_alone": (FRAME, None, None, 100),
    "ctx_size_0": (FRAME, xdp_md(0, 60), None, 0),
    "frags_linear_cut": (BIG, None, 4000, None),
    "frags_do_not_fit": (BIG, None, 1000, None),
}


def _answer(run, wants_ctx: bool) -> tuple:
    """What a caller learns from a run: the outputs (the ctx when asked for), or the errno name
    of the refusal."""
    try:
        r = run()
    except (BPFError, KernelEngineError) as error:
        number = getattr(error, "errno", 0) or next(code for code, name in errno.errorcode.items()
                                                      if f"({name})" in str(error))
        return ("error", errno.errorcode[number])
    ctx = (r.ctx_out, r.ctx_size_out) if wants_ctx else None
    return r.retval & 0xFFFF_FFFF, r.data_out, r.data_size_out, r.errno, ctx


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_engine")
@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_sizes_give_the_kernels_answer(xdp, engine, case):
    from bpfjit.kernel import kernel_test_run
    data, ctx, data_size, ctx_size = KERNEL_CASES[case]
    wants_ctx = ctx is not None or ctx_size is not None
    kernel = _answer(lambda: kernel_test_run(XDP_PARSE, "prog", data, ctx, data_size_out=data_size,
                                             ctx_size_out=ctx_size), wants_ctx)
    ours = _answer(lambda: xdp.test_run(data, ctx, engine=engine, data_size_out=data_size, ctx_size_out=ctx_size),
                   wants_ctx)
    assert ours == kernel
