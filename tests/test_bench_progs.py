"""The benchmark programs compute what their plain-Python rules say, on both engines and natively.

bench/packets.py holds each packet program's rules, written apart from its C; bench/cases.py the
micro-suite's. Here every packet program runs each of its sample frames (inputs reaching each of
its verdicts) on the interpreter, the JIT and the native twin; the maps and globals it leaves are
checked; and the committed objects in bench/progs are checked to be what their sources compile to.
"""
from __future__ import annotations

import pathlib
import shutil
import struct
import subprocess

import pytest

from bpfjit.bench import packets
from bpfjit.bench.cases import MICRO_CASES, PROGS
from bpfjit.bench.measure import check, load_program
from bpfjit.bench.native import NativeBuildError, NativeLibrary
from bpfjit.runtime import elf

CASES = {case.name: case for case in packets.PACKET_CASES}
VARIANTS = [(case, cpu) for case in packets.PACKET_CASES for cpu in case.cpu_variants()]
IDS = [case.name if cpu == "v3" else f"{case.name}-{cpu}" for case, cpu in VARIANTS]
XDP = {"drop": packets.XDP_DROP, "pass": packets.XDP_PASS, "tx": packets.XDP_TX}


# --- the plain-Python rules, against verdicts worked out by hand ---------------------------------

HAND_VERDICTS = {
    "xdp_parse": {"timing input": "drop", "ARP": "pass", "ICMP echo request": "tx", "ICMP echo reply": "pass",
                  "TCP to telnet": "drop", "TCP to https": "pass", "DNS from an allowed source": "pass",
                  "IPv4 non-first fragment to telnet": "pass", "IPv6 later fragment": "pass",
                  "IPv6 hop-by-hop + dest-opts, telnet": "drop", "IPv4 version 6": "drop"},
    "checksum": {"timing input": "pass", "payload byte flipped": "drop", "bad UDP checksum": "drop",
                 "no UDP checksum": "pass", "bad IPv4 header checksum": "drop", "ARP": "pass",
                 "odd-length datagram, last byte corrupted": "drop", "UDP length 7": "drop"},
    "hash_counter": {"timing input": "pass", "IPv4 ihl 4": "drop", "IPv6 (not counted)": "pass"},
    "global_counter": {"timing input": "pass", "VLAN tag cut short": "drop", "ARP": "pass"},
    "xdp_static_branch": {"ICMP (no flow)": "pass", "UDP ports cut off": "drop", "IPv4 ihl 4": "drop"},
}


@pytest.mark.parametrize("name", sorted(HAND_VERDICTS))
def test_rules_give_the_hand_worked_verdicts(name):
    frames = dict(packets.samples(name))
    for description, verdict in HAND_VERDICTS[name].items():
        assert CASES[name].expected(frames[description]) == XDP[verdict], description


@pytest.mark.parametrize("name, verdicts", [("xdp_parse", {"drop", "pass", "tx"}), ("checksum", {"drop", "pass"}),
                                            ("hash_counter", {"drop", "pass"}), ("global_counter", {"drop", "pass"}),
                                            ("xdp_static_branch", {"drop", "pass", "tx"})])
def test_samples_reach_every_verdict(name, verdicts):
    reached = {CASES[name].expected(frame) for _, frame in packets.samples(name)}
    assert reached == {XDP[v] for v in verdicts}


def test_jhash_matches_the_kernel_value():
    # jhash_3words(0, 0, 0, 0) from linux/jhash.h's __jhash_final on three words of 0xdeadbeef + 12.
    assert packets.jhash_3words(0, 0, 0, 0) == _jhash_final_reference(0xDEADBEEF + 12)


def _jhash_final_reference(init: int) -> int:
    """__jhash_final's seven steps: x ^= y; x -= rol32(y, k), on the words named in each step."""
    mask = 0xFFFFFFFF
    words = {"a": init & mask, "b": init & mask, "c": init & mask}
    for x, y, k in (("c", "b", 14), ("a", "c", 11), ("b", "a", 25), ("c", "b", 16), ("a", "c", 4),
                    ("b", "a", 14), ("c", "b", 24)):
        rotated = (words[y] << k | words[y] >> (32 - k)) & mask
        words[x] = ((words[x] ^ words[y]) - rotated) & mask
    return words["c"]


# --- every engine against the rules ---------------------------------------------------------------

@pytest.mark.parametrize("case, cpu", VARIANTS, ids=IDS)
def test_verdicts_on_every_sample(engine, case, cpu):
    program, _ = load_program(case, cpu)
    for description, frame in packets.samples(case.name):
        check(f"{engine} on {description!r}", case, program.test_run(frame, engine=engine).retval, None, frame)


@pytest.fixture(scope="module")
def native():
    try:
        library = NativeLibrary(packets.PACKET_CASES)
    except NativeBuildError as exc:
        pytest.skip(f"no host C compiler: native twins not checked ({exc})")
    yield library
    library.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_native_twin_verdicts(native, name):
    case = CASES[name]
    for description, frame in packets.samples(name):
        retval, _ = native.runner(case, frame).run(1)
        check(f"native on {description!r}", case, retval, None, frame)


@pytest.mark.parametrize("cpu", CASES["hash_counter"].cpu_variants())
def test_hash_counter_counts_every_flow(engine, cpu):
    program, obj = load_program(CASES["hash_counter"], cpu)
    frames = [frame for _, frame in packets.samples("hash_counter")]
    for frame in frames + frames[:3]:
        program.test_run(frame, engine=engine)
    want = packets.hash_counter_state(frames + frames[:3])
    assert len(want) >= 2
    assert packets.read_hash_counter_state(obj) == want


