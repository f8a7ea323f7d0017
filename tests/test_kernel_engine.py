"""The opt-in kernel engine (bpfjit.kernel): programs loaded into Linux and test-run there.

Every test here loads programs into the running kernel, so the module runs only when the marker
expression names it: ``pytest -m kernel``. A plain ``pytest`` skips all of it before any child
process starts (the autouse fixture below); it needs root and libbpf.so.1 (Debian ``libbpf1``), and
is skipped, with the reason, when the kernel refuses a trivial program.

The kernel is the reference, so the expected verdicts are worked out by hand from the C sources
(tests/progs/xdp_parse.c, tests/progs/kernel_counters.c), not taken from bpfjit.
"""
from __future__ import annotations

import pathlib
import shutil
import struct
import subprocess

import pytest
from packets import IPPROTO_TCP, IPPROTO_UDP, ethernet, frame, ipv4, udp

from bpfjit import kernel
from bpfjit.errors import KernelEngineError
from bpfjit.kernel import KernelResult, kernel_test_run, split_per_cpu

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_engine")]

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
XDP_PARSE = PROGS / "xdp_parse.o"
COUNTERS = PROGS / "kernel_counters.o"
XDP_DROP, XDP_PASS = 1, 2


# --- packets -------------------------------------------------------------------------------------

def xdp_md(data: int, data_end: int) -> bytes:
    """struct xdp_md for a test run: data = metadata length, data_end = end of the linear part."""
    return struct.pack("<6I", data, data_end, 0, 0, 0, 0)


# Expected verdicts, from tests/progs/xdp_parse.c:
#   frame < 14 bytes -> DROP; ethertype != IPv4 -> PASS; IPv4 header cut short (< 20 bytes) -> DROP;
#   version != 4 or ihl < 5 -> DROP; header checksum wrong, or header (ihl*4) beyond the frame
#   -> DROP; protocol != UDP -> PASS; UDP header cut short -> DROP; udp->len < 8 -> DROP;
#   destination port 9 -> DROP; otherwise PASS.
XDP_CASES = {
    "udp_dns_passes": (frame(ipv4(IPPROTO_UDP, udp(53))), XDP_PASS),
    "udp_discard_port_drops": (frame(ipv4(IPPROTO_UDP, udp(9))), XDP_DROP),
    "udp_port_2304_passes": (frame(ipv4(IPPROTO_UDP, udp(0x0900))), XDP_PASS),  # 9 byte-swapped
    "arp_passes": (ethernet(0x0806) + bytes(28), XDP_PASS),
    "ipv6_ethertype_passes": (ethernet(0x86DD) + bytes(40), XDP_PASS),
    "tcp_passes": (frame(ipv4(IPPROTO_TCP, bytes(20))), XDP_PASS),
    "bad_ip_checksum_drops": (frame(ipv4(IPPROTO_UDP, udp(53), good_csum=False)), XDP_DROP),
    "truncated_ip_header_drops": (frame(ipv4(IPPROTO_UDP, udp(53))[:19]), XDP_DROP),
    "ip_version_6_drops": (frame(ipv4(IPPROTO_UDP, udp(53), version=6)), XDP_DROP),
    "ihl_4_drops": (frame(ipv4(IPPROTO_UDP, udp(53), ihl=4)), XDP_DROP),
    "ip_options_then_udp_passes": (frame(ipv4(IPPROTO_UDP, udp(53), options=bytes(8))), XDP_PASS),
    "ip_options_then_discard_drops": (frame(ipv4(IPPROTO_UDP, udp(9), options=bytes(8))), XDP_DROP),
    # ihl = 6 announces 24 header bytes; the frame ends after 22: the checksum loop's bound fails.
    "ip_header_beyond_frame_drops": (frame(ipv4(IPPROTO_UDP, b"", options=bytes(4))[:22]), XDP_DROP),
    "truncated_udp_header_drops": (frame(ipv4(IPPROTO_UDP, udp(53)[:6])), XDP_DROP),
    "udp_length_below_8_drops": (frame(ipv4(IPPROTO_UDP, udp(53, length=7))), XDP_DROP),
    "udp_length_exactly_8_passes": (frame(ipv4(IPPROTO_UDP, udp(53, b""))), XDP_PASS),
}


@pytest.mark.parametrize("packet, verdict", XDP_CASES.values(), ids=XDP_CASES.keys())
def test_xdp_parse_verdicts(packet: bytes, verdict: int):
    result = kernel_test_run(XDP_PARSE, "prog", packet)
    assert result.retval == verdict
    assert result.data_out == packet  # the program never writes the packet
    assert result.ctx_out is None
    assert result.maps == {}


