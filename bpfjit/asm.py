"""Assembler for the bpf_conformance assembly syntax, and reader of its ``.data`` test files.

Syntax, one instruction per line, ``#`` starts a comment, ``name:`` defines a label::

    mov32 %r0, 1            add %r1, %r2          neg %r3        le16 %r0   be64 %r1   bswap32 %r2
    sdiv32 %r0, -3          smod %r0, %r1         movsx1664 %r0, %r1 (sign-extend 16 -> 64)
    ldxw %r0, [%r1+4]       ldxsh %r0, [%r10-2]   stw [%r10-4], 7     stxdw [%r1], %r2
    lddw %r0, 0x1122334455667788
    jeq %r1, 0xb, label     jne32 %r1, %r2, +3    ja label   ja32 label (gotol)
    call 5   call helper 5  call local func   call %r2 (callx)   exit
    lock add [%r10-8], %r1  lock fetch xor32 [%r1+4], %r2   lock xchg ...   lock cmpxchg32 ...

Extensions beyond that suite (bpfjit's own, so every encoding can be written down):
``ldacq{b,h,w,dw} %rD, [%rS+off]`` / ``strel{b,h,w,dw} [%rD+off], %rS`` (load-acquire /
store-release), ``goto_or_nop``/``nop_or_goto``/``gotol_or_nop``/``nop_or_gotol`` (static branches),
``may_goto label``, ``gotox %rN``, ``ldabs{b,h,w} imm`` / ``ldind{b,h,w} %rS, imm`` (legacy),
``call kfunc N``.

As in bpf_conformance, the label ``exit`` means the first ``exit`` instruction unless the program
defines a label of that name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import isa
from .errors import AsmError, DecodeError
from .isa import Insn

_ALU_OPS = {
    "add": isa.ADD, "sub": isa.SUB, "mul": isa.MUL, "div": isa.DIV, "sdiv": isa.DIV, "or": isa.OR,
    "and": isa.AND, "lsh": isa.LSH, "rsh": isa.RSH, "mod": isa.MOD, "smod": isa.MOD, "xor": isa.XOR,
    "mov": isa.MOV, "arsh": isa.ARSH,
}
_JMP_OPS = {
    "jeq": isa.JEQ, "jgt": isa.JGT, "jge": isa.JGE, "jset": isa.JSET, "jne": isa.JNE, "jsgt": isa.JSGT,
    "jsge": isa.JSGE, "jlt": isa.JLT, "jle": isa.JLE, "jslt": isa.JSLT, "jsle": isa.JSLE,
}
_SIZES = {"b": isa.B, "h": isa.H, "w": isa.W, "dw": isa.DW}
_ATOMIC_OPS = {"add": isa.ADD, "or": isa.OR, "and": isa.AND, "xor": isa.XOR}
_MOVSX = {"movsx832": (isa.ALU, 8), "movsx1632": (isa.ALU, 16), "movsx864": (isa.ALU64, 8),
          "movsx1664": (isa.ALU64, 16), "movsx3264": (isa.ALU64, 32)}
_STATIC_JA = {"goto_or_nop": (isa.JA_OP, isa.STATIC_BRANCH_JA),
              "nop_or_goto": (isa.JA_OP, isa.STATIC_BRANCH_JA | isa.STATIC_BRANCH_NOP),
              "gotol_or_nop": (isa.GOTOL_OP, isa.STATIC_BRANCH_JA),
              "nop_or_gotol": (isa.GOTOL_OP, isa.STATIC_BRANCH_JA | isa.STATIC_BRANCH_NOP)}
_MEM_OPERAND = re.compile(r"^\[\s*%r(\d+)\s*(?:([+-])\s*(\w+))?\s*\]$")


@dataclass
class _Pending:
    """An instruction whose jump/call target is a label, resolved after the whole text is read."""
    index: int
    label: str
    line: int
    field: str  # "off" or "imm"


class _Assembler:
    def __init__(self) -> None:
        self.insns: list[Insn] = []
        self.labels: dict[str, int] = {}
        self.pending: list[_Pending] = []
        self.first_exit: int | None = None  # the implicit label "exit"
        self.slot_lines: list[int] = []  # source line of every slot, for error messages
        self.line = 0

    def fail(self, reason: str) -> AsmError:
        return AsmError(self.line, reason)

    # --- operand parsing -----------------------------------------------------------------------
    def reg(self, text: str) -> int:
        m = re.fullmatch(r"%r(\d+)", text)
        if not m or int(m.group(1)) > isa.MAX_REG:
            raise self.fail(f"invalid register {text!r}")
        return int(m.group(1))

    def number(self, text: str, lo: int, hi: int, what: str = "immediate") -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise self.fail(f"invalid {what} {text!r}") from None
        if not lo <= value <= hi:
            raise self.fail(f"{what} {text} out of range")
        return value

    def imm32(self, text: str) -> int:
        return isa.s32(self.number(text, -(1 << 31), (1 << 32) - 1))

    def mem(self, text: str) -> tuple[int, int]:
        m = _MEM_OPERAND.match(text)
        if not m:
            raise self.fail(f"invalid memory operand {text!r}")
        reg = self.reg("%r" + m.group(1))
        off = 0
        if m.group(2):
            off = self.number(m.group(3), 0, 1 << 16, "offset")
            off = -off if m.group(2) == "-" else off
            if not -(1 << 15) <= off < (1 << 15):
                raise self.fail(f"offset {text} out of range")
        return reg, off

    def target(self, text: str, field_name: str) -> int:
        """A jump/call target: +N / -N relative, or a label resolved later."""
        if text[:1] in "+-":
            bits = 16 if field_name == "off" else 32
            return self.number(text, -(1 << (bits - 1)), (1 << (bits - 1)) - 1, "offset")
        if not re.fullmatch(r"[A-Za-z_.][\w.]*", text):
            raise self.fail(f"invalid jump target {text!r}")
        self.pending.append(_Pending(len(self.insns), text, self.line, field_name))
        return 0

    # --- one line ------------------------------------------------------------------------------
    def line_text(self, text: str) -> None:
        text = text.split("#", 1)[0].strip()
        while True:
            m = re.match(r"^([A-Za-z_.][\w.]*):\s*(.*)$", text)
            if not m:
                break
            if m.group(1) in self.labels:
                raise self.fail(f"duplicate label {m.group(1)!r}")
            self.labels[m.group(1)] = len(self.insns)
            text = m.group(2)
        if not text:
            return
        mnemonic, _, rest = text.partition(" ")
        operands = [o.strip() for o in rest.split(",")] if rest.strip() else []
        if mnemonic == "exit" and self.first_exit is None:
            self.first_exit = len(self.insns)
        assembled = self.instruction(mnemonic.lower(), operands)
        self.insns += assembled
        self.slot_lines += [self.line] * len(assembled)

    def expect(self, operands: list[str], count: int, mnemonic: str) -> None:
        if len(operands) != count:
            raise self.fail(f"{mnemonic} takes {count} operand(s), got {len(operands)}")

    def instruction(self, mn: str, ops: list[str]) -> list[Insn]:
        if mn == "lock":
            return [self.atomic(ops)]
        if mn == "call":
            return [self.call(ops)]
        if mn == "exit":
            self.expect(ops, 0, mn)
            return [Insn(isa.EXIT_OP)]
        if mn == "lddw":
            self.expect(ops, 2, mn)
            return isa.lddw(self.reg(ops[0]), self.number(ops[1], -(1 << 63), (1 << 64) - 1))
        if mn in ("ja", "ja32"):
            self.expect(ops, 1, mn)
            if mn == "ja":
                return [Insn(isa.JA_OP, off=self.target(ops[0], "off"))]
            return [Insn(isa.GOTOL_OP, imm=self.target(ops[0], "imm"))]
        if mn in _STATIC_JA:
            self.expect(ops, 1, mn)
            opcode, src = _STATIC_JA[mn]
            if opcode == isa.JA_OP:
                return [Insn(opcode, src=src, off=self.target(ops[0], "off"))]
            return [Insn(opcode, src=src, imm=self.target(ops[0], "imm"))]
        if mn == "may_goto":
            self.expect(ops, 1, mn)
            return [Insn(isa.MAY_GOTO_OP, off=self.target(ops[0], "off"))]
        if mn == "gotox":
            self.expect(ops, 1, mn)
            return [Insn(isa.GOTOX_OP, dst=self.reg(ops[0]))]
        if mn in _MOVSX:
            self.expect(ops, 2, mn)
            cls, bits = _MOVSX[mn]
            return [Insn(cls | isa.MOV | isa.X, self.reg(ops[0]), self.reg(ops[1]), bits)]
        m = re.fullmatch(r"(le|be|bswap|swap)(16|32|64)", mn)
        if m:
            self.expect(ops, 1, mn)
            opcode = {"le": isa.ALU | isa.END | isa.K, "be": isa.ALU | isa.END | isa.X}.get(
                m.group(1), isa.ALU64 | isa.END)
            return [Insn(opcode, self.reg(ops[0]), imm=int(m.group(2)))]
        m = re.fullmatch(r"neg(32)?", mn)
        if m:
            self.expect(ops, 1, mn)
            return [Insn((isa.ALU if m.group(1) else isa.ALU64) | isa.NEG, self.reg(ops[0]))]
        m = re.fullmatch(r"([a-z]+?)(32)?", mn)
        if m and m.group(1) in _ALU_OPS:
            return [self.alu(mn, m.group(1), bool(m.group(2)), ops)]
        if m and m.group(1) in _JMP_OPS:
            return [self.jump(mn, m.group(1), bool(m.group(2)), ops)]
        return [self.load_store(mn, ops)]

    def alu(self, mn: str, name: str, is32: bool, ops: list[str]) -> Insn:
        self.expect(ops, 2, mn)
        opcode = (isa.ALU if is32 else isa.ALU64) | _ALU_OPS[name]
        off = 1 if name in ("sdiv", "smod") else 0
        dst = self.reg(ops[0])
        if ops[1].startswith("%"):
            return Insn(opcode | isa.X, dst, self.reg(ops[1]), off)
        return Insn(opcode | isa.K, dst, 0, off, self.imm32(ops[1]))

    def jump(self, mn: str, name: str, is32: bool, ops: list[str]) -> Insn:
        self.expect(ops, 3, mn)
        opcode = (isa.JMP32 if is32 else isa.JMP) | _JMP_OPS[name]
        dst = self.reg(ops[0])
        off = self.target(ops[2], "off")
        if ops[1].startswith("%"):
            return Insn(opcode | isa.X, dst, self.reg(ops[1]), off)
        return Insn(opcode | isa.K, dst, 0, off, self.imm32(ops[1]))

    def call(self, ops: list[str]) -> Insn:
        words = " ".join(ops).split()
        if len(words) == 1 and words[0].startswith("%"):
            return Insn(isa.CALLX_OP, dst=self.reg(words[0]))
        if len(words) == 1:
            words.insert(0, "helper")
        if len(words) != 2 or words[0] not in ("helper", "local", "runtime", "kfunc"):
            raise self.fail("call takes a helper id, 'local LABEL', 'kfunc ID' or a register")
        kind, target = words
        if kind == "local":
            return Insn(isa.CALL_OP, src=isa.CALL_LOCAL, imm=self.target(target, "imm"))
        src = isa.CALL_HELPER if kind == "helper" else isa.CALL_KFUNC
        return Insn(isa.CALL_OP, src=src, imm=self.imm32(target))

    def atomic(self, ops: list[str]) -> Insn:
        words = ops[0].split() if ops else []
        if len(ops) != 2 or not words:
            raise self.fail("lock takes '[fetch] OP [%rD+off], %rS'")
        fetch = words[0] == "fetch"
        if fetch:
            words = words[1:]
        if len(words) != 2:
            raise self.fail("lock takes '[fetch] OP [%rD+off], %rS'")
        name, mem = words
        size = isa.W if name.endswith("32") else isa.DW
        name = name[:-2] if name.endswith("32") else name
        if name in _ATOMIC_OPS:
            imm = _ATOMIC_OPS[name] | (isa.FETCH if fetch else 0)
        elif name in ("xchg", "cmpxchg") and not fetch:
            imm = isa.XCHG if name == "xchg" else isa.CMPXCHG
        else:
            raise self.fail(f"unknown atomic operation {' '.join(ops[0].split())!r}")
        dst, off = self.mem(mem)
        return Insn(isa.STX | isa.ATOMIC | size, dst, self.reg(ops[1]), off, imm)

    def load_store(self, mn: str, ops: list[str]) -> Insn:
        m = re.fullmatch(r"(ldxs|ldx|stx|st|ldacq|strel|ldabs|ldind)(dw|b|h|w)", mn)
        if not m:
            raise self.fail(f"unknown mnemonic {mn!r}")
        kind, size = m.group(1), _SIZES[m.group(2)]
        if kind in ("ldx", "ldxs", "ldacq"):
            self.expect(ops, 2, mn)
            src, off = self.mem(ops[1])
            dst = self.reg(ops[0])
            if kind == "ldacq":
                return Insn(isa.STX | isa.ATOMIC | size, dst, src, off, isa.LOAD_ACQ)
            if kind == "ldxs" and size == isa.DW:
                raise self.fail("ldxsdw does not exist")
            return Insn(isa.LDX | (isa.MEMSX if kind == "ldxs" else isa.MEM) | size, dst, src, off)
        if kind in ("ldabs", "ldind"):
            if size == isa.DW:
                raise self.fail(f"{mn} does not exist")
            if kind == "ldabs":
                self.expect(ops, 1, mn)
                return Insn(isa.LD | isa.ABS | size, imm=self.imm32(ops[0]))
            self.expect(ops, 2, mn)
            return Insn(isa.LD | isa.IND | size, src=self.reg(ops[0]), imm=self.imm32(ops[1]))
        self.expect(ops, 2, mn)
        dst, off = self.mem(ops[0])
        if kind == "st":
            return Insn(isa.ST | isa.MEM | size, dst, 0, off, self.imm32(ops[1]))
        imm = isa.STORE_REL if kind == "strel" else 0
        mode = isa.ATOMIC if kind == "strel" else isa.MEM
        return Insn(isa.STX | mode | size, dst, self.reg(ops[1]), off, imm)

    # --- labels --------------------------------------------------------------------------------
    def resolve(self) -> list[Insn]:
        insns = list(self.insns)
        labels = dict(self.labels)
        if self.first_exit is not None:
            labels.setdefault("exit", self.first_exit)
        for p in self.pending:
            if p.label not in labels:
                raise AsmError(p.line, f"undefined label {p.label!r}")
            delta = labels[p.label] - p.index - 1
            insn = insns[p.index]
            if p.field == "off":
                if not -(1 << 15) <= delta < (1 << 15):
                    raise AsmError(p.line, f"jump to {p.label!r} is too far for a 16-bit offset")
                insns[p.index] = Insn(insn.opcode, insn.dst, insn.src, delta, insn.imm)
            else:
                insns[p.index] = Insn(insn.opcode, insn.dst, insn.src, insn.off, delta)
        return insns


def assemble_insns(text: str) -> list[Insn]:
    """Assemble text into instruction slots (ld_imm64 takes two)."""
    asm = _Assembler()
    for number, line in enumerate(text.splitlines(), 1):
        asm.line = number
        asm.line_text(line)
    insns = asm.resolve()
    for index, insn in enumerate(insns):
        if not isa.is_filler(insns, index):
            try:
                isa.check(insn, index)
            except DecodeError as exc:
                raise AsmError(asm.slot_lines[index], f"assembled an invalid instruction: {exc}") from None
    return insns


def assemble(text: str) -> bytes:
    """Assemble text into bytecode."""
    return isa.encode(assemble_insns(text))


# The sections of a bpf_conformance (and uBPF) test file. asm, raw, mem and result are read;
# the others are kept as notes.
TEST_FILE_SECTIONS = ("asm", "raw", "mem", "result", "error", "error pattern", "c", "no jit", "no register offset")


@dataclass
class TestFile:
    """One bpf_conformance ``.data`` file.

    asm is the ``-- asm`` section's text at the lines it has in the file (the lines above it left
    blank), so that an assembler error names the file's line.
    """
    asm: str = ""
    raw: bytes | None = None
    mem: bytes = b""
    result: int | None = None
    notes: dict[str, str] = field(default_factory=dict)


_Lines = list[tuple[int, str]]  # (line number in the file, text) of one section's body


def parse_test_file(text: str) -> TestFile:
    """Split a ``.data`` file into its sections (asm, raw, mem, result; the rest are notes).

    Anything malformed (an unknown or repeated section, bad hex in ``-- mem`` or ``-- raw``, a
    ``-- result`` that is not one integer, no program at all) is an :class:`AsmError` naming the
    file's line, so a tool reading the file reports one line, not a traceback.
    """
    sections: dict[str, _Lines] = {}
    headers: dict[str, int] = {}
    current: _Lines | None = None
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if line.startswith("-- ") or line.rstrip() == "--":
            name = line[2:].strip()
            if name not in TEST_FILE_SECTIONS:
                raise AsmError(number, f"unknown section {line.strip()!r} (known: "
                                       f"{', '.join('-- ' + known for known in TEST_FILE_SECTIONS)})")
            if name in sections:
                raise AsmError(number, f"a second '-- {name}' section (the first is at line {headers[name]})")
            current = sections[name] = []
            headers[name] = number
        elif current is not None:
            current.append((number, line))
        elif _content(line):
            raise AsmError(number, f"text before the first section: {line.strip()!r} (sections start with "
                                   "'-- asm', '-- mem', ...)")
    test = TestFile()
    if "asm" in sections:
        test.asm = "\n" * headers["asm"] + "\n".join(line for _, line in sections.pop("asm"))
    if "raw" in sections:
        test.raw = _raw_section(sections.pop("raw"))
    if not _content(test.asm) and not test.raw:
        raise AsmError(headers.get("asm", headers.get("raw", len(lines))),
                       "no program: the file needs a '-- asm' or '-- raw' section with instructions")
    if "mem" in sections:
        test.mem = _mem_section(sections.pop("mem"))
    if "result" in sections:
        test.result = _result_section(sections.pop("result"), headers["result"])
    test.notes = {name: "\n".join(line for _, line in body) for name, body in sections.items()}
    return test


def _content(text: str) -> str:
    """Text with its ``#`` comments and surrounding blanks removed."""
    return "\n".join(line.split("#", 1)[0].strip() for line in text.splitlines()).strip()


