"""The exploration loop: walk every path of the program, one transfer function per class.

Like the kernel's ``do_check``: a path is followed instruction by instruction; at a conditional
jump the taken edge is saved for later and the fall-through is followed first; a path ends at the
program's exit, or where its state is covered by a state already explored to the end from the
same instruction (pruning); a path that comes back to an instruction in a state equal to one it
passed through is an infinite loop. At most 1M instructions are processed.

Pruning compares the registers the rest of the function may read (liveness from
:mod:`.prune`) and the stack slots, and scalars by range inclusion.
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from bpfjit import isa
from bpfjit.errors import BPFError, VerifierError
from bpfjit.isa import Insn
from bpfjit.runtime.helpers import HelperRegistry

from . import calls, jumps, legacy_packet, length, links, precision, termination
from .alu import check_alu, zero_extension
from .cfg import in_loops, writes_frame_pointer
from .facts import Facts
from .insn_text import insn_text
from .log import Rejected, Stats, VerifierLog, error
from .memory import MemoryChecker
from .prune import Liveness, covers, equal
from .scalar import Scalar
from .state import (NOT_INIT, RAW_LENGTH_ID, SLOT_SIZE, Frame, MapInfo, Reg, RegType, Slot, SlotKind, State, const,
                    scalar)
from .widen import THRESHOLD_ROUNDS, Thresholds, loop_heads, widen

INSN_LIMIT = 1_000_000
TOO_LARGE = "BPF program is too large."  # the kernel's message at INSN_LIMIT, before the count
JUMP_SEQUENCE_LIMIT = 8192  # saved branches waiting to be explored (BPF_COMPLEXITY_LIMIT_JMP_SEQ)
# Inside a loop a new state is kept only after this many instructions or jumps since the last one
# kept (the kernel's heuristic: comparing against every iteration's state costs more than it saves).
# Not below a widened loop head: there the body is walked once per widening, not once per trip, and
# its branches' paths meet kept states instead of each running on to the head (a 64-trip loop of
# ten branches: 3,061 instructions processed with the heuristic, 1,080 without).
LOOP_KEEP_INSNS, LOOP_KEEP_JUMPS = 100, 20
# Elsewhere, a state is kept only after at least this many instructions and jumps since the last
# one (the kernel's is_state_visited: half the states, a fifth of the time).
KEEP_INSNS, KEEP_JUMPS = 8, 2
# A loop head is widened once a path has come back to it this often (short constant loops are
# walked, and stay exact).
WIDEN_AFTER = 3

_SCANNED_STATES = 16  # states kept at an insn that a loop check compares one by one (then: by_signature)
_REGISTER_MOVES = (isa.ALU64 | isa.ADD | isa.X, isa.ALU64 | isa.SUB | isa.X)
_SHIFT_LEFT = isa.ALU64 | isa.LSH | isa.K  # the first of clang's zero-extending pair (alu.zero_extension)

# What a pseudo ld_imm64 refers to: ("map", info), ("map_value", info, offset), ("func", start).
PseudoTarget = tuple
PseudoResolver = Callable[[Insn, int], PseudoTarget]


@dataclass
class Checkpoint:
    """A state kept at a prune point, with the number of paths from it still being explored."""
    state: State
    branches: int = 1
    parent: "Checkpoint | None" = None
    hits: int = 0  # later states it covered
    misses: int = 0  # later states it did not
    signature: tuple = ()  # what an equal state must also have (a cheap filter for loop checks)
    widened: bool = False  # a loop head's state that holds every visit so far (verifier/widen.py)
    trips: int = 0  # at a loop head: the trips of the loop this path made before (states kept here above it)
    rounds: int = 0  # ... and how often those trips were widened
    # Precision (verifier/precision.py): the places whose bounds the paths from here depended on.
    precise: set = field(default_factory=set)
    all_precise: bool = False
    history: list = field(default_factory=list)  # the Steps from the parent checkpoint to this one
    depth: int = 0  # checkpoints above it on its path
    index: int = 0  # the instruction it was kept at
    serial: int = 0  # the how-manyth state kept (the candidates at an insn are tried oldest first)
    below_widened: bool = False  # it, or a checkpoint above it on its path, is widened
    # The outermost widened loop head still being explored that a path from here was pruned
    # against (the kernel's loop_entry): until that loop is done, precision marks here may be
    # incomplete, so comparisons take every scalar as precise.
    loop_entry: "Checkpoint | None" = None

    def precise_places(self) -> set | None:
        """What `covers` may assume of this state's scalars (None: all of them are precise)."""
        if self.all_precise or self.widened or (self.loop_entry is not None and self.loop_entry.branches):
            return None
        return self.precise

    def unfinished_loop(self) -> "Checkpoint | None":
        """The loop still being explored whose later paths may add to what this state found
        precise: itself (a widened loop head with paths left), else its loop entry, if any."""
        if self.branches:
            return self
        if self.loop_entry is not None and self.loop_entry.branches:
            return self.loop_entry
        return None


