"""The command line on ELF objects: run, prog list/dump, map dump, btf dump, and the main job.

Objects: tests/progs/globals.o (programs prog_a (xdp) and prog_b (socket); maps counts, .rodata,
.data, .data.custom, .bss; rodata variable ``factor``) and the bundled firewall
(bpfjit/data/firewall.c over bpfjit/data/packets.hex). The firewall's expected verdicts and map
contents below are worked out by hand from firewall.c, not taken from bpfjit.

Tests using ``--engine kernel`` are marked ``kernel`` and run only with ``pytest -m kernel``.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest
from bpfjit.runtime import elf
from packets import inet_csum

import bpfjit
from bpfjit import disasm
from bpfjit.cli import common as cli
from bpfjit.cli import main, read_packets
from bpfjit.errors import BPFError

REPO = pathlib.Path(__file__).resolve().parent.parent
GLOBALS = str(REPO / "tests" / "progs" / "globals.o")
BTF_TYPES = str(REPO / "tests" / "progs" / "btf_types.o")
DATA = REPO / "bpfjit" / "data"
FIREWALL = str(DATA / "firewall.o")
PACKETS = read_packets((DATA / "packets.hex").read_text())
FRAME = "00" * 64  # a zero Ethernet frame: enough for XDP and socket programs

XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3
# firewall.c on packets.hex, line by line:
EXPECTED_VERDICTS = [
    XDP_PASS,  # UDP to port 53: not the blocked port
    XDP_DROP,  # UDP to port 9: blocked_port (default 9)
    XDP_PASS,  # TCP SYN
    XDP_DROP,  # TCP SYN+FIN
    XDP_TX,    # ICMP echo request: answered in place
    XDP_PASS,  # IPv6: not IPv4
    XDP_PASS,  # ARP: not IPv4
    XDP_DROP,  # 10 bytes of IPv4 header: ip + 1 > data_end
    XDP_DROP,  # 4 bytes of UDP header: udp + 1 > data_end (the source is counted first)
    XDP_PASS,  # UDP to port 123 behind 4 bytes of IPv4 options
]
# sources counts every frame with a whole IPv4 header (options included): all but 6, 7 and 8.
EXPECTED_SOURCES = {"10.0.0.1": 2, "192.168.1.10": 2, "192.168.1.20": 1, "10.0.0.7": 1, "172.16.0.5": 1}
EXPECTED_VERDICT_COUNTS = {0: 0, 1: 4, 2: 5, 3: 1, 4: 0}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> dict | list:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def ip_key(address: str) -> int:
    """A sources key as the map shows it: the __u32 read from the address in network byte order."""
    return int.from_bytes(socket.inet_aton(address), "little")


def test_bundled_packets_are_the_ones_the_verdicts_describe():
    assert len(PACKETS) == len(EXPECTED_VERDICTS) == 10
    descriptions = [d for d, _ in PACKETS]
    assert "port 9 (blocked)" in descriptions[1] and "ICMP echo request" in descriptions[4]
    assert PACKETS[5][1][12:14] == b"\x86\xdd" and PACKETS[6][1][12:14] == b"\x08\x06"
    assert len(PACKETS[7][1]) == 14 + 10 and len(PACKETS[8][1]) == 14 + 20 + 4


# --- run OBJECT ---------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["jit", "reference"])
def test_run_object_json(capsys, engine):
    record = run_json(capsys, "run", GLOBALS, "-p", "prog_a", "--data-hex", FRAME, "--engine", engine)
    assert record["program"] == "prog_a" and record["engine"] == engine
    assert record["retval"] == XDP_PASS and record["data_out"] == FRAME
    assert record["duration_ns"] > 0 and record["type"] == "xdp"


def test_run_object_text_is_bpftool_like(capsys):
    code, out, _ = run_cli(capsys, "run", GLOBALS, "-p", "prog_a", "--data-hex", FRAME, "--repeat", "4")
    assert code == 0
    assert "program prog_a (xdp), engine jit, 4 runs" in out
    assert "Return value: 2 (XDP_PASS), duration (average):" in out
    assert "data_out: 64 bytes, unchanged" in out


def test_run_object_rodata_and_trace(capsys):
    """prog_b returns factor + 1 + hits + bpf_trace_printk's result and prints "hi <hits>"."""
    default = run_json(capsys, "run", GLOBALS, "-p", "prog_b", "--data-hex", FRAME)
    changed = run_json(capsys, "run", GLOBALS, "-p", "prog_b", "--data-hex", FRAME, "--rodata", "factor=10")
    assert changed["retval"] - default["retval"] == 10 - 3
    assert default["trace"] == ["hi 0"]
    code, out, _ = run_cli(capsys, "run", GLOBALS, "-p", "prog_b", "--data-hex", FRAME, "--engine", "reference",
                           "--rodata", "factor=0x10")
    assert code == 0 and f"Return value: {default['retval'] + 16 - 3}" in out
    assert "bpf_trace_printk:\n  hi 0" in out