def test_xdp_parse_only_program_is_the_default():
    # With one program in the object, program=None selects it (libbpf links its .text callee).
    result = kernel_test_run(XDP_PARSE, None, frame(ipv4(IPPROTO_UDP, udp(53))), repeat=10)
    assert (result.prog_type, result.retval) == (6, XDP_PASS)
    assert isinstance(result.duration_ns, int) and result.duration_ns >= 0


def test_frame_shorter_than_ethernet_drops():
    # 14 bytes in, but the linear part ends after 10 (the rest goes to a fragment): the program
    # sees data_end - data = 10 < sizeof(struct ethhdr) and drops.
    packet = ethernet()
    result = kernel_test_run(XDP_PARSE, "prog", packet, ctx=xdp_md(0, 10))
    assert result.retval == XDP_DROP
    data, data_end = struct.unpack_from("<2I", result.ctx_out)
    assert (data, data_end) == (0, 10)


def test_metadata_is_not_part_of_the_frame():
    packet = frame(ipv4(IPPROTO_UDP, udp(9)))
    # 8 bytes of metadata ahead of the frame: the program sees only the frame, whose port is 9.
    data = b"META" * 2 + packet
    result = kernel_test_run(XDP_PARSE, "prog", data, ctx=xdp_md(8, len(data)))
    assert result.retval == XDP_DROP
    assert result.data_out == data  # data_out starts at data_meta: the metadata comes back too
    assert struct.unpack_from("<2I", result.ctx_out) == (8, len(data))


# --- maps and global data ------------------------------------------------------------------------

