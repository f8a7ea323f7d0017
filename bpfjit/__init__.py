"""bpfjit: run BPF programs in userspace, interpreted or compiled to x86-64 through LLVM."""
from .errors import AsmError, BPFError, BPFRuntimeError, DecodeError, JITError, ProgramError

__all__ = ["AsmError", "BPFError", "BPFRuntimeError", "DecodeError", "JITError", "ProgramError"]
