"""Program structure: functions, basic blocks, and the structural rules every engine relies on.

These are the checks the kernel verifier makes before it looks at any value: jumps stay inside
their function and never land in the middle of an ld_imm64, every function ends in exit or goto,
calls go to known helpers or to function starts, the call graph has no recursion and at most
eight frames, and nothing writes the frame pointer. Messages follow the kernel's wording.

A ``gotox`` (an indirect jump through a jump table, cpu v4) may reach every entry of the tables
of its function (runtime/jump_tables.py); those are its successors here, as in the kernel's
check_cfg, and the verifier narrows them on each path to the entries the loaded index can name.
"""
from __future__ import annotations

from typing import Container, Iterable, Mapping, Sequence

from bpfjit import isa
from bpfjit.errors import ProgramError
from bpfjit.runtime.kernel_helpers import missing_helper_message
from bpfjit.isa import Insn

from bpfjit.runtime.jump_tables import targets_in
from bpfjit.runtime.status import MAX_CALL_FRAMES

from .facts import Facts, Function


def analyse(insns: Sequence[Insn], helper_ids: Container[int], entry_points: Iterable[int] = (),
            unverified: bool = True, jump_tables: Sequence[Sequence[int]] = ()) -> Facts:
    """Check the program's structure and describe its functions and blocks.

    entry_points: further function starts known from outside the code (functions whose address
    sits in global data, which only callx reaches). unverified: the program will not be verified,
    so refuse here, in every instruction, what the verifier (as the kernel) refuses only where a
    path reaches it: a write to r10, a call of an unknown helper (libbpf poisons an instruction
    whose CO-RE relocation failed with such a call, and the kernel loads it while it is dead).
    jump_tables: the slots each of the program's jump tables holds (Environment.jump_tables),
    which its gotox instructions may reach.
    """
    if not insns:
        raise ProgramError(0, "the program is empty")
    starts = _function_starts(insns)
    for start in entry_points:
        if not 0 <= start < len(insns) or isa.is_filler(insns, start):
            raise ProgramError(start, "function entry point is not the start of an instruction")
        starts.add(start)
    bounds = sorted(starts) + [len(insns)]
    functions = []
    block_starts = set(starts)
    successors: dict[int, tuple[int, ...]] = {}
    for start, end in zip(bounds, bounds[1:]):
        calls = set()
        for index in isa.slots(insns, start, end):
            insn = insns[index]
            _check_insn(insn, index, helper_ids, unverified)
            if insn.is_local_call:
                calls.add(insn.call_target(index))
            if _is_branch(insn):
                target = insn.jump_target(index)
                if not start <= target < end or isa.is_filler(insns, target):
                    raise ProgramError(index, f"jump out of range from insn {index} to {target}")
                block_starts.update((target, index + 1))
            if insn.opcode == isa.GOTOX_OP:
                successors[index] = _gotox_targets(insns, index, start, end, jump_tables)
                block_starts.update(successors[index] + (index + 1,))
                continue
            successors[index] = tuple(s for s in _successors(insn, index) if s < end)
        last = end - 1 - (1 if end - 2 >= start and insns[end - 2].is_lddw else 0)
        if not _ends_flow(insns[last]):
            raise ProgramError(last, "last insn is not an exit or jmp")
        functions.append(Function(start, end, frozenset(calls)))
    _check_call_graph(functions)
    return Facts(tuple(functions), frozenset(i for i in block_starts if i < len(insns)), successors)


def _successors(insn: Insn, index: int) -> tuple[int, ...]:
    """The slots that may run after insn: the one definition of the program's edges.

    A successor past the function's end is dropped by the caller; the structure check has
    already rejected a function that falls off its end.
    """
    after = index + (2 if insn.is_lddw else 1)
    if not insn.is_jump or insn.op == isa.CALL:
        return (after,)
    if insn.op == isa.EXIT:
        return ()
    target = insn.jump_target(index)
    if _ends_flow(insn):  # goto / gotol
        return (target,)
    return (after, target)  # conditional jumps, static-branch JAs, may_goto