def test_run_object_single_program_needs_no_p(capsys):
    record = run_json(capsys, "run", FIREWALL, "--data-hex", PACKETS[1][1].hex())
    assert record["program"] == "firewall" and record["retval"] == XDP_DROP


@pytest.mark.parametrize("engine", ["jit", "reference"])
def test_firewall_verdicts_on_every_bundled_packet(capsys, engine):
    for (description, frame), expected in zip(PACKETS, EXPECTED_VERDICTS):
        record = run_json(capsys, "run", FIREWALL, "--data-hex", frame.hex(), "--engine", engine)
        assert record["retval"] == expected, description


def test_firewall_answers_icmp_echo(capsys):
    _, request = PACKETS[4]
    record = run_json(capsys, "run", FIREWALL, "--data-hex", request.hex())
    reply = bytes.fromhex(record["data_out"])
    assert record["retval"] == XDP_TX and len(reply) == len(request)
    assert reply[0:6] == request[6:12] and reply[6:12] == request[0:6]          # MACs swapped
    assert reply[26:30] == request[30:34] and reply[30:34] == request[26:30]    # IPv4 addresses swapped
    assert reply[14:34] != request[14:34] and inet_csum(reply[14:34]) == 0       # IPv4 checksum still right
    assert reply[34] == 0 and request[34] == 8                                   # echo request -> reply
    assert inet_csum(reply[34:]) == 0                                            # ICMP checksum updated
    code, out, _ = run_cli(capsys, "run", FIREWALL, "--data-hex", request.hex())
    assert "Return value: 3 (XDP_TX)" in out and "changed:" in out


def test_firewall_blocked_port_is_a_rodata_knob(capsys):
    dns = PACKETS[0][1].hex()
    assert run_json(capsys, "run", FIREWALL, "--data-hex", dns)["retval"] == XDP_PASS
    assert run_json(capsys, "run", FIREWALL, "--data-hex", dns, "--rodata", "blocked_port=53")["retval"] == XDP_DROP
    discard = PACKETS[1][1].hex()
    assert run_json(capsys, "run", FIREWALL, "--data-hex", discard, "--rodata", "blocked_port=53")["retval"] == XDP_PASS


def test_run_object_data_file_and_ctx(capsys, tmp_path):
    packet = tmp_path / "packet.bin"
    packet.write_bytes(PACKETS[1][1])
    record = run_json(capsys, "run", FIREWALL, "--data", str(packet), "--ctx-hex", "00" * 24)
    assert record["retval"] == XDP_DROP
    assert record["ctx_out"] is not None and len(bytes.fromhex(record["ctx_out"])) == 24


