"""The README's runnable examples: each Python block that starts with "# runs as it is" is run
from the repository's root, on the objects and capture in examples/, and must print what its
comments say, worked out by hand here from the programs' sources (examples/*.c) and the capture
(examples/traffic.pcap: 100 frames, every fourth from 10.0.0.x). The committed objects must be
what examples/build.sh builds from the sources, when clang-19 is installed."""
from __future__ import annotations

import contextlib
import io
import pathlib
import re
import shutil
import subprocess

import pytest

from bpfjit.runtime import elf

REPO = pathlib.Path(__file__).resolve().parent.parent
RUNNABLE = "# runs as it is"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)

EXPECTED = {
    "examples/router.o": [
        "4 Redirect(ifindex=None, map='tx_ports', key=0, flags=0)",  # 10.0.0.8 & 7 = port 0 -> XDP_REDIRECT
        "1",  # 10.1.2.3 lies in 10.0.0.0/8: XDP_DROP
        "1",  # ... and the prefix counted it
        "0 3c000000 36",  # cpu 0; the 60-byte (padded) frame's length, then 32 of its bytes: 4 + 32
        "3 {'id': 18, 'packets': 1}",  # source port 4242 % 4 = backend 2 (id 0x12), XDP_TX
    ],
    "examples/traffic.pcap": ["100 25", "25", "0 1 True"],
}


def runnable_blocks() -> list[str]:
    return [block for block in BLOCK.findall((REPO / "README.md").read_text()) if block.startswith(RUNNABLE)]


def test_the_readme_has_its_runnable_examples():
    blocks = runnable_blocks()
    assert len(blocks) == len(EXPECTED)
    assert all(any(key in block for block in blocks) for key in EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_a_readme_example_prints_what_it_says(key, monkeypatch):
    block = next(block for block in runnable_blocks() if key in block)
    monkeypatch.chdir(REPO)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, f"README.md ({key})", "exec"), {"__name__": "readme"})
    assert printed.getvalue().splitlines() == EXPECTED[key]


def test_every_example_object_has_its_source():
    objects = sorted(path.stem for path in (REPO / "examples").glob("*.o"))
    assert objects == sorted(path.stem for path in (REPO / "examples").glob("*.c")) and objects


@pytest.mark.skipif(shutil.which("clang-19") is None, reason="rebuilding the examples needs clang-19")
def test_the_committed_objects_are_what_the_sources_build(tmp_path):
    """Their code, section by section (the debug info names the folder it was built in)."""
    for source in (REPO / "examples").glob("*.c"):
        built = tmp_path / f"{source.stem}.o"
        subprocess.run(["clang-19", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c",
                        source.name, "-o", str(built)], check=True, cwd=source.parent)
        assert elf.code_sections(built) == elf.code_sections(source.with_suffix(".o")), \
            f"{source.name} no longer builds to the committed object: run examples/build.sh"
