"""Helpers for programs built from bytecode or assembly: ``Program.from_bytes(code, helpers=...)``.

A loaded object gets the kernel's standard helpers and those given to ``bpfjit.register_helper``;
a raw program calls only the helpers of the registry it is built with. This module is the public
name of that registry (and of bpf_conformance's ``unwind`` helper), so tools such as the CLI's
conformance plugin build one without reaching into ``bpfjit.runtime``.
"""
from .runtime.helpers import Helper, HelperFn, HelperRegistry, Prototype, unwind_helper

__all__ = ["Helper", "HelperFn", "HelperRegistry", "Prototype", "unwind_helper"]
