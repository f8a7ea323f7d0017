"""The verifier's rules for the legacy packet loads, BPF_LD_ABS and BPF_LD_IND (check_ld_abs).

``r0 = ntohN(*(uN *)(skb->data + imm [+ src]))`` has an implicit skb in r6 and an implicit result
in r0, and the kernel runs it as a helper call (runtime/packet_loads.py), so the rules are a
call's: only program types whose context is an skb and whose kernel type knows the rewrite
(socket filters, tc classifiers and actions: may_access_skb), r6 the unmodified context, no
reference held in the main function and no spin lock (a failed load leaves the function at
once), r1-r5 unreadable afterwards and r0 an unknown scalar (the kernel does not narrow it to
the load's width). A failed load returns 0 from the current function: in a subprogram the
verifier explores that return too, so the caller must cope with r0 = 0 there (6.12.y).

The rules are Linux 6.12's, in its order and with its messages (docs/semantics.md). As in the
kernel, LD_IND's source register need only be readable.

Subprograms with these loads need BTF that says they return an int (check_btf_func): without
func_info the kernel refuses them outright. :func:`check_subprograms` is that load-time rule.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from bpfjit import isa
from bpfjit.errors import VerifierError
from bpfjit.isa import Insn
from bpfjit.runtime.packet_loads import is_legacy_load

from . import calls
from .facts import Facts
from .log import Rejected
from .memory import check_ctx_base
from .state import CALLER_SAVED, NOT_INIT, RegType, State, const, require_init, scalar

if TYPE_CHECKING:
    from .check import Verifier

# may_access_skb: the kernel types whose verifier ops rewrite these loads (gen_ld_abs).
_SKB_KERNEL_TYPES = frozenset({"SOCKET_FILTER", "SCHED_CLS", "SCHED_ACT"})
CTX_REG = 6


def check(v: "Verifier", state: State, insn: Insn, index: int) -> list[tuple[int, State]]:
    """The paths after a legacy load at `index`: on, with r0 loaded, and in a subprogram also
    back to the caller with r0 = 0 (explored first, as the kernel does)."""
    if v.spec.kernel_type not in _SKB_KERNEL_TYPES:
        raise Rejected("BPF_LD_[ABS|IND] instructions not allowed for this program type")
    # The reserved fields (dst, off, src of ABS, the DW size) are refused by the decoder.
    regs = state.regs
    require_init(regs[CTX_REG], CTX_REG)
    # check_reference_leak: only the main function's exit must have released everything.
    if len(state.frames) == 1 and state.refs:
        raise Rejected("BPF_LD_[ABS|IND] cannot be mixed with socket references")
    if state.lock is not None:
        raise Rejected("BPF_LD_[ABS|IND] cannot be used inside bpf_spin_lock-ed region")
    ctx = regs[CTX_REG]
    if ctx.type != RegType.PTR_TO_CTX:
        raise Rejected("at the time of BPF_LD_ABS|IND R6 != pointer to skb")
    if insn.mode == isa.IND:
        require_init(regs[insn.src], insn.src)
    check_ctx_base(ctx, CTX_REG, "disallowed")  # r6 must point at the context's start
    for regno in CALLER_SAVED:
        regs[regno] = NOT_INIT
    regs[0] = scalar()
    if len(state.frames) == 1:  # a failed load ends the program with 0, which every type accepts
        return [(index + 1, state)]
    failed = state.copy()
    failed.regs[0] = const(0)
    after = calls.exit_insn(v, failed, index)
    if after is None:  # a callback's return: the helper's caller goes on along its own path
        return [(index + 1, state)]
    return [(after, failed), (index + 1, state)]


def check_subprograms(insns: Sequence[Insn], facts: Facts, returns_int: Mapping[int, bool] | None) -> None:
    """The kernel's load-time rule for subprograms with legacy loads: with BTF func_info each
    must return an int or enum (check_btf_func); without it none may have them
    (check_abnormal_return).

    returns_int: for each function start, whether its BTF prototype returns an int or an enum;
    None when the program has no func_info (raw bytecode, or an object without .BTF.ext).
    """
    for function in facts.functions[1:]:
        if not any(is_legacy_load(insns[i]) for i in isa.slots(insns, function.start, function.end)):
            continue
        if returns_int is None:
            raise VerifierError(function.start, "LD_ABS is not allowed in subprogs without BTF")
        if not returns_int.get(function.start, False):
            raise VerifierError(function.start, "LD_ABS is only allowed in functions that return 'int'.")