def _gotox_targets(insns: Sequence[Insn], index: int, start: int, end: int,
                   jump_tables: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """Where the gotox at index may jump: its function's tables' entries (the kernel's
    create_jt), each inside the function and at the start of an instruction."""
    targets = targets_in(jump_tables, start, end)
    if not targets:
        raise ProgramError(index, f"no jump tables found for subprog starting at {start}")
    for target in targets:
        if not start <= target < end:
            raise ProgramError(index, f"jump table for insn {index} points outside of the subprog "
                                      f"[{start},{end}]")
        if isa.is_filler(insns, target):
            raise ProgramError(index, f"jump into the middle of ldimm64 insn {target - 1}")
    return targets


def _function_starts(insns: Sequence[Insn]) -> set[int]:
    starts = {0}
    for index in isa.slots(insns):
        insn = insns[index]
        if insn.is_local_call:
            target = insn.call_target(index)
        elif insn.is_lddw and insn.src == isa.PSEUDO_FUNC:
            target = index + 1 + insn.imm
        else:
            continue
        if not 0 <= target < len(insns) or isa.is_filler(insns, target):
            raise ProgramError(index, f"call to insn {target}, which is not the start of an instruction")
        starts.add(target)
    return starts


def _is_branch(insn: Insn) -> bool:
    """Instructions with a jump target in off/imm (conditional jumps, goto, gotol, may_goto)."""
    return insn.is_jump and insn.op not in (isa.CALL, isa.EXIT) and insn.opcode != isa.GOTOX_OP


def _ends_flow(insn: Insn) -> bool:
    return insn.opcode == isa.EXIT_OP or (insn.op == isa.JA and insn.is_jump and insn.src == 0
                                          and insn.opcode != isa.GOTOX_OP)


def writes_frame_pointer(insn: Insn) -> bool:
    if insn.cls in (isa.ALU, isa.ALU64, isa.LDX) or insn.is_lddw:
        return insn.dst == isa.FRAME_POINTER
    if insn.cls == isa.STX and insn.mode == isa.ATOMIC:
        if insn.imm == isa.LOAD_ACQ:
            return insn.dst == isa.FRAME_POINTER
        return bool(insn.imm & isa.FETCH) and insn.imm != isa.CMPXCHG and insn.src == isa.FRAME_POINTER
    return False


def _check_insn(insn: Insn, index: int, helper_ids: Container[int], unverified: bool) -> None:
    if unverified and writes_frame_pointer(insn):
        raise ProgramError(index, "frame pointer is read only")
    if insn.opcode == isa.CALL_OP:
        if insn.src == isa.CALL_KFUNC:
            raise ProgramError(index, "kfunc calls are not supported")
        if unverified and insn.src == isa.CALL_HELPER and insn.imm not in helper_ids:
            raise ProgramError(index, missing_helper_message(insn.imm))


def _check_call_graph(functions: list[Function]) -> None:
    by_start = {f.start: f for f in functions}

    def depth(function: Function, path: tuple[int, ...]) -> int:
        if function.start in path:
            raise ProgramError(function.start, f"recursive call to the function at insn {function.start}")
        deepest = 0
        for callee in sorted(function.calls):
            deepest = max(deepest, depth(by_start[callee], path + (function.start,)))
        return deepest + 1

    frames = depth(functions[0], ())
    for function in functions[1:]:  # functions reached only through callx are roots too
        frames = max(frames, depth(function, ()))
    if frames > MAX_CALL_FRAMES:
        raise ProgramError(0, f"the call stack of {frames} frames is too deep (at most {MAX_CALL_FRAMES})")


def back_edges(successors: Mapping[int, tuple[int, ...]], starts: Iterable[int]) -> frozenset[tuple[int, int]]:
    """The control-flow graph's back edges (source, target), found depth first from each function
    start in `starts`, successors in their listed order: every cycle holds at least one."""
    edges: set[tuple[int, int]] = set()
    state: dict[int, int] = {}  # 1: on the current depth-first path, 2: finished
    for start in sorted(starts):
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(successors.get(start, ())))]
        while stack:
            node, following = stack[-1]
            for successor in following:
                seen = state.get(successor)
                if seen == 1:
                    edges.add((node, successor))
                elif seen is None:
                    state[successor] = 1
                    stack.append((successor, iter(successors.get(successor, ()))))
                    break
            else:
                state[node] = 2
                stack.pop()
    return frozenset(edges)


def predecessors(successors: Mapping[int, tuple[int, ...]]) -> dict[int, list[int]]:
    """Each instruction's predecessors in the control-flow graph."""
    before: dict[int, list[int]] = {}
    for index, targets in successors.items():
        for target in targets:
            before.setdefault(target, []).append(index)
    return before


def loop_body(successors: Mapping[int, tuple[int, ...]], before: Mapping[int, list[int]], head: int) -> set[int]:
    """The instructions on some path from the head back to it (before: predecessors())."""
    ahead, todo = set(), [head]
    while todo:
        index = todo.pop()
        for target in successors.get(index, ()):
            if target not in ahead:
                ahead.add(target)
                todo.append(target)
    behind, todo = {head}, [head]
    while todo:
        index = todo.pop()
        for source in before.get(index, ()):
            if source not in behind and source in ahead:
                behind.add(source)
                todo.append(source)
    return behind


def in_loops(successors: Mapping[int, tuple[int, ...]], starts: Iterable[int]) -> frozenset[int]:
    """The instructions some loop passes through."""
    before = predecessors(successors)
    heads = {head for _, head in back_edges(successors, starts)}
    return frozenset(index for head in heads for index in loop_body(successors, before, head))


def loop_edges(insns: Sequence[Insn], facts: Facts) -> frozenset[tuple[int, int]]:
    """The edges at which a run counts a loop trip (Facts.loop_edges): every cycle holds one.

    They are the back edges, where a loop's latch usually is, so that the JIT folds the count
    into the latch's test and the loop keeps its single exit (jit/lower.py loop_latch). Engines
    count at jumps only, so where a back edge is the fall-through of an instruction that is no
    jump (a call among them), its function counts every backward jump instead (every cycle holds one of those too);
    and a gotox counts a trip on all its edges when it does on one."""
    edges = set(back_edges(facts.successors, facts.function_starts))
    plain = [(source, target) for source, target in edges
             if not (_is_branch(insns[source]) or insns[source].opcode == isa.GOTOX_OP)]
    for function in facts.functions:
        if any(function.start <= source < function.end for source, _ in plain):
            edges.update((index, target) for index in range(function.start, function.end)
                         for target in facts.successors.get(index, ()) if target <= index)
    edges.difference_update(plain)
    gotox = {source for source, _ in edges if insns[source].opcode == isa.GOTOX_OP}
    edges.update((source, target) for source in gotox for target in facts.successors[source])
    return frozenset(edges)
