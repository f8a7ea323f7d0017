"""The opt-in kernel engine (bpfjit.kernel): programs loaded into Linux and test-run there.

Every test here loads programs into the running kernel, so the module runs only when the marker
expression names it: ``pytest -m kernel``. A plain ``pytest`` skips all of it before any child
process starts (the autouse fixture below); it needs root and libbpf.so.1 (Debian ``libbpf1``), and
is skipped, with the reason, when the kernel refuses a trivial program.

The kernel is the reference, so the expected verdicts are worked out by hand from the C sources
(tests/progs/xdp_parse.c, tests/progs/kernel_counters.c), not taken from bpfjit.
"""
from __future__ import annotations

import copy
import gc
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import time

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
    assert result.maps.child_pid is unread.maps.child_pid is None  # read_maps: read at once, no child kept
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


# --- maps read when first asked for ------------------------------------------------------------------

BIG = 1 << 18  # entries of the counters array below: reading them back takes the child seconds


def running(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def big_counters(**options) -> KernelResult:
    return kernel_test_run(COUNTERS, "count", bytes(61), repeat=3, map_options={"counters": {"max_entries": BIG}},
                           **options)


def test_a_large_map_is_read_only_when_asked_for():
    started = time.perf_counter()
    result = big_counters()
    to_result = time.perf_counter() - started
    assert result.maps.read == ()  # the runs read nothing back
    assert len(result.maps) == len(result.map_info) and "counters" in result.maps  # names need no read
    assert "unread=" in repr(result)
    assert global_value(result, "runs") == 3
    assert result.maps.read == (next(name for name in result.map_info if name.endswith(".bss")),)
    assert result.maps.child_pid is not None  # still holding the object for the unread maps
    started = time.perf_counter()
    counters = result.map("counters")
    to_read = time.perf_counter() - started
    assert len(counters) == BIG and counters[1] == (u32(1), u64(3))
    assert result.map("counters") is counters  # read once, kept
    # The result came back in a fraction of the time the big map takes to read (~0.1 s against ~2 s).
    assert to_result * 4 < to_read, (to_result, to_read)
    result.close()


def test_lazy_maps_hold_what_an_eager_read_gives():
    eager = kernel_test_run(COUNTERS, "count", bytes(61), repeat=2, read_maps=["counters", "by_len", "per_cpu_runs",
                                                                              ".bss", ".data", ".rodata"])
    lazy = kernel_test_run(COUNTERS, "count", bytes(61), repeat=2)
    assert list(lazy.maps) == list(eager.maps) == list(eager.map_info)

    def runs_on_all_cpus(result: KernelResult) -> dict:  # the two loads may have run on other CPUs
        ((key, value),) = result.maps["per_cpu_runs"]
        return {key: sum(int.from_bytes(v, "little") for v in split_per_cpu(value, 8, result.possible_cpus))}

    assert runs_on_all_cpus(lazy) == runs_on_all_cpus(eager) == {u32(0): 2}
    assert {name: lazy.maps[name] for name in lazy.maps if name != "per_cpu_runs"} == \
        {name: eager.maps[name] for name in eager.maps if name != "per_cpu_runs"}
    assert lazy.maps.child_pid is None  # every map has been read: the child has ended
    assert copy.deepcopy(lazy).maps == dict(lazy.maps)  # a copy is a plain dict
    assert type(copy.deepcopy(lazy).maps) is dict


def test_the_child_ends_when_the_result_is_closed():
    with kernel_test_run(COUNTERS, "count", bytes(61)) as result:
        pid = result.maps.child_pid
        assert running(pid)
        by_len = result.map("by_len")
    assert not running(pid) and result.maps.child_pid is None
    assert result.map("by_len") is by_len  # what was read stays readable
    with pytest.raises(KernelEngineError, match=r"map 'counters' cannot be read: the child process that held "
                                                 r"the loaded object is gone \(the result was closed\)"):
        result.map("counters")
    with pytest.raises(KeyError, match=r"'nomap': no such map"):  # names are still checked first
        result.map("nomap")
    result.close()  # closing twice is fine


def test_the_child_ends_when_the_result_is_dropped():
    result = kernel_test_run(COUNTERS, "count", bytes(61))
    pid = result.maps.child_pid
    assert running(pid)
    del result
    gc.collect()
    assert not running(pid)


def test_the_child_ends_when_every_map_was_read():
    result = kernel_test_run(COUNTERS, "count", bytes(61))
    pid = result.maps.child_pid
    for name in result.map_info:
        result.map(name)
    assert result.maps.child_pid is None and not running(pid)


def test_an_object_without_maps_keeps_no_child():
    result = kernel_test_run(XDP_PARSE, "prog", frame(ipv4(IPPROTO_UDP, udp(53))))
    assert result.maps == {} and result.maps.child_pid is None


CHILD_OF_A_SCRIPT = """
import os, signal, sys, time
from bpfjit.kernel import kernel_test_run
result = kernel_test_run(sys.argv[1], "count", bytes(61))
print(result.maps.child_pid, flush=True)
if sys.argv[2] == "fork":
    fork = os.fork()
    if fork == 0:  # the fork must not keep the child alive, nor talk to it
        try:
            result.map("counters")
        except Exception as exc:
            print(exc, flush=True)
        time.sleep(30)
        os._exit(0)
    started = time.perf_counter()
    result.close()
    print(round(time.perf_counter() - started, 1), flush=True)
    os.kill(fork, signal.SIGKILL)
elif sys.argv[2] == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["exits", "killed"])
def test_the_child_ends_with_its_parent(how):
    # At interpreter exit (the result still alive), and when the parent dies without a word:
    # the child sees EOF on its stdin.
    script = subprocess.run([sys.executable, "-c", CHILD_OF_A_SCRIPT, str(COUNTERS), how], capture_output=True,
                            text=True, timeout=60)
    pid = int(script.stdout.split()[0])
    deadline = time.monotonic() + 10
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid), script.stderr


def test_a_fork_neither_keeps_the_child_alive_nor_talks_to_it():
    script = subprocess.run([sys.executable, "-c", CHILD_OF_A_SCRIPT, str(COUNTERS), "fork"], capture_output=True,
                            text=True, timeout=60)
    lines = script.stdout.splitlines()
    assert "belongs to process" in script.stdout, script.stdout + script.stderr
    assert float(lines[-1]) < 2  # the child ended on EOF, not after CLOSE_WAIT and a SIGKILL
    assert not running(int(lines[0]))


def test_a_dead_child_is_reported_when_a_map_is_asked_for():
    result = kernel_test_run(COUNTERS, "count", bytes(61))
    os.kill(result.maps.child_pid, signal.SIGKILL)
    with pytest.raises(KernelEngineError, match=r"^kernel engine failed: child killed by SIGKILL"):
        result.map("counters")
    with pytest.raises(KernelEngineError, match=r"the child process that held the loaded object is gone "
                                                 r"\(kernel engine failed: child killed by SIGKILL\)"):
        result.map("by_len")


def test_a_map_read_past_the_timeout_is_killed(monkeypatch):
    monkeypatch.setenv(kernel.HANG_HOOK, "read")
    result = kernel_test_run(COUNTERS, "count", bytes(61), timeout=1)
    pid = result.maps.child_pid
    with pytest.raises(KernelEngineError, match=r"^kernel engine failed: timed out after 1s$"):
        result.map("counters")
    assert result.maps.child_pid is None and not running(pid)


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
