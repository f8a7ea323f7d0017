"""Record llvm-objdump's text for every bpf_conformance program, as assembled by bpfjit.

The golden file pairs each instruction's bytes with the text LLVM prints for them, so the test
suite can check bpfjit's disassembler against LLVM without needing LLVM installed. Run it where
clang-19 and llvm-objdump-19 are installed (Debian packages clang-19 and llvm-19; run
`apt-get update` first), from the repository root:

    python tests/golden/make_conformance_golden.py

32-bit atomics are recorded from `llvm-objdump --mattr=+alu32`, everything else from plain
`llvm-objdump -d` (see bpfjit/disasm.py for why).
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import tempfile

from bpfjit import asm, isa

HERE = pathlib.Path(__file__).resolve().parent
SUITE = pathlib.Path(os.environ.get("BPFJIT_CONFORMANCE_DIR")
                     or HERE.parent.parent.parent / "shared" / "conformance" / "tests")
LINE = re.compile(r"^\s*(\d+):\t([0-9a-f ]+?)\t(.*)$")


def objdump_texts(code: bytes, workdir: pathlib.Path, *flags: str) -> dict[int, str]:
    source = workdir / "p.s"
    source.write_text(".text\n.globl prog\nprog:\n" + "".join(
        f".quad {int.from_bytes(code[i:i + 8], 'little'):#018x}\n" for i in range(0, len(code), 8)))
    subprocess.run(["clang-19", "-target", "bpf", "-c", str(source), "-o", str(workdir / "p.o")], check=True)
    out = subprocess.run(["llvm-objdump-19", "-d", *flags, str(workdir / "p.o")], check=True,
                         capture_output=True, text=True).stdout
    return {int(m.group(1)): m.group(3) for m in map(LINE.match, out.splitlines()) if m}


def main() -> None:
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        for path in sorted(SUITE.glob("*.data")):
            code = asm.assemble(asm.parse_test_file(path.read_text()).asm)
            insns = isa.decode(code)
            plain = objdump_texts(code, workdir)
            alu32 = objdump_texts(code, workdir, "--mattr=+alu32")
            lines.append(f"== {path.stem}")
            for index, insn in enumerate(insns):
                if isa.is_filler(insns, index):
                    continue
                atomic32 = insn.cls == isa.STX and insn.mode == isa.ATOMIC and insn.size == isa.W
                text = (alu32 if atomic32 else plain)[index]
                width = 16 if insn.is_lddw else 8
                lines.append(f"{index}\t{code[index * 8:index * 8 + width].hex()}\t{text}")
    (HERE / "conformance.objdump.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