def _mem_section(body: _Lines) -> bytes:
    """``-- mem``: bytes in hex, any number per line, blanks between them optional."""
    memory = bytearray()
    for number, line in body:
        try:
            memory += bytes.fromhex(_content(line))
        except ValueError:
            raise AsmError(number, f"-- mem: {line.strip()!r} is not bytes in hex (like '0a 1b ff')") from None
    return bytes(memory)


def _raw_section(body: _Lines) -> bytes:
    """``-- raw``: one instruction slot per word, a 64-bit little-endian number in hex."""
    code = bytearray()
    for number, line in body:
        for word in _content(line).split():
            try:
                value = int(word, 16)
            except ValueError:
                raise AsmError(number, f"-- raw: {word!r} is not a hexadecimal number") from None
            if not 0 <= value < 1 << 64:
                raise AsmError(number, f"-- raw: {word} does not fit in a 64-bit instruction slot")
            code += value.to_bytes(8, "little")
    return bytes(code)


def _result_section(body: _Lines, header: int) -> int:
    """``-- result``: one integer (any base Python reads: 0x1f, 31, -1)."""
    words = [(number, word) for number, line in body for word in _content(line).split()]
    if len(words) != 1:
        raise AsmError(words[1][0] if words else header,
                       f"-- result holds {len(words)} values; it takes one integer")
    number, word = words[0]
    try:
        return int(word, 0)
    except ValueError:
        raise AsmError(number, f"-- result: {word!r} is not an integer") from None