def test_progress_bar_on_a_terminal(capsys, monkeypatch):
    """Long runs are chunked behind a progress bar; the outcome is that of one run of N repeats."""
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    monkeypatch.setattr(cli, "PROGRESS_AFTER_NS", 0)
    monkeypatch.setattr(cli, "CHUNK_NS", 1)  # one run per chunk
    code, out, err = run_cli(capsys, "map", "dump", GLOBALS, "-m", "counts", "-p", "prog_a",
                             "--data-hex", FRAME, "--repeat", "7", "--engine", "reference", "--json")
    assert code == 0
    assert "[" + "#" * cli.Progress.WIDTH + "] 100% 7/7" in err and "prog_a (reference)" in err
    entries = {e["key"]: e["value"] for e in json.loads(out)["entries"]}
    assert entries[1] == 7
    # The packet carries over from chunk to chunk: 7 echo replies turn the frame around 7 times.
    icmp = PACKETS[4][1]
    record = run_json(capsys, "run", FIREWALL, "--data-hex", icmp.hex(), "--repeat", "7")
    once = run_json(capsys, "run", FIREWALL, "--data-hex", icmp.hex())
    assert record["retval"] == XDP_PASS  # from the 2nd run on the frame is a reply: passed
    assert record["data_out"] == once["data_out"]


def test_no_progress_bar_when_not_a_terminal(capsys):
    code, _, err = run_cli(capsys, "run", GLOBALS, "-p", "prog_a", "--data-hex", FRAME, "--repeat", "3",
                           "--engine", "reference")
    assert code == 0 and err == ""


# --- prog ---------------------------------------------------------------------------------------

def test_prog_list(capsys):
    code, out, _ = run_cli(capsys, "prog", "list", GLOBALS)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("name prog_a  type xdp  section xdp  insns 54  license GPL")
    assert lines[1].startswith("name prog_b  type socket  section socket  insns 34  license GPL")
    assert "maps counts," in lines[0]
    records = run_json(capsys, "prog", "list", GLOBALS)
    assert [(r["name"], r["type"], r["section"], r["insns"]) for r in records] == [
        ("prog_a", "xdp", "xdp", 54), ("prog_b", "socket", "socket", 34)]
    assert set(records[0]["maps"]) == {"counts", ".bss", ".data", ".data.custom", ".rodata"}
    (firewall,) = run_json(capsys, "prog", "list", FIREWALL)
    assert firewall["name"] == "firewall" and firewall["type"] == "xdp"
    assert {"verdicts", "sources", ".bss", ".rodata"} <= set(firewall["maps"])


def test_prog_dump_xlated(capsys):
    code, out, _ = run_cli(capsys, "prog", "dump", GLOBALS, "-p", "prog_a")
    assert code == 0
    for label in ("<prog_a>:", "<twice>:", "<thrice>:", "<helper_sum>:"):
        assert label in out
    assert "; hits++;" in out                   # source lines from BTF line info
    assert "; map[counts]" in out and "; map[.bss][0]+0" in out
    assert "callx r2" in out
    assert run_cli(capsys, "prog", "dump", GLOBALS, "-p", "prog_a", "--xlated")[1] == out
    # xlated = after ctx rewriting: xdp_md.data_end (u32 at +4) became the native u64 at +8.
    code, out, _ = run_cli(capsys, "prog", "dump", FIREWALL)
    assert "r8 = *(u64 *)(r1 + 0x8)" in out and "r8 = *(u32 *)(r1 + 0x4)" not in out


def test_prog_dump_of_one_program_loads_it_alone(capsys):
    """-p names the program: another program of the object that the verifier rejects does not
    stop the dump (as bpftool works on the one program the kernel loaded)."""
    rejected = pathlib.Path(__file__).parent / "progs" / "rejected_lines.o"
    code, out, _ = run_cli(capsys, "prog", "dump", str(rejected), "-p", "accepted")
    assert code == 0 and "<accepted>:" in out
    code, _, err = run_cli(capsys, "prog", "dump", str(rejected))
    assert code != 0 and "unchecked_lookup: insn 7: R0 invalid mem access 'map_value_or_null'" in err


