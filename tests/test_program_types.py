"""Program types beyond xdp/socket/tc: libbpf's section names, each type's context rules (the
kernel's *_is_valid_access), and how each one is test-run."""
from __future__ import annotations

import struct

import pytest
from bpfjit.runtime.context import (
    PROGRAM_TYPES,
    RAW_TP,
    SYSCALL,
    ctx_only_image,
    program_type_for_section,
)

from bpfjit.errors import BPFError, ProgramError
from bpfjit.program import Program


@pytest.mark.parametrize("section, ptype", [
    ("cgroup/skb", "cgroup_skb"), ("cgroup_skb/ingress", "cgroup_skb"), ("cgroup_skb/egress", "cgroup_skb"),
    ("raw_tp", "raw_tp"), ("raw_tp/kfree", "raw_tp"), ("?raw_tp", "raw_tp"), ("raw_tracepoint/sys_enter", "raw_tp"),
    ("tracepoint", "tracepoint"), ("tracepoint/syscalls/sys_enter_open", "tracepoint"),
    ("tp/sched/switch", "tracepoint"),
    ("kprobe", "kprobe"), ("kprobe/do_sys_open", "kprobe"), ("kretprobe/do_sys_open", "kprobe"),
    ("uprobe/bin:func", "kprobe"), ("perf_event", "perf_event"), ("syscall", "syscall"),
    ("lwt_in", "lwt_in"), ("lwt_out", "lwt_out"), ("lwt_xmit", "lwt_xmit"), ("sk_skb/stream_parser", "sk_skb"),
    ("tcx/ingress", "tc"), ("tc", "tc"), ("action", "action"), ("?socket", "socket"),
    # libbpf matches these names exactly, or only followed by "/": anything else is no type.
    ("kprobex", "raw"), ("perf_event/x", "raw"), ("tpx/foo", "raw"), ("cgroup/skbx", "raw"),
])
def test_libbpf_section_names(section, ptype):
    assert program_type_for_section(section).name == ptype


def load(text: str, ptype: str) -> Program:
    return Program.from_asm(text, prog_type=ptype)


@pytest.mark.parametrize("ptype, text", [
    ("tracepoint", "ldxdw %r0, [%r1+8]\nexit"),     # the record past its common header
    ("tracepoint", "ldxb %r0, [%r1+2047]\nexit"),   # its last byte (PERF_MAX_TRACE_SIZE)
    ("raw_tp", "ldxdw %r0, [%r1+88]\nexit"),        # args[11]
    ("raw_tp", "ldxw %r0, [%r1+4]\nexit"),          # half of args[0]
    ("kprobe", "ldxdw %r0, [%r1+160]\nexit"),       # pt_regs->ss
    ("perf_event", "ldxdw %r0, [%r1+128]\nexit"),   # regs.ip, a whole long
    ("perf_event", "ldxw %r0, [%r1+172]\nexit"),    # the upper half of sample_period
    ("cgroup_skb", "ldxw %r2, [%r1+76]\nldxw %r3, [%r1+80]\nstdw [%r1+152], 1\nmov %r0, 1\nexit"),
    ("cgroup_skb", "ldxw %r0, [%r1+92]\nexit"),     # remote_ip4: a cgroup skb has a socket
    ("tc", "stw [%r1+72], 1\nstw [%r1+12], 1\nmov %r0, 0\nexit"),  # tc_classid, queue_mapping
    ("tc", "ldxdw %r0, [%r1+168]\nexit"),           # sk
    ("socket", "stdw [%r1+48], 1\nldxb %r0, [%r1+0]\nexit"),  # 8 bytes of cb, a narrow read of len
    ("lwt_in", "stw [%r1+8], 1\nldxw %r2, [%r1+76]\nmov %r0, 0\nexit"),
    ("syscall", "ldxdw %r0, [%r1+4096]\nstw [%r1+0], 1\nexit"),
])
def test_allowed_ctx_accesses(ptype, text):
    load(text, ptype)


