"""The exceptions a user of bpfjit can see.

Every error a user can cause (bad bytecode, bad assembly, a program that misbehaves at run time,
bad command-line input) is a subclass of :class:`BPFError`, so callers need to catch one type and
the CLI can print one clean line instead of a traceback.
"""
from __future__ import annotations

import errno as _errno


class BPFError(Exception):
    """Base class of every error bpfjit raises on purpose."""


class DecodeError(BPFError):
    """Bytecode that is not a valid instruction stream; names the instruction index."""

    def __init__(self, index: int, reason: str):
        self.index = index
        self.reason = reason
        super().__init__(f"insn {index}: {reason}")


class AsmError(BPFError):
    """Assembly text that cannot be assembled; names the source line."""

    def __init__(self, line: int, reason: str):
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


class ProgramError(BPFError):
    """A decoded program whose structure cannot run (bad jump target, call into nowhere, ...)."""

    def __init__(self, index: int, reason: str):
        self.index = index
        self.reason = reason
        super().__init__(f"insn {index}: {reason}")


class BPFRuntimeError(BPFError):
    """A program that failed while running (bad memory access, unknown call target, ...)."""

    def __init__(self, index: int | None, reason: str):
        self.index = index
        self.reason = reason
        where = f"insn {index}: " if index is not None else ""
        super().__init__(f"{where}{reason}")


class JITError(BPFError):
    """LLVM refused the code we generated: a bpfjit bug, reported instead of crashing."""


class ObjectError(BPFError):
    """A malformed or unsupported ELF object; names the file and the section or symbol."""


class BTFError(BPFError):
    """Malformed or unsupported BTF / BTF.ext data; names the type id or offset."""


class MapError(BPFError):
    """A map operation a user asked for failed (wrong key size, full map, unknown key, ...)."""

    def __init__(self, message: str, errno: int = 0):
        self.errno = errno
        super().__init__(message)


class TestRunError(BPFError):
    """Test-run input that BPF_PROG_TEST_RUN refuses: ``errno`` is the kernel's errno for it (an
    ``errno`` module int: EINVAL, E2BIG, ENOSPC, ENODEV, ENOMEM) and ``field`` the input at fault:
    ``"data_in"``, ``"ctx_in"``, ``"data_size_out"``, ``"ctx_size_out"``, or a field of the ctx
    as ``"ctx.gso_segs"``. Both are attributes so that a caller, or a test comparing bpfjit with
    the kernel engine, compares them by value instead of parsing the message; the message ends
    with the errno's name, taken from ``errno`` itself so the two cannot disagree."""

    __test__ = False  # its name starts with "Test": pytest must not collect it where a test imports it

    def __init__(self, message: str, errno: int, field: str):
        self.errno = errno
        self.field = field
        super().__init__(f"{message} ({_errno.errorcode.get(errno, errno)})")


class KernelEngineError(BPFError):
    """The opt-in kernel engine could not load or run a program (its child process failed)."""


class VerifierError(ProgramError):
    """The verifier rejected a program: the kernel's message, the instruction, and the log.

    ``message`` (also ``reason``) is the kernel verifier's wording; ``log`` is the kernel-style
    verifier log (the path that led to the error, with register states); ``insn`` is the rejected
    instruction as the log prints it (``(79) r1 = *(u64 *)(r0 +0)``) and ``line`` the C source
    line from ``.BTF.ext`` in the kernel's form (``*value += 2; @ prog.c:37``), when known.
    ``str()`` is one line: ``prog: insn 24: <message> | 24: <insn> | <line>``, the parts of the
    log's last lines a reader needs, separated by ``|`` because C text has ``;`` in it.
    """

    def __init__(self, index: int, message: str, log: str = "", line: str | None = None, program: str = "",
                 insn: str = ""):
        self.message = message
        self.log = log
        self.line = line
        self.program = program
        self.insn = insn
        super().__init__(index, message)
        parts = [f"{program}: {self.args[0]}" if program else self.args[0]]
        if insn:
            parts.append(f"{index}: {insn}")
        if line:
            parts.append(line)
        self.args = (" | ".join(parts),)


class ProgramFlagsError(BPFError):
    """Program flags a load refuses. ``errno`` is EINVAL where the kernel's BPF_PROG_LOAD refuses
    them (a bit it does not take, BPF_F_SLEEPABLE on a type that may not sleep or missing from one
    that must, a map a sleepable program may not use) and EOPNOTSUPP where the kernel takes them
    but bpfjit does not do what they ask; ``flags`` holds the bits at fault and ``program`` names
    the program. The message ends with the errno's name."""

    def __init__(self, message: str, errno: int, flags: int, program: str = ""):
        self.errno = errno
        self.flags = flags
        self.program = program
        self.reason = message  # the message without its errno
        name = "EOPNOTSUPP" if errno == _errno.EOPNOTSUPP else _errno.errorcode.get(errno, errno)  # not ENOTSUP
        super().__init__(f"{message} ({name})")