def test_prog_dump_jited(capsys):
    code, out, _ = run_cli(capsys, "prog", "dump", FIREWALL, "--jited")
    assert code == 0
    assert "x86-64 code" in out and "entry bpf_f0 at" in out
    assert "retq" in out and "%rdi" in out


def test_prog_dump_ir(capsys):
    code, out, _ = run_cli(capsys, "prog", "dump", GLOBALS, "-p", "prog_b", "--ir")
    assert code == 0
    unoptimised, optimised = out.split("; ---- prog_b: LLVM IR after optimisation ----")
    assert "(unoptimised)" in unoptimised and "define" in unoptimised and "define" in optimised
    # Each instruction's IR follows a comment with its slot and its disassembly.
    program = bpfjit.load(GLOBALS).programs["prog_b"]
    for index in (0, len(program.insns) - 1):
        assert f"; insn {index}: {disasm.insn_text(program.insns[index])}\n" in unoptimised



# --- map ----------------------------------------------------------------------------------------

def test_map_dump_all(capsys):
    code, out, _ = run_cli(capsys, "map", "dump", GLOBALS)
    assert code == 0
    for name in ("counts", ".rodata", ".data", ".data.custom", ".bss"):
        assert f"map {name}  type array" in out
    assert "key: 0  value: {\"factor\": 3," in out
    assert "key: 0  value: {\"secret\": 7}" in out
    assert "key: 3  value: 0\nFound 4 elements" in out


def test_map_dump_after_a_run(capsys):
    code, out, _ = run_cli(capsys, "map", "dump", GLOBALS, "-m", "counts", "-p", "prog_a",
                           "--data-hex", FRAME, "--repeat", "3")
    assert code == 0
    assert out.splitlines() == [
        "map counts  type array  key 4B  value 8B  max_entries 4  flags 0x0",
        "key: 0  value: 0", "key: 1  value: 3", "key: 2  value: 0", "key: 3  value: 0",
        "Found 4 elements"]
    record = run_json(capsys, "map", "dump", GLOBALS, "-m", ".bss", "-p", "prog_a", "--data-hex", FRAME,
                      "--engine", "reference", "--repeat", "2")
    assert record["name"] == ".bss" and record["entries"] == [{"key": 0, "value": {"hits": 2}}]


def test_map_dump_firewall_after_a_run(capsys):
    record = run_json(capsys, "map", "dump", FIREWALL, "-m", "sources", "--data-hex", PACKETS[2][1].hex())
    assert record["type"] == "hash"
    assert record["entries"] == [{"key": ip_key("192.168.1.10"), "value": 1}]
    records = run_json(capsys, "map", "dump", FIREWALL, "--data-hex", PACKETS[1][1].hex(), "--rodata",
                       "blocked_port=9")
    by_name = {r["name"]: r["entries"] for r in records}
    assert by_name["verdicts"][XDP_DROP] == {"key": XDP_DROP, "value": 1}
    assert by_name[".bss"] == [{"key": 0, "value": {"total_packets": 1}}]
    assert by_name[".rodata"] == [{"key": 0, "value": {"blocked_port": 9}}]


# --- btf ----------------------------------------------------------------------------------------

def test_btf_dump(capsys):
    code, out, _ = run_cli(capsys, "btf", "dump", GLOBALS)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "[1] PTR '(anon)' type_id=3"
    assert "[2] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED" in lines
    assert "[14] VAR 'counts' type_id=13, linkage=global" in lines
    at = lines.index("[20] STRUCT 'xdp_md' size=24 vlen=6")
    assert lines[at + 1] == "\t'data' type_id=8 bits_offset=0"
    assert "[16] FUNC 'twice' type_id=15 linkage=static" in lines
    # DATASECs with the sizes and offsets the loader fixes up, as libbpf does.
    at = lines.index("[46] DATASEC '.data' size=24 vlen=2")
    assert lines[at + 1:at + 3] == ["\ttype_id=31 offset=0 size=8 (VAR 'total')",
                                    "\ttype_id=37 offset=8 size=16 (VAR 'ops')"]
    record = run_json(capsys, "btf", "dump", GLOBALS)
    assert len(record["types"]) == len([line for line in lines if line.startswith("[")])
    assert record["types"][19]["members"][1] == {"name": "data_end", "type_id": 8, "bits_offset": 32}


