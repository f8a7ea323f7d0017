"""Test-run input the kernel refuses raises bpfjit.TestRunError with the kernel's errno and the
field at fault (issue 15, point 6), on every refusal of Program.test_run's input.

Each errno is the one net/bpf/test_run.c (bpf_test_init, bpf_ctx_init, convert___skb_to_skb,
bpf_prog_test_run_xdp, xdp_convert_md_to_buff, bpf_test_finish, bpf_prog_test_run_raw_tp /
_syscall) and kernel/bpf/syscall.c (ctx_in / ctx_out without a size) give; the tests marked
kernel check them against the running kernel (Linux 6.18) through the kernel engine.
"""
from __future__ import annotations

import errno
import pathlib
import struct

import pytest

import bpfjit
from bpfjit.errors import BPFError, KernelEngineError
from bpfjit.program import Program

ENGINES = ("interp", "jit")
PROGS = pathlib.Path(__file__).resolve().parent / "progs"
XDP_PARSE = PROGS / "xdp_parse.o"  # prog: xdp
REDIRECT_MAPS = PROGS / "redirect_maps.o"  # tc_to_ifindex: tc
ARP = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06"
FRAME = ARP + bytes(46)  # 60 bytes; no network header to pull
FRAGS_1600 = ARP + bytes(5120 - len(ARP))  # 3,520 linear bytes + 1,600 in a frag
TOO_MANY_FRAGS = ARP + bytes(3520 + 17 * 4096 + 1 - len(ARP))  # an 18th frag
RETURN_2 = "mov %r0, 2\nexit"


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


def program(prog_type: str) -> Program:
    return Program.from_asm(RETURN_2, prog_type=prog_type)


def xdp_md(data: int = 0, data_end: int = len(FRAME), data_meta: int = 0, ingress: int = 0, rx_queue: int = 0,
           egress: int = 0) -> bytes:
    return struct.pack("<6I", data, data_end, data_meta, ingress, rx_queue, egress)


SKB_OFFSETS = {"len": 0, "mark": 8, "protocol": 16, "priority": 32, "ifindex": 40, "hash": 68, "data": 76,
               "data_end": 80, "wire_len": 160, "gso_segs": 164}


def skb_ctx(**fields: int) -> bytes:
    ctx = bytearray(192)
    for name, value in fields.items():
        struct.pack_into("<I", ctx, SKB_OFFSETS[name], value)
    return bytes(ctx)


def ethernet(ethertype: int, payload: int) -> bytes:
    return ARP[:12] + ethertype.to_bytes(2, "big") + bytes(payload)


def refusal(test_run, **kwargs) -> tuple[int, str]:
    """(errno, field) of the TestRunError test_run(**kwargs) raises."""
    with pytest.raises(bpfjit.TestRunError) as caught:
        test_run(**kwargs)
    return caught.value.errno, caught.value.field


# name: (test_run's keyword arguments, the kernel's errno, the field at fault)
XDP_CASES = {
    "ctx_size_out_0": ({"data": FRAME, "ctx": xdp_md(), "ctx_size_out": 0}, errno.EINVAL, "ctx_size_out"),
    "empty_ctx": ({"data": FRAME, "ctx": b""}, errno.EINVAL, "ctx_in"),
    "ctx_tail_not_zero": ({"data": FRAME, "ctx": xdp_md() + b"\x01\0\0\0"}, errno.E2BIG, "ctx_in"),
    "data_meta_set": ({"data": FRAME, "ctx": xdp_md(data_meta=4)}, errno.EINVAL, "ctx.data_meta"),
    "data_end_past_data": ({"data": FRAME, "ctx": xdp_md(data_end=61)}, errno.EINVAL, "ctx.data_end"),
    "data_past_data_end": ({"data": FRAME, "ctx": xdp_md(data=8, data_end=4)}, errno.EINVAL, "ctx.data"),
    "metadata_not_in_words": ({"data": FRAME, "ctx": xdp_md(data=2)}, errno.EINVAL, "ctx.data"),
    "metadata_into_the_frame": ({"data": bytes(220) + FRAME, "ctx": xdp_md(data=220, data_end=280)}, errno.EINVAL,
                                "ctx.data"),
    "short_after_metadata": ({"data": bytes(8 + 13), "ctx": xdp_md(data=8, data_end=21)}, errno.EINVAL, "data_in"),
    "egress_ifindex": ({"data": FRAME, "ctx": xdp_md(egress=1)}, errno.EINVAL, "ctx.egress_ifindex"),
    "rx_queue_without_device": ({"data": FRAME, "ctx": xdp_md(rx_queue=1)}, errno.EINVAL, "ctx.rx_queue_index"),
    "no_such_device": ({"data": FRAME, "ctx": xdp_md(ingress=0x7FFF_0000)}, errno.ENODEV, "ctx.ingress_ifindex"),
    "loopback_rx_queue_1": ({"data": FRAME, "ctx": xdp_md(ingress=1, rx_queue=1)}, errno.EINVAL,
                            "ctx.rx_queue_index"),
    "more_than_17_frags": ({"data": TOO_MANY_FRAGS}, errno.ENOMEM, "data_in"),
    "frags_past_data_size_out": ({"data": FRAGS_1600, "data_size_out": 1000}, errno.ENOSPC, "data_size_out"),
}