@dataclass
class Verdict:
    """What a successful verification proved, and how much work it took."""
    stats: Stats
    log: str
    # Memory instructions that may access a raw program's memory of run-time size (Facts).
    checked_accesses: frozenset[int] = frozenset()
    # Whether every helper's pointer arguments were proven (none is a raw program's memory):
    # only then may helpers skip their own checks (jit/native_helpers.py).
    helper_args_proven: bool = True
    # Stack slots some path reads before writing, (function start, slot number): Facts.
    uninit_stack_reads: frozenset[tuple[int, int]] = frozenset()
    # Instructions no path reaches (Facts.dead).
    dead: frozenset[int] = frozenset()
    # 64-bit ADD/SUB that move a pointer: slot -> the register holding it (Facts.pointer_moves).
    pointer_moves: Mapping[int, int] = field(default_factory=dict)
    # Memory instructions that access the context (on every path that reaches them): the ones
    # whose offsets the ctx rewrite turns into the native context's (verifier/ctx_access.py).
    ctx_accesses: frozenset[int] = frozenset()
    # Each callx, by slot: the functions some path called through it (Facts.callx_sites).
    callx_sites: Mapping[int, frozenset[int]] = field(default_factory=dict)
    # A raw program's loop heads whose trips need no counting: a counter bounded by the length
    # ends each loop (Verifier._length_bounded_loops; Facts.loop_edges leaves their back edges out).
    bounded_loops: frozenset[int] = frozenset()
    # Conditional jumps that compare two pointers on every path (Facts.pointer_compares).
    pointer_compares: frozenset[int] = frozenset()


@dataclass
class ProgramSpec:
    """The program type's rules as the verifier needs them."""
    ctx_field: Callable[[int, int, bool], Reg | None] | None  # None: raw (r1 = memory, r2 = length)
    packet_writable: bool = True
    return_range: tuple[int, int] | None = None
    widen_loops: bool = False  # loops are widened, not walked (verifier/widen.py)
    # Widened loops must be shown to end (verifier/termination.py), else Unproven is raised. Every
    # scalar is then compared as precise, which that proof relies on, and precision is not tracked.
    prove_termination: bool = False
    # The functions whose address the program takes (function tokens): a callx through a number
    # loaded from memory (a function pointer in global data) may reach any of them, and the JIT
    # refuses any other value at run time (BAD_CALLX).
    callx_targets: tuple[int, ...] = ()
    kernel_type: str = ""  # enum bpf_prog_type without its prefix ("" for raw programs)
    btf: Any = None  # the program's BTF (runtime.btf.BTF): bpf_obj_new's types (verifier/kptrs.py)