def symbol_offsets(path: pathlib.Path) -> dict[str, tuple[str, int, int]]:
    """name -> (section, offset, size) of the object's data symbols."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        return {sym.name: (elf.get_section(sym["st_shndx"]).name, sym["st_value"], sym["st_size"])
                for sym in symtab.iter_symbols()
                if sym["st_info"]["type"] == "STT_OBJECT" and isinstance(sym["st_shndx"], int)}


def global_value(result: KernelResult, name: str) -> int:
    section, offset, size = symbol_offsets(COUNTERS)[name]
    ((key, value),) = result.map(section)
    assert key == b"\0\0\0\0"
    return int.from_bytes(value[offset:offset + size], "little")


def u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def test_counters_after_five_runs():
    packet = bytes(61)  # 61 & 3 == 1
    result = kernel_test_run(COUNTERS, "count", packet, repeat=5)
    assert result.retval == XDP_PASS
    assert sorted(result.maps) == sorted(result.map_info)
    # global data: .bss zero-initialised, .data starts at 100, .rodata untouched
    assert global_value(result, "runs") == 5
    assert global_value(result, "bytes_seen") == 5 * 61
    assert global_value(result, "last_len") == 61
    assert global_value(result, "total") == 105
    assert global_value(result, "drop_len") == 0
    bss = result.map(".bss")[0][1]
    assert len(bss) == symbol_offsets(COUNTERS)["last_len"][1] + 4  # value = the whole section
    # ARRAY: every slot is listed, in key order
    assert result.map("counters") == [(u32(i), u64(5 if i == 1 else 0)) for i in range(4)]
    info = result.map_info["counters"]
    assert (info.type, info.key_size, info.value_size, info.max_entries) == (kernel.MAP_ARRAY, 4, 8, 4)
    # HASH: created by the first run, incremented by the other four
    assert result.map("by_len") == [(u32(61), u64(5))]
    # PERCPU_ARRAY: all CPUs' slots; the runs all happened on some CPU(s)
    ((key, value),) = result.map("per_cpu_runs")
    assert key == u32(0)
    assert len(value) == 8 * result.possible_cpus
    per_cpu = split_per_cpu(value, 8, result.possible_cpus)
    assert sum(int.from_bytes(v, "little") for v in per_cpu) == 5


def test_only_the_maps_asked_for_are_read_back():
    result = kernel_test_run(COUNTERS, "count", bytes(61), repeat=2, read_maps=["by_len", ".bss"])
    assert sorted(result.maps) == sorted(name for name in result.map_info if name.endswith(("by_len", ".bss")))
    assert result.map("by_len") == [(u32(61), u64(2))]
    assert global_value(result, "runs") == 2
    assert sorted(result.map_info) == sorted(kernel_test_run(COUNTERS, "count", bytes(61)).maps)  # all listed
    unread = kernel_test_run(COUNTERS, "count", bytes(61), read_maps=())
    assert unread.maps == {}
    with pytest.raises(KeyError, match="map 'by_len' was not read back after the run: name it in read_maps"):
        unread.map("by_len")


def test_rodata_set_before_load_changes_the_verdict():
    packet = bytes(40)
    result = kernel_test_run(COUNTERS, "count", packet, repeat=2, rodata={".rodata": u32(40)})
    assert result.retval == XDP_DROP
    assert global_value(result, "drop_len") == 40
    assert global_value(result, "runs") == 2
    other = kernel_test_run(COUNTERS, "count", bytes(41), rodata={".rodata": u32(40)})
    assert other.retval == XDP_PASS


def test_map_updates_before_the_run():
    packet = bytes(64)  # 64 & 3 == 0
    result = kernel_test_run(COUNTERS, "count", packet, repeat=3,
                             map_updates={"counters": [(u32(0), u64(1000)), (u32(2), u64(7))],
                                          "by_len": [(u32(64), u64(10)), (u32(99), u64(1))]})
    assert result.map("counters") == [(u32(0), u64(1003)), (u32(1), u64(0)), (u32(2), u64(7)),
                                      (u32(3), u64(0))]
    assert sorted(result.map("by_len")) == [(u32(64), u64(13)), (u32(99), u64(1))]


def test_each_run_starts_from_a_fresh_object():
    first = kernel_test_run(COUNTERS, "count", bytes(20), repeat=4)
    second = kernel_test_run(COUNTERS, "count", bytes(20), repeat=4)
    assert global_value(first, "runs") == global_value(second, "runs") == 4


# --- errors --------------------------------------------------------------------------------------

REJECTED_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int unchecked(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[20];	/* no bounds check against data_end: the verifier must refuse */
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_verifier_rejection_carries_the_verifier_log(tmp_path: pathlib.Path):
    clang = shutil.which("clang-19")
    if clang is None:
        pytest.skip("clang-19 not installed: cannot build the rejected program")
    (tmp_path / "rejected.c").write_text(REJECTED_C)
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c",
                    "rejected.c", "-o", "rejected.o"], cwd=tmp_path, check=True)
    with pytest.raises(KernelEngineError) as caught:
        kernel_test_run(tmp_path / "rejected.o", "unchecked", bytes(64))
    message = str(caught.value)
    assert "verifier rejected" in message and "'unchecked'" in message
    assert "invalid access to packet" in message  # the kernel's own words
    assert "invalid access to packet" in caught.value.verifier_log
    assert "kernel engine failed" not in message  # a refusal, not a crash


def test_dead_child_is_reported(monkeypatch):
    monkeypatch.setenv(kernel.ABORT_HOOK, "1")
    with pytest.raises(KernelEngineError, match=r"^kernel engine failed: child killed by SIGABRT"):
        kernel_test_run(XDP_PARSE, "prog", frame(ipv4(IPPROTO_UDP, udp(53))))


def test_child_past_its_timeout_is_killed(monkeypatch):
    monkeypatch.setenv(kernel.HANG_HOOK, "1")
    with pytest.raises(KernelEngineError, match=r"^kernel engine failed: timed out after 1"):
        kernel_test_run(XDP_PARSE, "prog", frame(ipv4(IPPROTO_UDP, udp(53))), timeout=1)


def test_short_xdp_data_is_refused_with_a_reason():
    with pytest.raises(KernelEngineError, match=r"at least 14 bytes of data \(ETH_HLEN\), got 13"):
        kernel_test_run(COUNTERS, "count", bytes(13))


def test_unknown_program_lists_the_programs():
    with pytest.raises(KernelEngineError, match=r"'nope': no such program; programs: count \(SEC 'xdp'\)"):
        kernel_test_run(COUNTERS, "nope", bytes(20))
    with pytest.raises(KernelEngineError, match=r"'nope'.*no such program.*prog \(SEC 'xdp'\)"):
        kernel_test_run(XDP_PARSE, "nope", bytes(20))


def test_unknown_map_and_oversized_rodata_are_refused():
    with pytest.raises(KernelEngineError, match=r"map 'nomap': no such map"):
        kernel_test_run(COUNTERS, "count", bytes(20), map_updates={"nomap": [(u32(0), u64(0))]})
    with pytest.raises(KernelEngineError, match=r"5 bytes for '.rodata', whose section holds 4"):
        kernel_test_run(COUNTERS, "count", bytes(20), rodata={".rodata": bytes(5)})
    with pytest.raises(KernelEngineError, match=r"takes 4-byte keys and 8-byte values, not 4 and 4"):
        kernel_test_run(COUNTERS, "count", bytes(20), map_updates={"counters": [(u32(0), u32(0))]})


def test_missing_object_is_refused(tmp_path: pathlib.Path):
    with pytest.raises(KernelEngineError, match="no such object file"):
        kernel_test_run(tmp_path / "missing.o", None, bytes(20))