def test_global_counter_counts_by_ethertype(engine):
    program, obj = load_program(CASES["global_counter"])
    frames = [frame for _, frame in packets.samples("global_counter")]
    for frame in frames:
        program.test_run(frame, engine=engine)
    want = packets.global_counter_state(frames)
    assert want["rx_ipv4"] and want["rx_ipv6"] and want["rx_other"]
    assert {name: obj.bss[name] for name in want} == want


def test_repeated_runs_leave_the_state_check_expects(engine):
    for name in ("hash_counter", "global_counter", "xdp_static_branch"):
        case = CASES[name]
        program, obj = load_program(case)
        program.test_run(case.data(), repeat=5, engine=engine)
        case.check_state(obj, 5)


def test_load_balancer_rewrites_macs_and_counts_when_debug_is_on(engine):
    program, obj = load_program(CASES["xdp_static_branch"])
    obj.static_keys["lb_debug"].enable()
    frames = [frame for _, frame in packets.samples("xdp_static_branch")]
    for frame in frames:
        result = program.test_run(frame, engine=engine)
        assert result.data_out == packets.xdp_static_branch_output(frame)
    want = packets.lb_debug_state(frames)
    assert want["lb_debug_ipv6"] and want["lb_debug_no_flow"] and all(want["lb_debug_backend"])
    assert {name: obj.bss[name] for name in want} == want


def test_micro_suite_small_inputs_on_the_interpreter():
    for case in MICRO_CASES:
        data = case.interp_data()
        result = load_program(case)[0].test_run(data, engine="reference")
        check("reference", case, result.retval, result.data_out, data)


# --- freshness: the committed objects are what the committed sources compile to -------------------

CLANG_FLAGS = ["-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu"]
PRELUDES = {"native_suite.h": "bpf_suite.h", "native_xdp.h": "bpf_xdp.h"}
SOURCES = sorted({(case.source, PRELUDES[case.prelude]) for case in MICRO_CASES + packets.PACKET_CASES})


@pytest.mark.parametrize("source, prelude", SOURCES, ids=[s for s, _ in SOURCES])
def test_bench_objects_are_fresh(source, prelude, tmp_path):
    clang = shutil.which("clang-19")
    if clang is None:
        pytest.skip("clang-19 not installed: freshness of bench/progs objects not checked")
    fresh = {}
    for cpu in ("v3", "v4"):
        out = tmp_path / f"{cpu}.o"
        done = subprocess.run([clang, *CLANG_FLAGS, f"-mcpu={cpu}", "-include", prelude, "-c", f"{source}.c",
                               "-o", str(out)], cwd=PROGS, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        fresh[cpu] = _code(out)
    assert fresh["v3"] == _code(PROGS / f"{source}.bpf.o"), f"{source}.bpf.o is stale: run bench/progs/build.sh"
    v4 = PROGS / f"{source}.v4.bpf.o"
    if fresh["v4"] == fresh["v3"]:
        assert not v4.exists(), f"{v4.name} has the v3 code: build.sh keeps v4 objects only where they differ"
    else:
        assert v4.exists() and _code(v4) == fresh["v4"], f"{v4.name} is stale: run bench/progs/build.sh"
    default = PROGS / f"{source}.default.bpf.o"  # built without -mcpu, as users build it
    if default.exists():
        out = tmp_path / "default.o"
        done = subprocess.run([clang, *CLANG_FLAGS, "-include", prelude, "-c", f"{source}.c", "-o", str(out)],
                              cwd=PROGS, capture_output=True, text=True)
        assert done.returncode == 0 and _code(out) == _code(default), f"{default.name} is stale: run build.sh"


def _code(path: pathlib.Path) -> list[tuple[str, bytes]]:
    return [(section.name, section.code) for section in elf.code_sections(path)]


STATIC_BRANCH = {"static_branch_keys.o": ["-DVARIANT_KEYS"], "static_branch_flag.o": ["-DVARIANT_FLAG"],
                 "static_branch_keys1.o": ["-DVARIANT_KEYS", "-DPOINTS=1"], "static_branch_none.o": []}


@pytest.mark.parametrize("name", sorted(STATIC_BRANCH))
def test_static_branch_objects_are_fresh(name, tmp_path):
    clang = shutil.which("clang-19")
    if clang is None:
        pytest.skip("clang-19 not installed: freshness of bench/progs objects not checked")
    out = tmp_path / name
    done = subprocess.run([clang, *CLANG_FLAGS, *STATIC_BRANCH[name], "-c", "static_branch.c", "-o", str(out)],
                          cwd=PROGS, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _code(out) == _code(PROGS / name), f"{name} is stale: run bench/progs/build.sh"


# --- the kernel agrees with the rules (opt-in: -m kernel) --------------------------------------------

KERNEL_PROGRAMS = ["xdp_parse", "checksum", "hash_counter", "global_counter"]  # xdp_static_branch: no static keys there


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_engine")
@pytest.mark.parametrize("name", KERNEL_PROGRAMS)
def test_kernel_gives_the_verdicts_the_rules_give(name):
    from bpfjit.kernel import kernel_test_run
    case = CASES[name]
    for description, frame in packets.samples(name):
        result = kernel_test_run(case.object_path(), case.function, frame)
        assert result.retval == case.expected(frame), description
        if name == "hash_counter" and packets.flow_key(frame) is not None:
            (entry,) = result.map("flow_counts")
            assert struct.unpack("<QQ", entry[1]) == (1, len(frame)), description