def test_btf_dump_every_kind(capsys):
    code, out, _ = run_cli(capsys, "btf", "dump", BTF_TYPES)  # has maps bpfjit cannot create: BTF only
    assert code == 0
    kinds = {line.split()[1] for line in out.splitlines() if line.startswith("[")}
    assert {"INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "ENUM64", "TYPEDEF", "CONST", "VOLATILE",
            "FUNC", "FUNC_PROTO", "VAR", "DATASEC", "FLOAT", "TYPE_TAG"} <= kinds
    assert "'version' type_id=8 bits_offset=0 bitfield_size=4" in out
    assert "ENUM64 'wide' encoding=UNSIGNED size=8 vlen=3" in out


# --- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["run", GLOBALS, "--data-hex", FRAME], "pick one with -p (prog_a, prog_b)"),
    (["run", GLOBALS, "-p", "nope"], "no program named 'nope'"),
    (["run", GLOBALS, "-p", "prog_a"], "at least 14 bytes"),
    (["run", GLOBALS, "-p", "prog_a", "--data-hex", FRAME, "--rodata", "factor"], "expected NAME=VALUE"),
    (["run", GLOBALS, "-p", "prog_a", "--data-hex", FRAME, "--rodata", "total=1"], "total"),
    (["run", GLOBALS, "-p", "prog_a", "--data-hex", FRAME, "--repeat", "0"], "at least 1"),
    (["run", GLOBALS, "-p", "prog_a", "--engine", "cpu"], "invalid choice"),
    (["run", "--engine", "kernel"], "without a FILE"),
    (["prog", "list", str(REPO / "README.md")], "not an ELF object"),
    (["prog", "dump", GLOBALS], "pick one with -p"),
    (["prog", "dump", GLOBALS, "-p", "prog_a", "--ir", "--jited"], "not allowed with"),
    (["map", "dump", GLOBALS, "-m", "nope"], "no map named 'nope'"),
    (["map", "dump", GLOBALS, "-p", "prog_a", "--data-hex", "zz"], "not hexadecimal"),
    (["btf", "dump", "/nonexistent.o"], "No such file"),
    (["prog"], "required"),
])
def test_errors_are_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 1
    assert err.startswith("bpfjit: error:") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_kernel_engine_is_for_objects_only(capsys, tmp_path):
    source = tmp_path / "p.asm"
    source.write_text("mov %r0, 1\nexit\n")
    code, _, err = run_cli(capsys, "run", str(source), "--engine", "kernel")
    assert code == 1 and "ELF objects only" in err


def test_read_packets_names_the_bad_line():
    assert read_packets("# comment\n\n0a0b  # two bytes\nff\n") == [("two bytes", b"\x0a\x0b"),
                                                                    ("packet 2", b"\xff")]
    with pytest.raises(BPFError, match="packets.hex:2: not hexadecimal"):
        read_packets("00\nxyz\n")


# --- the main job -------------------------------------------------------------------------------

def test_default_job_table(capsys):
    code, out, err = run_cli(capsys, "run")
    assert code == 0, err
    for (description, _), verdict in zip(PACKETS, EXPECTED_VERDICTS):
        line = next(line for line in out.splitlines() if description in line)
        assert cli.XDP_ACTIONS[verdict] in line
    assert "agree on every engine" in out
    assert "map verdicts: XDP_DROP 4, XDP_PASS 5, XDP_TX 1" in out
    for address, count in EXPECTED_SOURCES.items():
        assert f"{address} {count}" in out
    assert "total_packets = 10" in out and "blocked_port = 9" in out
    assert "mean per packet: jit" in out and "reference" in out and "faster than the native interpreter" in out