class Verifier:
    def __init__(self, insns: Sequence[Insn], facts: Facts, spec: ProgramSpec, helpers: HelperRegistry,
                 pseudo: PseudoResolver, log_level: int = 1):
        self.insns = insns
        self.facts = facts
        self.spec = spec
        self.helpers = helpers
        self.pseudo = pseudo
        self.log = VerifierLog(log_level)
        self.stats = Stats()
        self.memory = MemoryChecker(spec.ctx_field or (lambda off, size, write: None), spec.packet_writable,
                                    self.new_id)
        self.liveness = Liveness(insns, facts)
        self.checkpoints: dict[int, list[Checkpoint]] = {}
        # Of those, by insn: the ones that may cover a new state (explored to the end, or widened),
        # oldest first; and how many others are still being explored (a path back to one loops).
        # A loop walked trip by trip keeps hundreds of states at its head, all still being explored.
        self.candidates: dict[int, list[Checkpoint]] = {}
        self.exploring: dict[int, int] = {}
        # Where an endless loop is looked for at an insn that kept many states: those kept there
        # (but widened ones) by signature (hashing a signature costs more than comparing a few).
        self.by_signature: dict[int, dict[tuple, list[Checkpoint]]] = {}
        self.states_kept = 0  # checkpoints alive now (peak_states is its maximum)
        self.pending: list[tuple[int, int, State]] = []  # (from, to, state) saved branches
        self.pointer_kinds: dict[int, RegType] = {}  # memory insn -> the pointer type it uses
        self.checked_accesses: set[int] = set()  # memory insns that may use raw memory (Verdict)
        self.pointer_moves: dict[int, int] = {}  # Verdict.pointer_moves
        self.pointer_compares: dict[int, bool] = {}  # jump -> both operands pointers on every path so far
        self.callx_sites: dict[int, set[int]] = {}  # Verdict.callx_sites
        self.visited: set[int] = set()  # instructions some path reached (the others are dead)
        # Per-instruction facts the walk asks at every visit, computed once.
        self.frame_pointer_writers = frozenset(i for i, insn in enumerate(insns) if writes_frame_pointer(insn))
        self.jump_insns = frozenset(i for i, insn in enumerate(insns) if insn.is_jump)
        # 64-bit ADD/SUB, where a pointer may move (pointer_moves); of a register: by a scalar that
        # must be precise.
        self.add_sub64 = frozenset(i for i, insn in enumerate(insns)
                                   if insn.cls == isa.ALU64 and insn.op in (isa.ADD, isa.SUB))
        self.register_moves = frozenset(i for i, insn in enumerate(insns) if insn.opcode in _REGISTER_MOVES)
        self.helper_args_proven = True
        self.ids = 0
        self.current_index = 0
        self.jumps_processed = 0
        self.last_kept = (0, 0)  # (insns, jumps) processed when a state was last kept
        self.widened_heads: set[int] = set()  # loop heads a widened state was kept at
        self.thresholds = Thresholds.of(insns) if spec.widen_loops else None
        self.loop_heads = loop_heads(facts.successors, facts.function_starts) if spec.widen_loops else frozenset()
        # Where a path may come back (back-edge targets): states are always kept there, so that
        # an endless loop is seen and a loop can be widened from its first trip.
        self.back_targets = self.loop_heads or loop_heads(facts.successors, facts.function_starts)
        self.track_precision = not spec.prove_termination
        self.precision = precision.Tracker(insns)
        # A raw program's widened loops are not proven to end: each loop's ways out, and the loops
        # some path left by one. The widened state holds every state the loop's head can see, so
        # a loop no path leaves never ends once entered: rejected, as the kernel rejects it.
        raw_widening = self.raw_widening = spec.widen_loops and not spec.prove_termination
        # Loop head -> what the arrivals there have shown of the loop's end (verifier/termination.py;
        # for a raw program, whether a counter bounded by its length ends it: Verdict.bounded_loops).
        loops = termination.loops(insns, facts.successors, self.loop_heads) if spec.widen_loops else {}
        self.loop_proofs = {head: termination.LoopProof(loop) for head, loop in loops.items()}
        self.loop_exits = termination.exits(insns, facts.successors, self.loop_heads) if raw_widening else {}
        self.exited_loops: set[int] = set()

    def new_id(self) -> int:
        self.ids += 1
        return self.ids

    # --- the loop --------------------------------------------------------------------------------
    def run(self) -> Verdict:
        started = time.perf_counter()
        self._check_reachable()
        self.pending.append((-1, 0, self._initial_state()))
        while self.pending:
            source, index, state = self.pending.pop()
            if source >= 0 and self.log.level:
                self.log.resume(source, index, state.text())
            self._walk(source, index, state)
        self.stats.seconds = time.perf_counter() - started
        self.stats.loops_widened = len(self.widened_heads)
        if self.spec.prove_termination:
            self._check_termination()
        elif self.spec.widen_loops:
            for head in sorted(self.widened_heads - self.exited_loops):
                raise self._error(head, f"infinite loop detected at insn {head}")
        return Verdict(self.stats, self.log.text(), frozenset(self.checked_accesses), self.helper_args_proven,
                       frozenset(self.memory.uninit_reads), frozenset(self.facts.successors) - self.visited,
                       dict(self.pointer_moves),
                       ctx_accesses=frozenset(i for i, kind in self.pointer_kinds.items()
                                              if kind == RegType.PTR_TO_CTX),
                       callx_sites={index: frozenset(starts) for index, starts in self.callx_sites.items()},
                       bounded_loops=self._length_bounded_loops() if self.raw_widening else frozenset(),
                       pointer_compares=self._pointer_compares())

    def _pointer_compares(self) -> frozenset[int]:
        """Verdict.pointer_compares: the jumps outside loops that compared two pointers on every
        path. (In a loop, LLVM's trip count needs the numbers: a pointer tested against data_end,
        a pointer of another base, leaves the count unknown, and checksum's loop was no longer
        vectorized.)"""
        both = [index for index, pointers in self.pointer_compares.items() if pointers]
        if not both:
            return frozenset()
        return frozenset(both) - in_loops(self.facts.successors, self.facts.function_starts)

    def _length_bounded_loops(self) -> frozenset[int]:
        """A raw program's loops a counter bounded by its length ends (LoopProof.length_bounded),
        in its main function, holding no other loop and inside none: the run need not count their
        trips, which are at most a few times the length, once per run."""
        main = self.facts.functions[0]
        bodies = {head: proof.loop.body for head, proof in self.loop_proofs.items()}
        return frozenset(head for head, proof in self.loop_proofs.items()
                         if proof.length_bounded and main.start <= head < main.end
                         and not any(other != head and (other in bodies[head] or head in body)
                                     for other, body in bodies.items()))

    def _check_reachable(self) -> None:
        """Every instruction of a function must be reachable from its start (the kernel's
        check_cfg; the loader may link in functions only global data points to, each a root)."""
        seen, todo = set(), sorted(self.facts.function_starts)
        while todo:
            index = todo.pop()
            if index in seen or index not in self.facts.successors:
                continue
            seen.add(index)
            todo.extend(self.facts.successors[index])
        missing = sorted(set(self.facts.successors) - seen)
        if missing:
            raise self._error(missing[0], f"unreachable insn {missing[0]}")

    def _initial_state(self) -> State:
        regs = [NOT_INIT] * 11
        if self.spec.ctx_field is None:  # raw: memory whose size only the run knows, and its length
            regs[1] = Reg(RegType.PTR_TO_MEM, Scalar.const(0), mem_size=-1)
            regs[2] = scalar().evolve(id=RAW_LENGTH_ID, length_bound=length.LENGTH)
        else:
            regs[1] = Reg(RegType.PTR_TO_CTX, Scalar.const(0))
        regs[isa.FRAME_POINTER] = Reg(RegType.PTR_TO_STACK, Scalar.const(0))
        return State([Frame(regs, {}, 0, 0)])

    def _walk(self, source: int, index: int, state: State) -> None:
        """Follow one path, from instruction `source` to `index` (-1: it starts there), until it
        ends (exit, prune, or an error). The loop runs once per instruction processed: what it
        asks of every instruction is looked up in sets built once (__init__)."""
        block_starts, insns, stats, visited = self.facts.block_starts, self.insns, self.stats, self.visited
        tracking, tracker = self.track_precision, self.precision
        conditional_jumps, register_moves = tracker.conditional_jumps, self.register_moves
        while True:
            if index in block_starts and self._pruned(source, index, state):
                self._path_done(state)
                return
            stats.insns_processed += 1
            if stats.insns_processed > INSN_LIMIT:
                raise self._error(index, f"{TOO_LARGE} Processed {INSN_LIMIT + 1} insn")
            self.current_index = index
            insn = insns[index]
            visited.add(index)
            try:
                if index in self.frame_pointer_writers:
                    raise Rejected("frame pointer is read only")
                if tracking:
                    record = tracker.step(state, index)
                    if index in register_moves:
                        self._demand_operands(state, insn)
                following = self._step(state, insn, index)
                if following and tracking and index in conditional_jumps:
                    self._demand_jump(following[0][1], insn, decided=len(following) == 1)
            except Rejected as rejected:
                self.log.insn(index, insn_text(insn, self._imm64_name))
                raise self._error(index, rejected.message) from None
            if self.log.level:
                self.log.insn(index, insn_text(insn, self._imm64_name), state.text)
            if index in self.jump_insns:
                self.jumps_processed += 1
            if self.loop_exits:
                for target, head in self.loop_exits.get(index, ()):
                    if target is None or any(target == following_index for following_index, _ in following):
                        self.exited_loops.add(head)
            if not following:
                self._path_done(state)
                return
            if tracking:
                for _, successor in following:
                    successor.history.append(record)
            source = index
            index, state = following[0]
            if len(following) > 1:
                try:
                    for target, other in reversed(following[1:]):
                        self._save_branch(target, other)
                except Rejected as rejected:
                    raise self._error(self.current_index, rejected.message) from None

    def _step(self, state: State, insn: Insn, index: int) -> list[tuple[int, State]]:
        cls = insn.cls
        if cls == isa.ALU64 or cls == isa.ALU:
            extension = zero_extension(self.insns, index, self.facts.block_starts, state) \
                if self.spec.widen_loops and insn.opcode == _SHIFT_LEFT else None
            if extension is not None:  # the pair, as the one 32-bit move it is
                check_alu(state, extension, self.new_id)
                self.visited.add(index + 1)
                return [(index + 2, state)]
            if index in self.add_sub64:
                self._note_pointer_move(state, insn, index)
            check_alu(state, insn, self.new_id)
        elif cls == isa.LDX:
            self._note_pointer(state, index, state.regs[insn.src], insn)
            self.memory.load(state, insn)
        elif cls in (isa.ST, isa.STX):
            self._note_pointer(state, index, state.regs[insn.dst if not (cls == isa.STX and insn.mode == isa.ATOMIC
                                                                    and insn.imm == isa.LOAD_ACQ) else insn.src], insn)
            if cls == isa.STX and insn.mode == isa.ATOMIC:
                self.memory.atomic(state, insn)
            else:
                self.memory.store(state, insn)
        elif insn.is_lddw:
            state.regs[insn.dst] = self._ld_imm64(insn, index)
            return [(index + 2, state)]
        elif cls == isa.LD:
            return legacy_packet.check(self, state, insn, index)
        else:
            return self._jump(state, insn, index)
        return [(index + 1, state)]

    def _jump(self, state: State, insn: Insn, index: int) -> list[tuple[int, State]]:
        opcode = insn.opcode
        if opcode == isa.EXIT_OP:
            after = calls.exit_insn(self, state, index)
            return [] if after is None else [(after, state)]
        if opcode == isa.CALL_OP:
            if insn.src == isa.CALL_LOCAL:
                return [(calls.local_call(self, state, insn.call_target(index), index), state)]
            if insn.src == isa.CALL_KFUNC:
                raise Rejected("calling kernel function is not supported without CONFIG_DEBUG_INFO_BTF")
            calls.helper_call(self, state, insn, index)
            return [(index + 1, state)]
        if opcode == isa.CALLX_OP:
            return calls.callx(self, state, insn, index)
        if opcode in (isa.JA_OP, isa.GOTOL_OP):
            if insn.src:  # a static branch: both ways, whatever the key says now
                return [(index + 1, state), (insn.jump_target(index), state.copy())]
            return [(insn.jump_target(index), state)]
        if opcode == isa.GOTOX_OP:
            return jumps.indirect_jump(state, insn, self.facts.successors[index])
        if opcode == isa.MAY_GOTO_OP:
            return [(index + 1, state), (insn.jump_target(index), state.copy())]
        if insn.source == isa.X and insn.cls == isa.JMP:
            both = _has_twin(state.regs[insn.dst]) and _has_twin(state.regs[insn.src])
            self.pointer_compares[index] = self.pointer_compares.get(index, True) and both
        return jumps.branch(state, insn, index, fit_packet=self.spec.widen_loops)

    # --- precision ------------------------------------------------------------------------------
    def demand_precise(self, state: State, regnos: list[int]) -> None:
        """The bounds of these registers of the current frame decide something now."""
        if not self.track_precision:
            return
        depth = len(state.frames) - 1
        self.precision.demand(state, [(depth, "r", regno) for regno in regnos])

    def _demand_operands(self, state: State, insn: Insn) -> None:
        """Pointer arithmetic (a 64-bit ADD/SUB of a register: register_moves): the scalar added
        to (or subtracted from) a pointer must be precise."""
        dst, src = state.regs[insn.dst], state.regs[insn.src]
        if dst.is_pointer and src.is_scalar:
            self.demand_precise(state, [insn.src])
        elif dst.is_scalar and src.is_pointer:
            self.demand_precise(state, [insn.dst])

    def _demand_jump(self, state: State, insn: Insn, decided: bool) -> None:
        """A conditional jump whose outcome the bounds decided, or that compares a pointer with
        a scalar (a NULL check): the scalars must stay that precise."""
        regs = [insn.dst] + ([insn.src] if insn.source == isa.X else [])
        if decided or any(state.regs[regno].is_pointer for regno in regs):
            self.demand_precise(state, [regno for regno in regs if state.regs[regno].is_scalar])

    def _save_branch(self, target: int, state: State) -> None:
        """Keep a path to explore later (the kernel's push_stack, with its limit)."""
        self._fork(state)
        self.pending.append((self.current_index, target, state))
        if len(self.pending) > JUMP_SEQUENCE_LIMIT:
            raise Rejected(f"The sequence of {len(self.pending)} jumps is too complex.")

    def _ld_imm64(self, insn: Insn, index: int) -> Reg:
        if insn.src == 0:
            return const(insn.imm64)
        target = self.pseudo(insn, index)
        kind = target[0]
        if kind == "map":
            return Reg(RegType.CONST_PTR_TO_MAP, Scalar.const(0), map=target[1])
        if kind == "map_value":
            info, offset = target[1], target[2]
            return Reg(RegType.PTR_TO_MAP_VALUE, Scalar.const(0), off=offset, map=info)
        if kind == "func":
            return Reg(RegType.PTR_TO_FUNC, Scalar.const(0), subprog=target[1])
        raise Rejected(f"unsupported pseudo source {insn.src} of ld_imm64")

    def _imm64_name(self, insn: Insn) -> str:
        try:
            target = self.pseudo(insn, self.current_index)
        except (Rejected, BPFError):  # the log must not fail where the check itself would report
            return f"{insn.imm64:#x}"
        if target[0] == "map":
            return f"map[id:{target[1].handle}]"
        if target[0] == "map_value":
            return f"map[id:{target[1].handle}][0]+{target[2]}"
        return f"{insn.imm64:#x}"

    def _note_pointer_move(self, state: State, insn: Insn, index: int) -> None:
        """Record which register a 64-bit ADD/SUB (add_sub64) moves a pointer in (-1 when paths
        differ), so that the JIT can derive the result from that pointer (Facts.pointer_moves)."""
        regs = state.regs
        if regs[insn.dst].is_pointer:
            moved = insn.dst
        elif insn.source == isa.X and insn.op == isa.ADD and regs[insn.src].is_pointer:
            moved = insn.src
        else:
            return
        if self.pointer_moves.setdefault(index, moved) != moved:
            self.pointer_moves[index] = -1

    def _note_pointer(self, state: State, index: int, reg: Reg, insn: Insn) -> None:
        """One memory instruction must use the context on all paths or on none (the rewrite of
        its offset depends on it); one that may use raw memory is checked at run time, unless
        on this path it lies inside the bytes a test of the length proved (Reg.range), or a
        counter the pointer moves in step with bounds it (whose bounds must then stay precise)."""
        if reg.is_raw and not _inside_proven_raw(reg, insn):
            counter = _counter_bounding(state.regs, reg, insn)
            if counter is None:
                self.checked_accesses.add(index)
            else:
                self.demand_precise(state, [counter])
        seen = self.pointer_kinds.setdefault(index, reg.type)
        if (seen == RegType.PTR_TO_CTX) != (reg.type == RegType.PTR_TO_CTX):
            raise Rejected("same insn cannot be used with different pointers")

    # --- callbacks ----------------------------------------------------------------------------
    def verify_callback(self, state: State, start: int, caller_regs: list[Reg], helper: str, index: int) -> None:
        """Explore the callback a helper will call, as a path of its own; the caller continues
        with every stack slot the callback could write through its ctx forgotten."""
        args = _callback_args(helper, caller_regs)
        path = state.copy()
        calls.push_frame(path, start, args, index, callback_ret=(0, 1))
        self._save_branch(start, path)
        ctx = caller_regs[3]
        if ctx.type == RegType.PTR_TO_STACK:
            frame = state.frames[ctx.frameno]
            for number in list(frame.stack):
                frame.stack[number] = Slot((SlotKind.MISC,) * SLOT_SIZE)

    # --- pruning ------------------------------------------------------------------------------
    def _pruned(self, source: int, index: int, state: State) -> bool:
        """Whether a kept state covers this one; else keep this one (as the kernel's
        is_state_visited: not too often inside a loop, and forgetting states that rarely help)."""
        kept = self.checkpoints.setdefault(index, [])
        signature = None  # computed when first needed: most arrivals neither loop nor keep
        # A state that came from a widened one holds more than the path can reach: its exact
        # repeat is the widened loop's fixpoint (a counter widened to [1, max] comes back as
        # [1, max] after `r -= 1; if r > 0`), not a proof that the program never leaves the loop.
        from_widened = state.parent is not None and state.parent.below_widened
        if index in self.loop_proofs:
            proof = self.loop_proofs[index]
            proof.arrive(state, source)
            if self.raw_widening and source in proof.loop.body:
                counters = proof.counter_registers()
                self.demand_precise(state, [regno for regno in counters if state.regs[regno].is_scalar])
        # Whether this path came back to a state still being explored; only states with its
        # signature may be equal to it.
        looping = self.exploring.get(index, 0) > 0
        if looping and not from_widened:
            signature = self._signature(index, state)
            indexed = self.by_signature.get(index)
            for checkpoint in kept if indexed is None else indexed.get(signature, ()):
                if checkpoint.branches and not checkpoint.widened and checkpoint.signature == signature \
                        and equal(checkpoint.state, state, self.liveness, index) and not self._may_goto_loop(index):
                    raise self._error(index, f"infinite loop detected at insn {index}")
        missed = False
        for checkpoint in self.candidates.get(index, ()):
            precise = checkpoint.precise_places() if self.track_precision else None
            if covers(checkpoint.state, state, self.liveness, index, precise, widened=checkpoint.widened):
                checkpoint.hits += 1
                loop = checkpoint.unfinished_loop()
                if self.track_precision:
                    self.precision.inherit(state, checkpoint)
                    if loop is not None:
                        self.precision.backedges.add(loop, state, checkpoint)
                if loop is not None:
                    _enter_loop(state, loop)
                return True
            if not checkpoint.branches:
                checkpoint.misses += 1
                missed = True
        if missed:
            self._forget_useless(index, kept)
        # Raw programs keep every state at a loop head, exactly (an exact repeat must be seen as
        # the endless loop it is) and then, once the loop keeps coming back, widened.
        at_widened_head = looping and index in self.loop_heads
        insns, jumps = self.stats.insns_processed - self.last_kept[0], self.jumps_processed - self.last_kept[1]
        # The counts are of every path since any state was kept; a path that went as far itself
        # without keeping one (a loop whose exits keep a state on every trip) keeps one now, or
        # each precision walk along it (verifier/precision.py) would be longer than the last.
        overdue = len(state.history) >= LOOP_KEEP_INSNS
        if not at_widened_head and looping and not from_widened and not overdue and insns < LOOP_KEEP_INSNS \
                and jumps < LOOP_KEEP_JUMPS:
            return False  # inside a loop, a state is kept only every so often
        if not overdue and index not in self.back_targets and (insns < KEEP_INSNS or jumps < KEEP_JUMPS):
            return False
        base = _ancestor_at(kept, state) if at_widened_head else None
        if base is not None and self.raw_widening:  # link what moved in step since (verifier/links.py)
            links.in_step(base.state, state, state, self.liveness.frame_live(state, len(state.frames) - 1, index),
                          self.new_id)
        trips, rounds = (base.trips + 1, base.rounds) if base else (0, 0)
        self._keep(index, state, signature or self._signature(index, state), trips=trips, rounds=rounds)
        if base is not None and trips > self._widen_after(index) and self._widen(index, state, base, rounds + 1):
            self._keep(index, state, self._signature(index, state), widened=True, trips=trips, rounds=rounds + 1)
        return False

    def _widen_after(self, index: int) -> int:
        """How many trips of the loop at index are walked exactly before it is widened: a few, so
        that an endless loop's exact repeat is seen; one, for a raw program's loop that a counter
        rises on every trip (it never repeats, and its counter is precise: verifier/termination.py
        LoopProof.counter_registers, whose walked trips would each be explored in full)."""
        proof = self.loop_proofs.get(index)
        return 1 if self.raw_widening and proof is not None and proof.length_counters else WIDEN_AFTER

    def _forget_useless(self, index: int, kept: list[Checkpoint]) -> None:
        """Drop the finished states at index that missed far more often than they covered."""
        candidates = self.candidates[index]
        useless = {id(c): c for c in candidates if not c.branches and c.misses > 3 * c.hits + 3}
        if not useless:
            return
        kept[:] = [c for c in kept if id(c) not in useless]
        candidates[:] = [c for c in candidates if id(c) not in useless]
        indexed = self.by_signature.get(index)
        for checkpoint in useless.values():
            if indexed is not None and not checkpoint.widened:
                alike = indexed[checkpoint.signature]
                alike[:] = [c for c in alike if c is not checkpoint]
        self.states_kept -= len(useless)

    def _keep(self, index: int, state: State, signature: tuple, widened: bool = False, trips: int = 0,
              rounds: int = 0) -> None:
        """Keep a copy of `state` at `index`; the path goes on from it."""
        kept = self.checkpoints[index]
        self.last_kept = (self.stats.insns_processed, self.jumps_processed)
        parent = state.parent
        depth = parent.depth + 1 if parent else 0
        checkpoint = Checkpoint(state.copy(), 1, parent, signature=signature, widened=widened,
                                history=state.history, depth=depth,
                                below_widened=widened or (parent is not None and parent.below_widened),
                                trips=trips, rounds=rounds, index=index, serial=self.stats.states_total)
        checkpoint.state.parent = None
        checkpoint.state.history = []
        kept.append(checkpoint)
        if widened:  # it covers what it holds at once
            self.candidates.setdefault(index, []).append(checkpoint)
        else:
            self.exploring[index] = self.exploring.get(index, 0) + 1
            indexed = self.by_signature.get(index)
            if indexed is None and len(kept) > _SCANNED_STATES:
                indexed = self.by_signature[index] = {}
                for other in kept[:-1]:
                    if not other.widened:
                        indexed.setdefault(other.signature, []).append(other)
            if indexed is not None:
                indexed.setdefault(signature, []).append(checkpoint)
        self.stats.states_total += 1
        self.states_kept += 1
        self.stats.peak_states = max(self.stats.peak_states, self.states_kept)
        self.stats.max_states_per_insn = max(self.stats.max_states_per_insn, len(kept))
        state.parent = checkpoint
        state.history = []

    def _widen(self, index: int, state: State, base: Checkpoint, rounds: int) -> bool:
        """Once a loop keeps coming back to its head, make `state` one that holds this trip and
        `base`, the state kept there on the trip before (verifier/widen.py); whether it did.
        rounds: the how-manyth widening of this entry into the loop."""
        if self.spec.prove_termination and self.loop_proofs[index].hopeless:
            raise termination.Unproven(f"the loop at insn {index} has no bounded counter")
        joined = widen(base.state, state, self.liveness, index, self.thresholds, self.new_id,
                       settling=rounds > THRESHOLD_ROUNDS)
        if not joined:
            return False
        for frame, wide in zip(state.frames, joined.frames):
            frame.regs, frame.stack = wide.regs, wide.stack
        self.widened_heads.add(index)
        return True

    def _check_termination(self) -> None:
        """Each widened loop has a bounded counter or an equality exit, and few enough trips that
        the kernel's walk of it would stay inside the kernel's limit (else the walk decides, as
        the kernel would)."""
        for head in self.widened_heads:
            proof = self.loop_proofs[head]
            trips = proof.most_trips()
            if trips is None:
                raise termination.Unproven(f"the loop at insn {head} has no bounded counter")
            if trips * proof.loop.shortest_trip > INSN_LIMIT:
                raise termination.Unproven(f"the loop at insn {head} may make {trips} trips")

    def _signature(self, index: int, state: State) -> tuple:
        """The live registers of the current frame without their ids: equal states share it."""
        live = self.liveness.live_in(index)
        return (len(state.frames),) + tuple(
            (reg.type, reg.off, reg.value, reg.map) for number, reg in enumerate(state.regs) if number in live)

    def _may_goto_loop(self, index: int) -> bool:
        return self.insns[index].opcode == isa.MAY_GOTO_OP

    def _fork(self, state: State) -> None:
        """A new path from the current one: its checkpoints have one more path to finish."""
        if state.parent is not None:
            state.parent.branches += 1

    def _path_done(self, state: State) -> None:
        checkpoint = state.parent
        while checkpoint is not None:
            checkpoint.branches -= 1
            if checkpoint.branches:
                break
            if not checkpoint.widened:  # explored to the end: it may cover new states now
                self.exploring[checkpoint.index] -= 1
                candidates = self.candidates.setdefault(checkpoint.index, [])
                candidates.insert(bisect.bisect(candidates, checkpoint.serial, key=_serial), checkpoint)
            self.precision.backedges.finished(checkpoint)
            checkpoint = checkpoint.parent

    def _error(self, index: int, message: str) -> VerifierError:
        return error(index, message, self.log)