@pytest.mark.parametrize("ptype, text, access", [
    ("tracepoint", "ldxdw %r0, [%r1+0]\nexit", "off=0 size=8"),        # the common header
    ("tracepoint", "ldxb %r0, [%r1+2048]\nexit", "off=2048 size=1"),
    ("tracepoint", "stdw [%r1+8], 0\nmov %r0, 0\nexit", "off=8 size=8"),  # read only
    ("tracepoint", "ldxw %r0, [%r1+10]\nexit", "off=10 size=4"),       # misaligned
    ("raw_tp", "ldxdw %r0, [%r1+96]\nexit", "off=96 size=8"),
    ("kprobe", "ldxdw %r0, [%r1+168]\nexit", "off=168 size=8"),
    ("perf_event", "ldxw %r0, [%r1+128]\nexit", "off=128 size=4"),      # part of a register
    ("socket", "ldxw %r0, [%r1+76]\nexit", "off=76 size=4"),            # no direct packet access
    ("socket", "stw [%r1+8], 1\nmov %r0, 0\nexit", "off=8 size=4"),     # only cb is writable
    ("socket", "ldxw %r0, [%r1+92]\nexit", "off=92 size=4"),            # no socket fields
    ("cgroup_skb", "ldxw %r0, [%r1+72]\nexit", "off=72 size=4"),        # tc_classid
    ("cgroup_skb", "ldxw %r0, [%r1+140]\nexit", "off=140 size=4"),      # data_meta
    ("cgroup_skb", "stw [%r1+84], 1\nmov %r0, 0\nexit", "off=84 size=4"),  # napi_id is read only
    ("cgroup_skb", "ldxdw %r0, [%r1+144]\nexit", "off=144 size=8"),     # flow_keys
    ("tc", "ldxw %r0, [%r1+152]\nexit", "off=152 size=4"),              # half of tstamp
    ("tc", "ldxw %r0, [%r1+88]\nexit", "off=88 size=4"),                # family: no socket fields
    ("tc", "ldxh %r0, [%r1+92]\nexit", "off=92 size=2"),                # remote_ip4 is read whole
    ("xdp", "ldxb %r0, [%r1+12]\nexit", "off=12 size=1"),               # xdp_md is read whole
    ("lwt_xmit", "ldxdw %r0, [%r1+152]\nexit", "off=152 size=8"),       # tstamp
    ("sk_skb", "ldxw %r0, [%r1+8]\nexit", "off=8 size=4"),              # mark
])
def test_rejected_ctx_accesses(ptype, text, access):
    with pytest.raises(ProgramError, match=f"invalid bpf_context access {access}"):
        load(text, ptype)


def test_stores_cover_a_whole_field_except_in_regions():
    # The kernel lets a program load part of a u32 field but store only all of it; cb[] is a region.
    tc = PROGRAM_TYPES["tc"].layout
    assert tc.field_at(8, 2).name == "mark" and tc.field_at(8, 2, write=True) is None
    assert tc.field_at(8, 4, write=True).name == "mark"
    assert tc.field_at(50, 2, write=True).name == "cb"
    assert tc.field_at(0, 4, write=True) is None  # len is read only


def test_cgroup_skb_runs_from_the_network_header(engine):
    # r0 = skb->len + (data_end - data): both count the packet after its Ethernet header.
    prog = load("""
        ldxw %r0, [%r1+0]
        ldxw %r2, [%r1+76]
        ldxw %r3, [%r1+80]
        sub %r3, %r2
        add %r0, %r3
        exit
    """, "cgroup_skb")
    assert prog.test_run(bytes(64), engine=engine).retval == 50 + 50