SKB_CASES = {
    "ctx_size_out_0": ({"data": FRAME, "ctx": skb_ctx(), "ctx_size_out": 0}, errno.EINVAL, "ctx_size_out"),
    "empty_ctx": ({"data": FRAME, "ctx": b""}, errno.EINVAL, "ctx_in"),
    "ctx_tail_not_zero": ({"data": FRAME, "ctx": skb_ctx() + b"\x01\0\0\0"}, errno.E2BIG, "ctx_in"),
    "len_set": ({"data": FRAME, "ctx": skb_ctx(len=1)}, errno.EINVAL, "ctx.len"),
    "protocol_set": ({"data": FRAME, "ctx": skb_ctx(protocol=8)}, errno.EINVAL, "ctx.protocol"),
    "hash_set": ({"data": FRAME, "ctx": skb_ctx(hash=1)}, errno.EINVAL, "ctx.hash"),
    "data_end_set": ({"data": FRAME, "ctx": skb_ctx(data_end=60)}, errno.EINVAL, "ctx.data_end"),
    "wire_len_under_the_packet": ({"data": FRAME, "ctx": skb_ctx(wire_len=13)}, errno.EINVAL, "ctx.wire_len"),
    "wire_len_over_gso_max": ({"data": FRAME, "ctx": skb_ctx(wire_len=0x10001)}, errno.EINVAL, "ctx.wire_len"),
    "gso_segs_over_max": ({"data": FRAME, "ctx": skb_ctx(gso_segs=0x10000)}, errno.EINVAL, "ctx.gso_segs"),
    "no_such_device": ({"data": FRAME, "ctx": skb_ctx(ifindex=0x7FFF_0000)}, errno.ENODEV, "ctx.ifindex"),
    "short_ipv4_header": ({"data": ethernet(0x0800, 19)}, errno.EINVAL, "data_in"),
    "short_ipv6_header": ({"data": ethernet(0x86DD, 39)}, errno.EINVAL, "data_in"),
    "longer_than_65535": ({"data": ethernet(0x0806, 65536 - 14)}, errno.EINVAL, "data_in"),
    # bpf_test_init: one page less NET_SKB_PAD (64) and the shared info (320) holds 3,712 bytes
    "longer_than_a_page_holds": ({"data": ethernet(0x0806, 3713 - 14)}, errno.EINVAL, "data_in"),
}

# The kernel engine refuses these itself before asking the kernel (the child's own checks), so
# they are checked against net/bpf/test_run.c's source only.
NOT_ASKED = {
    "shorter_than_ethernet": ({"data": bytes(13)}, errno.EINVAL, "data_in"),  # bpf_prog_test_run_skb
}


@pytest.mark.parametrize("case", list(XDP_CASES))
def test_xdp_refusals_carry_the_kernels_errno_and_field(engine, case):
    kwargs, number, field = XDP_CASES[case]
    assert refusal(program("xdp").test_run, engine=engine, **kwargs) == (number, field)


@pytest.mark.parametrize("prog_type", ["tc", "socket"])
@pytest.mark.parametrize("case", [*SKB_CASES, *NOT_ASKED])
def test_skb_refusals_carry_the_kernels_errno_and_field(engine, prog_type, case):
    kwargs, number, field = {**SKB_CASES, **NOT_ASKED}[case]
    assert refusal(program(prog_type).test_run, engine=engine, **kwargs) == (number, field)