def _serial(checkpoint: Checkpoint) -> int:
    return checkpoint.serial


def _ancestor_at(kept: list[Checkpoint], state: State) -> Checkpoint | None:
    """The latest of the states kept here that this path comes from: the previous trip of the
    loop (a state kept here by another path is not one, and is never widened with)."""
    here = {id(checkpoint) for checkpoint in kept}
    checkpoint = state.parent
    while checkpoint is not None:
        if id(checkpoint) in here:
            return checkpoint
        checkpoint = checkpoint.parent
    return None


def _enter_loop(state: State, head: Checkpoint) -> None:
    """The states kept on this path below `head` are inside its loop (Checkpoint.loop_entry)."""
    checkpoint = state.parent
    while checkpoint is not None and checkpoint.depth > head.depth:
        if checkpoint.loop_entry is None or checkpoint.loop_entry.depth > head.depth:
            checkpoint.loop_entry = head
        checkpoint = checkpoint.parent


def _callback_args(helper: str, caller_regs: list[Reg]) -> list[Reg]:
    """What a helper passes its callback (set_loop_callback_state and friends)."""
    if helper == "for_each_map_elem":
        info: MapInfo = caller_regs[1].map
        return [caller_regs[1], Reg(RegType.PTR_TO_MAP_KEY, Scalar.const(0), map=info),
                Reg(RegType.PTR_TO_MAP_VALUE, Scalar.const(0), map=info), caller_regs[3]]
    return [scalar(), caller_regs[3]]