def test_cgroup_skb_writes_mark_and_priority(engine):
    prog = load("stw [%r1+8], 7\nstw [%r1+32], 9\nmov %r0, 1\nexit", "cgroup_skb")
    result = prog.test_run(bytes(64), engine=engine)
    assert result.retval == 1 and struct.unpack_from("<I", result.ctx_out, 8)[0] == 7
    assert struct.unpack_from("<I", result.ctx_out, 32)[0] == 9


def test_tc_reads_no_socket(engine):
    # There are no sockets in userspace: skb->sk reads as NULL.
    prog = load("ldxdw %r0, [%r1+168]\nexit", "tc")
    assert prog.test_run(bytes(64), engine=engine).retval == 0


def test_xdp_runs_on_the_loopback_device(engine):
    # Without a ctx the run happens on the loopback device (ifindex 1); ctx_out gives back the input.
    prog = load("ldxw %r0, [%r1+12]\nexit", "xdp")
    result = prog.test_run(bytes(64), engine=engine)
    assert result.retval == 1 and struct.unpack_from("<I", result.ctx_out, 12)[0] == 0
    ctx = struct.pack("<6I", 0, 64, 0, 1, 0, 0)
    result = prog.test_run(bytes(64), ctx=ctx, engine=engine)
    assert result.retval == 1 and struct.unpack_from("<I", result.ctx_out, 12)[0] == 1
    with pytest.raises(BPFError, match="ENODEV"):  # no other device exists in a test run
        prog.test_run(bytes(64), ctx=struct.pack("<6I", 0, 64, 0, 5, 0, 0), engine=engine)


def test_sk_skb_cannot_be_test_run():
    prog = load("mov %r0, 0\nexit", "sk_skb")
    with pytest.raises(BPFError, match="sk_skb programs are not test-run on a packet: neither the kernel nor "
                                       "bpfjit can test-run them"):
        prog.test_run(bytes(64), engine="reference")


@pytest.mark.parametrize("ptype, text, ctx, expected", [
    # bpfjit runs tracing programs on the ctx a user gives (the kernel has no test run for them).
    ("tracepoint", "ldxdw %r0, [%r1+8]\nexit", struct.pack("<2Q", 1, 42), 42),
    ("kprobe", "ldxdw %r0, [%r1+160]\nexit", bytes(160) + struct.pack("<Q", 7), 7),
    ("raw_tp", "ldxdw %r0, [%r1+8]\nexit", struct.pack("<2Q", 1, 9), 9),
])
def test_ctx_only_runs(ptype, text, ctx, expected, engine):
    prog = load(text, ptype)
    result = prog.test_run(ctx=ctx, engine=engine)
    assert result.retval == expected and result.ctx_out is None and result.data_out == b""
    with pytest.raises(BPFError, match="run on a ctx alone"):
        prog.test_run(bytes(4), ctx=ctx, engine=engine)


def test_syscall_program_writes_its_ctx_back(engine):
    prog = load("ldxw %r0, [%r1+0]\nstw [%r1+4], 77\nexit", "syscall")
    result = prog.test_run(ctx=struct.pack("<2I", 5, 0), engine=engine)
    assert result.retval == 5 and result.ctx_out == struct.pack("<2I", 5, 77)


def test_ctx_only_images():
    args = struct.pack("<2Q", 1, 2)
    assert ctx_only_image(RAW_TP, args) == args + bytes(80)
    with pytest.raises(BPFError, match="at most 96 bytes"):
        ctx_only_image(RAW_TP, bytes(104))
    assert ctx_only_image(SYSCALL, b"abc")[:4] == b"abc\0"
    with pytest.raises(BPFError, match="not test-run on a ctx alone"):
        ctx_only_image(PROGRAM_TYPES["tc"], b"")


def test_every_type_names_its_kernel_type():
    kernel_types = {t.kernel_type for name, t in PROGRAM_TYPES.items() if name != "raw"}
    assert "" not in kernel_types and len(kernel_types) == len(PROGRAM_TYPES) - 1
