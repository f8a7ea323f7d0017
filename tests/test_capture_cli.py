"""``bpfjit run OBJECT --pcap FILE`` beyond its JSON (tests/test_pcap.py): the default summary,
``--packets``, ``--out-pcap`` (one capture, or one per action), ``--threads`` and the options
that need a capture. The firewall's verdicts and its echo reply are worked out by hand in
tests/test_cli_objects.py and tests/test_pcap.py."""
from __future__ import annotations

import json
import pathlib

import pytest
from test_cli_objects import EXPECTED_VERDICTS, FIREWALL
from test_pcap import FRAMES, RUNT, XDP_ACTIONS, expected_echo_reply, write_pcap

from bpfjit.cli import main
from bpfjit.pcap import read_pcap

LEFT = [(i, frame) for i, (frame, verdict) in enumerate(zip(FRAMES, EXPECTED_VERDICTS)) if verdict in (2, 3)]


def capture(tmp_path: pathlib.Path) -> pathlib.Path:
    return write_pcap(tmp_path / "in.pcap", [*FRAMES, RUNT])


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["run", FIREWALL, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_summary_counts_actions_without_a_line_per_packet(capsys, tmp_path):
    code, out, _ = run(capsys, "--pcap", str(capture(tmp_path)))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 + 4 and "packets/s" in lines[1]
    assert [line.split()[:2] for line in lines[2:]] == [["XDP_PASS", "5"], ["XDP_DROP", "4"], ["XDP_TX", "1"],
                                                        ["error", "1"]]


def test_packets_adds_a_line_per_packet(capsys, tmp_path):
    code, out, _ = run(capsys, "--pcap", str(capture(tmp_path)), "--packets")
    lines = out.splitlines()
    assert code == 0 and lines[1].split() == ["packet", "bytes", "action", "data_out"]
    assert [line.split()[2] for line in lines[2:2 + len(FRAMES)]] == [XDP_ACTIONS[v] for v in EXPECTED_VERDICTS]
    assert "error:" in lines[2 + len(FRAMES)]


def test_out_pcap_holds_the_packets_left_with_their_bytes(capsys, tmp_path):
    out_path = tmp_path / "out.pcap"
    code, _, err = run(capsys, "--pcap", str(capture(tmp_path)), "--out-pcap", str(out_path))
    assert code == 0, err
    written = read_pcap(out_path)
    source = read_pcap(tmp_path / "in.pcap")
    expected = [expected_echo_reply(frame) if EXPECTED_VERDICTS[i] == 3 else frame for i, frame in LEFT]
    assert [packet.data for packet in written.packets] == expected
    assert [packet.timestamp_ns for packet in written.packets] == [source.packets[i].timestamp_ns for i, _ in LEFT]
    assert written.link_type == 1


def test_out_pcap_with_action_in_its_name_writes_a_capture_per_action(capsys, tmp_path):
    pattern = tmp_path / "out-{action}.pcap"
    code, _, err = run(capsys, "--pcap", str(capture(tmp_path)), "--out-pcap", str(pattern))
    assert code == 0, err
    for verdict, name in XDP_ACTIONS.items():
        frames = [frame for frame, v in zip(FRAMES, EXPECTED_VERDICTS) if v == verdict]
        if verdict == 3:
            frames = [expected_echo_reply(frame) for frame in frames]
        assert [p.data for p in read_pcap(tmp_path / f"out-{name}.pcap").packets] == frames
    assert read_pcap(tmp_path / "out-error.pcap").packets == []  # the runt's run failed: nothing left


def test_threads_give_the_same_answers(capsys, tmp_path):
    path = write_pcap(tmp_path / "in.pcap", [*FRAMES, RUNT] * 300)
    records = []
    for threads in ("1", "2"):
        code, out, err = run(capsys, "--pcap", str(path), "--json", "--threads", threads)
        assert code == 0, err
        records.append(json.loads(out))
    assert records[0]["packets"] == records[1]["packets"]
    assert records[1]["summary"]["threads"] == 2


@pytest.mark.parametrize(("args", "words"), [
    (["--threads", "2"], "--threads apply to a run over a capture: add --pcap FILE"),
    (["--out-pcap", "x.pcap", "--packets"], "--out-pcap, --packets apply to a run over a capture"),
    (["--threads", "0"], "0 is not at least 1"),
    (["--threads", "two"], "'two' is not an integer"),
])
def test_capture_options_are_checked(capsys, args, words):
    code, out, err = run(capsys, *args)
    assert code != 0 and out == "" and words in err and "Traceback" not in err


def test_threads_need_a_bpfjit_engine(capsys, tmp_path):
    code, _, err = run(capsys, "--pcap", str(capture(tmp_path)), "--engine", "kernel", "--threads", "2")
    assert code == 1 and "--threads applies to bpfjit's engines" in err


def test_an_unwritable_out_pcap_is_one_line(capsys, tmp_path):
    code, out, err = run(capsys, "--pcap", str(capture(tmp_path)), "--out-pcap", str(tmp_path / "no" / "o.pcap"))
    assert code == 1 and err.startswith("bpfjit: error: ") and err.count("\n") == 1


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_engine")
def test_the_kernel_leaves_the_same_packets(capsys, tmp_path):
    """--out-pcap per action, on the JIT and in Linux (BPF_PROG_TEST_RUN per packet): the same bytes."""
    source = write_pcap(tmp_path / "in.pcap", [*FRAMES, RUNT] * 3)
    for engine in ("jit", "kernel"):
        code, _, err = run(capsys, "--pcap", str(source), "--engine", engine,
                           "--out-pcap", str(tmp_path / f"{engine}-{{action}}.pcap"))
        assert code == 0, err
    for name in (*XDP_ACTIONS.values(), "error"):
        assert (tmp_path / f"jit-{name}.pcap").read_bytes() == (tmp_path / f"kernel-{name}.pcap").read_bytes()


# --- --map-update: entries written after load, before the runs -------------------------------------

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def test_map_updates_fill_an_lpm_firewall_before_a_capture(capsys):
    # traffic.pcap: 100 frames, 25 of them from 10.0.0.0/8 (the README's capture example says so).
    code = main(["run", str(EXAMPLES / "lpm_firewall.o"), "--pcap", str(EXAMPLES / "traffic.pcap"), "--json",
                 "--map-update", "blocked", "10.0.0.0/8=0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    actions = [packet["action"] for packet in json.loads(out)["packets"]]
    assert (actions.count("XDP_DROP"), actions.count("XDP_PASS")) == (25, 75)


def test_map_updates_take_integers_and_hex_bytes(capsys):
    frame = "02000000000102000000000208004500001c00010000401100000a0000010a0000080001000200080000"
    for value in ("1", "0x1", "hex:01000000"):
        code = main(["run", str(EXAMPLES / "router.o"), "--data-hex", frame, "--json",
                     "--map-update", "tx_ports", f"0={value}"])
        out, err = capsys.readouterr()
        assert code == 0 and json.loads(out)["retval"] == 4, err  # XDP_REDIRECT: port 0 holds a device


@pytest.mark.parametrize("update, message", [
    (["tx_ports", "0"], "expected KEY=VALUE"),
    (["tx_ports", "0=x"], "'x' is neither an integer, an IP address or network, nor hex:BYTES"),
    (["tx_ports", "0=hex:zz"], "'hex:zz' is not hex bytes"),
    (["nope", "0=1"], "router.o has no map 'nope' (maps: tx_ports)"),
    (["tx_ports", "9=1"], "update of key 9: index out of range (max_entries 8)"),  # the map's own error
])
def test_bad_map_updates_are_one_line_errors(capsys, update, message):
    code = main(["run", str(EXAMPLES / "router.o"), "--data-hex", "00" * 60, "--map-update", *update])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("bpfjit: error: ") and err.count("\n") == 1 and message in err, err


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_engine")
def test_the_kernel_engine_gets_the_same_map_updates(capsys):
    results = {}
    for engine in ("jit", "kernel"):
        code = main(["run", str(EXAMPLES / "lpm_firewall.o"), "--pcap", str(EXAMPLES / "traffic.pcap"), "--json",
                     "--engine", engine, "--map-update", "blocked", "10.0.0.0/8=0"])
        out, err = capsys.readouterr()
        assert code == 0, err
        results[engine] = [packet["action"] for packet in json.loads(out)["packets"]]
    assert results["jit"] == results["kernel"] and results["jit"].count("XDP_DROP") == 25