@pytest.mark.parametrize("prog_type", ["tc", "socket"])
def test_the_longest_frame_an_skb_run_takes(engine, prog_type):
    assert program(prog_type).test_run(ethernet(0x0806, 3712 - 14), engine=engine).data_size_out > 0


@pytest.mark.parametrize("kwargs, field", [
    ({"data": FRAME}, "data_in"),  # bpf_prog_test_run_raw_tp refuses a data_in
    ({"ctx": bytes(8), "data_size_out": 64}, "data_size_out"),
    ({"ctx": bytes(8), "ctx_size_out": 8}, "ctx_size_out"),
    ({"ctx": bytes(12 * 8 + 8)}, "ctx_in"),  # more than MAX_BPF_FUNC_ARGS u64
])
def test_raw_tp_refusals_are_einval(engine, kwargs, field):
    assert refusal(program("raw_tp").test_run, engine=engine, **kwargs) == (errno.EINVAL, field)


def test_a_raw_tp_ctx_shorter_than_the_program_reads_is_einval(engine):
    # bpf_prog_test_run_raw_tp refuses a ctx_size_in below the verifier's max_ctx_offset: this
    # program reads args[2], so it needs 24 bytes.
    reads_third = Program.from_asm("ldxdw %r0, [%r1+16]\nexit", prog_type="raw_tp")
    assert refusal(reads_third.test_run, engine=engine, ctx=bytes(23)) == (errno.EINVAL, "ctx_in")
    assert reads_third.test_run(ctx=(7 << 128).to_bytes(24, "little"), engine=engine).retval == 7


def test_a_syscall_ctx_over_u16_max_is_einval(engine):
    assert refusal(program("syscall").test_run, ctx=bytes(0x10000), engine=engine) == (errno.EINVAL, "ctx_in")


@pytest.mark.parametrize("kwargs, field", [({"ctx": bytes(8)}, "ctx_in"), ({"ctx_size_out": 8}, "ctx_size_out")])
def test_raw_programs_refuse_a_ctx_as_raw_tp_does(engine, kwargs, field):
    raw = Program.from_asm("mov %r0, %r2\nexit")
    assert refusal(raw.test_run, data=b"abcd", engine=engine, **kwargs) == (errno.EINVAL, field)


def test_the_error_is_a_bpf_error_named_by_its_errno():
    with pytest.raises(BPFError) as caught:
        program("tc").test_run(FRAME, ctx=skb_ctx(gso_segs=0x10000))
    error = caught.value
    assert isinstance(error, bpfjit.errors.TestRunError) and "TestRunError" in bpfjit.__all__
    assert str(error) == "ctx: __sk_buff.gso_segs 65536 is over 65535 (EINVAL)"


def test_a_size_no_u32_holds_is_not_a_kernel_refusal():
    # The kernel never sees it: no errno to give, so a plain BPFError.
    with pytest.raises(BPFError) as caught:
        program("xdp").test_run(FRAME, data_size_out=-1)
    assert not isinstance(caught.value, bpfjit.errors.TestRunError)


# --- against the kernel --------------------------------------------------------------------------

def kernel_errnos(path: pathlib.Path, name: str, cases: dict) -> dict[str, int]:
    """Each case's errno from the kernel's test run (0: it ran), one load for all."""
    from bpfjit.kernel import KernelRun, kernel_test_runs
    runs = [KernelRun(kwargs.get("data", b""), kwargs.get("ctx"), 1, kwargs.get("data_size_out"),
                      kwargs.get("ctx_size_out")) for kwargs, _, _ in cases.values()]
    results = kernel_test_runs(path, name, runs, read_maps=()).results
    return {case: result.errno if isinstance(result, KernelEngineError) else 0
            for case, result in zip(cases, results)}


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_engine")
@pytest.mark.parametrize("path, name, prog_type, cases", [(XDP_PARSE, "prog", "xdp", XDP_CASES),
                                                          (REDIRECT_MAPS, "tc_to_ifindex", "tc", SKB_CASES)])
def test_the_errnos_are_the_kernels(path, name, prog_type, cases):
    kernel = kernel_errnos(path, name, cases)
    assert kernel == {case: number for case, (_, number, _) in cases.items()}
    ours = {case: refusal(program(prog_type).test_run, **kwargs)[0] for case, (kwargs, _, _) in cases.items()}
    assert ours == kernel