def _has_twin(reg: Reg) -> bool:
    """Whether the JIT keeps the register's value as a pointer too (jit/lower.py typed_pointers):
    every pointer but a function's, which the program's ld_imm64 makes a number (a function
    token) with no pointer beside it."""
    return reg.is_pointer and reg.type is not RegType.PTR_TO_FUNC


def _counter_bounding(regs: list[Reg], reg: Reg, insn: Insn) -> int | None:
    """The register whose value bounds the access of insn through reg (a raw program's memory)
    inside the memory, by a link between them (verifier/links.py), if any."""
    if reg.link is None:
        return None
    start, size = insn.off, isa.SIZE_BYTES[insn.size]
    for number, scale, shift in links.access_bound(reg.link, regs):
        counter = regs[number]
        if length.inside_scaled(counter.length_bound, counter.value, scale, shift, start, size, reg.range):
            return number
    return None


def _inside_proven_raw(reg: Reg, insn: Insn) -> bool:
    """Whether the access of insn through reg (a raw program's memory) stays within the bytes a
    test of the length proved on this path, [0, reg.range) from the memory's start, or within
    the length its offset's bound is relative to (verifier/length.py)."""
    start, size = reg.off + insn.off, isa.SIZE_BYTES[insn.size]
    if reg.value.smin >= 0 and start + reg.value.smin >= 0 and start + reg.value.umax + size <= reg.range:
        return True
    return length.inside(reg.length_bound, reg.value, start, size, reg.range)