def test_default_job_json_with_rodata(capsys):
    record = run_json(capsys, "run", "--rodata", "blocked_port=53", "--repeat", "100")
    verdicts = [p["retval"] for p in record["packets"]]
    expected = list(EXPECTED_VERDICTS)
    expected[0], expected[1] = XDP_DROP, XDP_PASS  # port 53 blocked now, port 9 passed
    assert verdicts == expected
    assert record["globals"] == {"blocked_port": 53, "total_packets": 10}
    assert record["repeat"]["jit"] == 100
    assert record["ratio"] > 1 and record["mean_ns"]["jit"] > 0


def test_default_job_one_packet(capsys):
    record = run_json(capsys, "run", "--data-hex", PACKETS[4][1].hex())
    (packet,) = record["packets"]
    assert packet["verdict"] == "XDP_TX"
    assert dict(map(tuple, record["maps"]["verdicts"])) == {0: 0, 1: 0, 2: 0, 3: 1, 4: 0}


def test_default_job_subprocess_json():
    """`bpfjit run` as installed: the bundled object and packets come from the package data."""
    exe = shutil.which("bpfjit")
    argv = [exe, "run", "--json"] if exe else [sys.executable, "-m", "bpfjit.cli", "run", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert [p["retval"] for p in record["packets"]] == EXPECTED_VERDICTS
    assert dict(map(tuple, record["maps"]["verdicts"])) == EXPECTED_VERDICT_COUNTS
    assert {socket.inet_ntoa(k.to_bytes(4, "little")): v for k, v in record["maps"]["sources"]} == EXPECTED_SOURCES
    assert record["globals"] == {"blocked_port": 9, "total_packets": 10}


# --- the bundled object is what its source compiles to ------------------------------------------

def test_bundled_object_is_fresh(tmp_path):
    clang = shutil.which("clang-19")
    if clang is None:
        pytest.skip("clang-19 not installed: freshness of bpfjit/data/firewall.o not checked")
    fresh = tmp_path / "firewall.o"
    # Same command as bpfjit/data/build.sh, from the same directory.
    done = subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c",
                           "firewall.c", "-o", str(fresh)], cwd=DATA, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert elf.code_sections(fresh) == elf.code_sections(FIREWALL), \
        "bpfjit/data/firewall.c no longer compiles to the committed firewall.o: run bpfjit/data/build.sh"


# --- the kernel engine (opt-in: pytest -m kernel) -----------------------------------------------

@pytest.mark.kernel
def test_kernel_engine_firewall_verdicts(capsys, kernel_engine):
    for (description, frame), expected in zip(PACKETS, EXPECTED_VERDICTS):
        record = run_json(capsys, "run", FIREWALL, "--data-hex", frame.hex(), "--engine", "kernel")
        assert record["engine"] == "kernel" and record["retval"] == expected, description
        jit = run_json(capsys, "run", FIREWALL, "--data-hex", frame.hex())
        assert record["data_out"] == jit["data_out"], description


@pytest.mark.kernel
def test_kernel_engine_rodata(capsys, kernel_engine):
    dns = PACKETS[0][1].hex()
    record = run_json(capsys, "run", FIREWALL, "--data-hex", dns, "--engine", "kernel", "--rodata", "blocked_port=53")
    assert record["retval"] == XDP_DROP
    code, out, _ = run_cli(capsys, "run", FIREWALL, "--data-hex", dns, "--engine", "kernel", "--repeat", "10")
    assert code == 0 and "Return value: 2 (XDP_PASS), duration (average)" in out


@pytest.mark.kernel
def test_kernel_engine_rejection_is_one_line(capsys, kernel_engine):
    # prog_a calls through a function pointer (callx), which the kernel's verifier does not accept.
    code, _, err = run_cli(capsys, "run", GLOBALS, "-p", "prog_a", "--data-hex", FRAME, "--engine", "kernel")
    assert code == 1 and err.startswith("bpfjit: error: kernel engine") and err.count("\n") == 1
