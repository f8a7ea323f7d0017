"""bpfjit: run BPF programs in userspace, interpreted or compiled to x86-64 through LLVM.

The root imports lazily (PEP 562): ``bpfjit.load``, ``bpfjit.Object``, ``bpfjit.Program`` and
``bpfjit.register_helper`` (and ``register_kfunc``) import the orchestration (and with it llvmlite) on first use, so the
layers below it (``bpfjit.runtime``, ``bpfjit.verifier``, ``bpfjit.isa``) import without llvmlite,
as ARCHITECTURE's layering promises. The errors are light and import at once.
"""
from importlib import import_module as _import_module

from .errors import (
    AsmError,
    BPFError,
    BPFRuntimeError,
    BTFError,
    DecodeError,
    JITError,
    KernelEngineError,
    MapError,
    ObjectError,
    ProgramError,
    ProgramFlagsError,
    TestRunError,
    VerifierError,
)

# Public name -> the submodule that defines it, imported when the name is first asked for.
_LAZY = {"Object": "object", "load": "object", "register_helper": "object", "register_kfunc": "object",
         "Program": "program", "fib": "runtime.fib"}

__all__ = ["AsmError", "BPFError", "BPFRuntimeError", "BTFError", "DecodeError", "JITError", "KernelEngineError",
           "MapError", "ObjectError", "ProgramError", "ProgramFlagsError", "TestRunError", "VerifierError", "Object",
           "Program", "load", "register_helper", "register_kfunc", "fib"]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bpfjit' has no attribute {name!r}")
    value = getattr(_import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
