"""bpfjit: run BPF programs in userspace, interpreted or compiled to x86-64 through LLVM."""
from .errors import (AsmError, BPFError, BPFRuntimeError, BTFError, DecodeError, JITError, KernelEngineError,
                     MapError, ObjectError, ProgramError)
from .object import Object, load, register_helper
from .program import Program

__all__ = ["AsmError", "BPFError", "BPFRuntimeError", "BTFError", "DecodeError", "JITError", "KernelEngineError",
           "MapError", "ObjectError", "ProgramError", "Object", "Program", "load", "register_helper"]
