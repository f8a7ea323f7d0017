"""Lower a checked BPF program to LLVM IR text, one method per instruction class.

Shape of the generated module:

* one LLVM function per BPF function, ``i64 @bpf_f<start>(ptr %env, i64 r1..r5)``, so that LLVM
  can inline calls and keep r6-r9 in machine registers instead of a software call stack;
* BPF registers r0-r9 are ``alloca i64`` slots promoted to SSA values by mem2reg; r10 is never a
  slot: ``[r10 + off]`` becomes a ``getelementptr`` into the frame's ``[512 x i8]`` alloca, so the
  stack stays visible to LLVM (no ``ptrtoint`` escape) unless the program copies r10;
* ``%env`` points at the run's :class:`~bpfjit.runtime.status.RunEnv`; it reports unwinding,
  failed helpers and bad callx targets without exceptions crossing native frames;
* division and modulo use ``select`` guards (LLVM's udiv/sdiv by 0 and INT_MIN/-1 are UB),
  shift counts are masked, atomics are ``atomicrmw``/``cmpxchg`` ``seq_cst``;
* static-branch JAs (goto_or_nop / nop_or_goto) become patchable 5-byte sites (jit/sites.py);
* the program's entry is ``@bpf_f0`` itself, called with r1 = ctx, r2 = length, r3-r5 = 0 (no
  wrapper: an exported wrapper cannot inline a large main function and cost an indirect jump
  per run); the repeat loop of test_run is not part of the module but one shared function
  (jit/engine.py), since a loop costs every compile several milliseconds of loop passes.

Memory accesses are as safe as the facts say (verifier/facts.py). A verified program's accesses
are emitted unchecked, except those through a raw program's memory, whose size only the run
knows: each of those is compared with ``[RunEnv.mem_start, + mem_size)`` first. A program that
was not verified runs *sandboxed*: every access is checked by ``@bpfjit_access_ok`` against the
live BPF frames (each function registers its stack alloca in ``RunEnv.frames`` on entry) and the
run's regions (``RunEnv.regions``: maps, globals, packet, ctx), map lookups are not inlined and
byte copies are not fused; a refused access ends the run with BAD_READ / BAD_WRITE and its
address, as the interpreter's check does.

A run with a budget (max_steps, timeout) uses a *sandboxed* variant, lowered from the same
program with ``sandboxed=True``: every straight-line segment (a block, or the part of one after a
call) adds its instruction count to ``RunEnv.steps`` on entry and stops with STEP_BUDGET once the
count passes ``RunEnv.max_steps``, naming the very instruction the interpreter would have stopped
at; loop heads and function entries also stop with TIME_BUDGET once ``RunEnv.stop`` is set.
Compare trees are not folded into switches there, since the instructions a tree runs depend on
the path. The normal variant has none of this.

Raw programs count their loop trips in every variant (Facts.loop_edges and trip_limit): a
function with loop edges keeps the trips left in a register, and a counted conditional jump
folds the count into its own test, so that the loop keeps one exit (_FunctionLowering.loop_latch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from bpfjit import isa
from bpfjit.disasm import insn_text
from bpfjit.errors import BPFError, JITError
from bpfjit.isa import Insn, s64
from bpfjit.runtime.environment import ArrayLayout, Environment
from bpfjit.runtime.hash_index import MULTIPLIER as HASH_MULTIPLIER, NULLS, key_chunks
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import Map, ProgArray, map_from_handle
from bpfjit.runtime.packet_loads import is_legacy_load
from bpfjit.runtime.status import (FIELD_ACCESS_SIZE, FIELD_CPU, FIELD_DEPTH, FIELD_FRAME_COUNT, FIELD_FRAMES,
                                   FIELD_INSN, FIELD_MAX_STEPS, FIELD_MEM_SIZE, FIELD_MEM_START, FIELD_REDIRECT_KIND,
                                   FIELD_REGION_COUNT, FIELD_REGIONS, FIELD_STATUS, FIELD_STEPS, FIELD_STOP,
                                   FIELD_TAIL_CALLS, FIELD_TRIPS, FIELD_VALUE, INSN_PENDING, MAX_CALL_FRAMES,
                                   MAX_TAIL_CALLS, BPF_MAX_LOOPS, MAY_GOTO_BUDGET, SANDBOX_FRAMES, Status)
from bpfjit.runtime.run_context import RECORD_CLEARED, RECORD_IFINDEX, RECORD_MAP
from bpfjit.runtime.stdhelpers import (BPF_F_BROADCAST, E2BIG, EINVAL, ENOENT, FOR_EACH_MAP_ELEM, LOOP,
                                       MAP_LOOKUP_ELEM, REDIRECT, REDIRECT_FALLBACK_MASK, REDIRECT_MAP,
                                       REDIRECT_MAP_FLAGS, TAIL_CALL, XDP_ABORTED, XDP_REDIRECT, redirect_rule,
                                       for_each_map_elem as standard_for_each, loop as standard_loop,
                                       redirect as standard_redirect, redirect_map as standard_redirect_map,
                                       tail_call as standard_tail_call)
from bpfjit.verifier.facts import SLOT_SIZE, Facts, Function

from .jump_tables import lower_gotox
from .packet_loads import lower_legacy_load
from .sites import MODULE_PROLOGUE, site_asm
from .copies import Copy, find_copies
from .switches import Fold, Switch, find_switches

INSN_COMMENT = "; insn "  # + the slot: the comment before each instruction's IR

_INT = {8: "i8", 16: "i16", 32: "i32", 64: "i64"}
_BINOPS = {isa.ADD: "add", isa.SUB: "sub", isa.MUL: "mul", isa.OR: "or", isa.AND: "and", isa.XOR: "xor",
           isa.LSH: "shl", isa.RSH: "lshr", isa.ARSH: "ashr"}
_PREDICATES = {isa.JEQ: "eq", isa.JNE: "ne", isa.JGT: "ugt", isa.JGE: "uge", isa.JLT: "ult", isa.JLE: "ule",
               isa.JSGT: "sgt", isa.JSGE: "sge", isa.JSLT: "slt", isa.JSLE: "sle"}
_LIKELY = 1 << 20  # branch weight of an access check's pass (a failure ends the run: keep it cold)
_RMW = {isa.ADD: "add", isa.OR: "or", isa.AND: "and", isa.XOR: "xor"}


@dataclass
class Symbols:
    """The process-specific addresses a module uses, named instead of written as numbers.

    Map handles, map values and global data live at addresses that change from process to
    process, and helpers are ctypes callbacks. The IR names each one (``@bpfjit_aN`` for an
    address, ``@bpfjit_h<id>`` for a helper) and the engine binds the names when it links the
    machine code, so the same program lowers to the same IR, and compiles to the same object
    code, in every process: that is what lets the object code be cached (jit/cache.py).

    An address inside a memory region (a map's values, global data) is named as its region's
    symbol plus an offset, and one symbol stands for each stretch of overlapping regions: LLVM
    takes two distinct globals never to share a byte, so two names for one region would let it
    reorder a store through one past a load through the other. Regions that merely touch keep
    their own names: whether two allocations touch differs from process to process, and the IR
    (the cache key) must not; a pointer moved past its region keeps its region's name anyway
    (_FunctionLowering.anchors).
    """
    # [start, end) of each stretch of overlapping regions, sorted.
    spans: list[tuple[int, int]] = field(default_factory=list)
    addresses: dict[int, str] = field(default_factory=dict)
    helpers: set[int] = field(default_factory=set)

    @classmethod
    def over(cls, regions: Sequence[tuple[int, int]]) -> "Symbols":
        """Symbols for a program whose memory regions are these (start, size) pairs."""
        spans: list[tuple[int, int]] = []
        for start, size in sorted(regions):
            end = start + max(size, 1)
            if spans and start < spans[-1][1]:
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
        return cls(spans)

    def anchor(self, value: int) -> int:
        """The address `value` is named from: the start of the stretch of regions it lies in,
        else itself (a map handle)."""
        for start, end in self.spans:
            if start <= value < end:
                return start
        return value & isa.MASK64

    def pointer(self, value: int, anchor: int | None = None) -> str:
        """A ptr constant for `value`, an address known only in this process, named from
        `anchor` (by default the start of its region)."""
        anchor = self.anchor(value) if anchor is None else anchor
        name = self.addresses.setdefault(anchor, f"bpfjit_a{len(self.addresses)}")
        offset = s64((value - anchor) & isa.MASK64)
        return f"@{name}" if offset == 0 else f"getelementptr (i8, ptr @{name}, i64 {offset})"

    def address(self, value: int, anchor: int | None = None) -> str:
        """The same as an i64 constant."""
        return f"ptrtoint (ptr {self.pointer(value, anchor)} to i64)"

    def helper(self, helper_id: int) -> str:
        self.helpers.add(helper_id)
        return f"@bpfjit_h{helper_id}"

    def declarations(self) -> list[str]:
        return ([f"@{name} = external global i8" for name in self.addresses.values()] +
                [f"declare i64 @bpfjit_h{h}(i64, i64, i64, i64, i64)" for h in sorted(self.helpers)])

    def bindings(self, helper_address: Callable[[int], int]) -> dict[str, int]:
        """Every name the module uses -> its address in this process."""
        bound = {name: address for address, name in self.addresses.items()}
        bound.update({f"bpfjit_h{h}": helper_address(h) for h in self.helpers})
        return bound


def _const(value: int, bits: int) -> str:
    """An LLVM integer literal (LLVM prints them signed)."""
    return str(s64(value) if bits == 64 else isa.sign_extend(value, bits))


@dataclass
class _FunctionLowering:
    """Emits the body of one BPF function."""
    insns: Sequence[Insn]
    function: Function
    facts: Facts
    env: Environment
    symbols: Symbols
    may_stop: bool  # whether a call can leave a non-OK status that callers must propagate
    # Whether calls count frames at run time: needed once callx can reach BPF functions (function
    # tokens exist), since an indirect call chain can recurse where the static check cannot see.
    counts_depth: bool
    # Whether this is the budgeted variant: instructions counted, the stop flag polled.
    sandboxed: bool = False
    lines: list[str] = field(default_factory=list)
    counter: int = 0
    terminated: bool = False
    # Registers known to hold a constant since the start of the current block (ld_imm64 and
    # moves): lets map lookups be inlined and loads from frozen maps be folded.
    known: dict[int, int] = field(default_factory=dict)
    # The known registers whose value is a process-specific address (emitted through symbols),
    # with the address their ld_imm64 named it from (Symbols.anchor): a pointer moved past its
    # region keeps its region's name.
    anchors: dict[int, int] = field(default_factory=dict)
    # Module-level definitions the function needs (the constant tables of folded switches).
    module_globals: list[str] = field(default_factory=list)
    # Blocks that count a loop trip (Facts.loop_edges) on the way to a jump's target, named by
    # jumps already lowered and written once the current block ends: (label, the jump's slot,
    # its target).
    trip_blocks: list[tuple[str, int, int]] = field(default_factory=list)

    # --- small emitters ------------------------------------------------------------------------
    def tmp(self) -> str:
        self.counter += 1
        return f"%t{self.counter}"

    def emit(self, text: str) -> None:
        self.lines.append("  " + text)

    def value(self, text: str) -> str:
        """Emit `%tN = text` and return %tN (appended here, not through emit: the lowering's most
        frequent call, and a cache hit lowers again to find its key)."""
        name = self.tmp()
        self.lines.append(f"  {name} = {text}")
        return name

    def label(self, name: str) -> None:
        if not self.terminated:
            self.emit(f"br label %{name}")
        self.write_trip_blocks()
        self.lines.append(f"{name}:")
        self.terminated = False
        self.known.clear()

    def branch(self, target: str) -> None:
        self.emit(f"br label %{target}")
        self.terminated = True

    def reg(self, reg: int) -> str:
        """The current 64-bit value of a register."""
        if reg == isa.FRAME_POINTER:
            return self.value(f"ptrtoint ptr {self.stack_ptr(0)} to i64")
        return self.value(f"load i64, ptr %r{reg}")

    def set_reg(self, reg: int, value: str, pointer: str | None = None) -> None:
        """Set a register; `pointer`: a ptr to the same address, derived from the pointer the
        value was computed from (see typed_pointers), where the value may be a pointer."""
        self.lines.append(f"  store i64 {value}, ptr %r{reg}")
        if pointer is not None and self.typed_pointers:
            self.lines.append(f"  store ptr {pointer}, ptr %p{reg}")
        self.known.pop(reg, None)
        self.anchors.pop(reg, None)

    def set_address(self, reg: int, value: str) -> None:
        """Set a register to an i64 that may be a pointer not derived from another (a load, a
        call's result): its ptr is the integer cast back."""
        self.set_reg(reg, value, self.value(f"inttoptr i64 {value} to ptr") if self.typed_pointers else None)

    def set_known(self, reg: int, value: int, anchor: int | None = None) -> None:
        """Set a register to a constant; anchor: the value is an address named from it."""
        value &= isa.MASK64
        if anchor is None:
            self.set_reg(reg, _const(value, 64))
        else:
            self.set_reg(reg, self.symbols.address(value, anchor), self.symbols.pointer(value, anchor))
            self.anchors[reg] = anchor
        self.known[reg] = value

    def reg_pointer(self, reg: int) -> str:
        """The register's value as a ptr derived from the pointer it came from (typed_pointers)."""
        if reg == isa.FRAME_POINTER:
            return self.stack_ptr(0)
        return self.value(f"load ptr, ptr %p{reg}")

    @property
    def typed_pointers(self) -> bool:
        """Whether each register also has a ptr twin, derived from the pointer its value came
        from (``r1 += 8`` as a getelementptr of r1's ptr, not an integer add cast to a ptr at
        each access). Through integer casts LLVM cannot tell two accesses apart or follow an
        address across a loop; through getelementptrs it sees, for instance, that a loop copies
        between two ranges of one buffer, and vectorizes it. Only the 64-bit ADD/SUB that
        the verifier saw move a pointer (Facts.pointer_moves), moves, 64-bit loads and calls set
        the twin: the others produce numbers, which the verifier never lets a program access
        memory through. Not for a sandboxed (unverified) program, which may use anything."""
        return not self.sandboxed_memory

    def reg32(self, reg: int) -> str:
        return self.value(f"trunc i64 {self.reg(reg)} to i32")

    def stack_ptr(self, off: int) -> str:
        return self.value(f"getelementptr inbounds i8, ptr %stack, i64 {isa.STACK_SIZE + off}")

    def pointer(self, reg: int, off: int) -> str:
        """A pointer to [reg + off]; r10-relative accesses stay inside the frame's alloca."""
        if reg == isa.FRAME_POINTER:
            return self.stack_ptr(off)
        base = self.reg_pointer(reg) if self.typed_pointers else self.value(f"inttoptr i64 {self.reg(reg)} to ptr")
        return self.value(f"getelementptr i8, ptr {base}, i64 {off}") if off else base

    @property
    def sandboxed_memory(self) -> bool:
        """Whether every access is checked: the program was not verified."""
        return not self.facts.verified

    def access(self, reg: int, off: int, size: int, write: bool, index: int) -> str:
        """A pointer for a load or store of `size` bytes at [reg + off], checked first where
        the facts do not prove it safe (see the module docstring)."""
        if reg == isa.FRAME_POINTER:
            if self.sandboxed_memory and not (-isa.STACK_SIZE <= off and off + size <= 0):
                self.guard("false", self.value(f"add i64 {self.reg(reg)}, {off}"), size, write, index)
                return self.value(f"inttoptr i64 {self.reg(reg)} to ptr")
            return self.stack_ptr(off)
        if not (self.sandboxed_memory or index in self.facts.checked_accesses):
            return self.pointer(reg, off)
        address = self.value(f"add i64 {self.reg(reg)}, {off}") if off else self.reg(reg)
        if self.sandboxed_memory:
            ok = self.value(f"call i1 @bpfjit_access_ok(ptr %env, i64 {address}, i64 {size}, i1 {int(write)})")
        else:
            ok = self.in_raw_memory(address, size)
        self.guard(ok, address, size, write, index)
        return self.pointer(reg, off) if self.typed_pointers else self.value(f"inttoptr i64 {address} to ptr")

    def in_raw_memory(self, address: str, size: int | str) -> str:
        """Whether [address, address + size) lies in a raw program's memory,
        [RunEnv.mem_start, + mem_size). The main function is entered with r1 = mem_start and
        r2 = mem_size (bpfjit.program passes the same two values to both), so it compares with
        its own arguments: LLVM then sees that an access at r1 + i with i below a bound derived
        from r2 is inside, and drops the check (a byte loop becomes a memcpy again)."""
        if self.function.start == 0:
            start, length = "%a1", "%a2"
        else:
            start = self.value(f"load i64, ptr {self.env_field(FIELD_MEM_START)}")
            length = self.value(f"load i64, ptr {self.env_field(FIELD_MEM_SIZE)}")
        fits = self.value(f"icmp uge i64 {length}, {size}")
        inside = self.value(f"icmp ule i64 {self.value(f'sub i64 {address}, {start}')}, "
                            f"{self.value(f'sub i64 {length}, {size}')}")
        return self.value(f"and i1 {fits}, {inside}")

    def guard(self, ok: str, address: str, size: int, write: bool, index: int) -> None:
        """Go on where `ok` holds; else end the run with BAD_READ / BAD_WRITE at `address`."""
        bad, fine = self.unique("bad_access"), self.unique("access")
        self.emit(f"br i1 {ok}, label %{fine}, label %{bad}, !prof !{{!\"branch_weights\", i32 {_LIKELY}, i32 1}}")
        self.lines.append(f"{bad}:")
        self.emit(f"store i64 {size}, ptr {self.env_field(FIELD_ACCESS_SIZE)}")
        self.fail(Status.BAD_WRITE if write else Status.BAD_READ, index, address)
        self.lines.append(f"{fine}:")
        self.terminated = False

    def env_field(self, index: int) -> str:
        return self.value(f"getelementptr inbounds i64, ptr %env, i64 {index}")

    def fail(self, status: Status, index: int, detail: str | None = None) -> None:
        """Record a failed run in %env and return 0 from this function."""
        self.emit(f"store i64 {int(status)}, ptr {self.env_field(FIELD_STATUS)}")
        self.emit(f"store i64 {index}, ptr {self.env_field(FIELD_INSN)}")
        if detail is not None:
            self.emit(f"store i64 {detail}, ptr {self.env_field(FIELD_VALUE)}")
        self.emit("ret i64 0")
        self.terminated = True

    def leave(self, value: str) -> None:
        """Return `value` from this function (an exit)."""
        self.store_trips()
        if self.sandboxed_memory:  # this call's frame is gone
            self.emit(f"store i64 %frame_slot, ptr {self.env_field(FIELD_FRAME_COUNT)}")
        self.emit(f"ret i64 {value}")
        self.terminated = True

    def unique(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def return_if(self, condition: str, status: Status | None = None, index: int | None = None) -> None:
        """Return 0 from this function when condition holds (recording status and index if given)."""
        leave, stay = self.unique("leave"), self.unique("stay")
        self.emit(f"br i1 {condition}, label %{leave}, label %{stay}")
        self.lines.append(f"{leave}:")
        if status is not None:
            self.emit(f"store i64 {int(status)}, ptr {self.env_field(FIELD_STATUS)}")
        if index is not None:
            self.emit(f"store i64 {index}, ptr {self.env_field(FIELD_INSN)}")
        self.emit("ret i64 0")
        self.lines.append(f"{stay}:")

    def propagate_stop(self, index: int | None = None) -> None:
        """After a call: if the run's status is no longer OK, return at once.

        index: the helper call that may have failed, recorded as where the run stopped.
        The load is volatile: helpers write the status through ctypes, behind the back of the
        noalias %env, and LLVM would otherwise reuse the status it loaded after an earlier call.
        """
        status = self.value(f"load volatile i64, ptr {self.env_field(FIELD_STATUS)}")
        if index is None:
            self.return_if(self.value(f"icmp ne i64 {status}, 0"))
            return
        leave, stay = self.unique("leave"), self.unique("stay")
        self.emit(f"br i1 {self.value(f'icmp ne i64 {status}, 0')}, label %{leave}, label %{stay}")
        self.lines.append(f"{leave}:")
        # A failure the helper reported is placed here; one a callback of it placed stays put.
        insn_ptr = self.env_field(FIELD_INSN)
        placed = self.value(f"load i64, ptr {insn_ptr}")
        pending = self.value(f"icmp eq i64 {placed}, {_const(INSN_PENDING, 64)}")
        self.emit(f"store i64 {self.value(f'select i1 {pending}, i64 {index}, i64 {placed}')}, ptr {insn_ptr}")
        self.emit("ret i64 0")
        self.lines.append(f"{stay}:")

    # --- the function --------------------------------------------------------------------------
    def lower(self) -> list[str]:
        start, end = self.function.start, self.function.end
        # Functions a callback may enter (those with a token) stay visible to the runtime.
        # The main function is the entry point (called by the engine), so it stays visible too.
        exported = start == 0 or start in self.env.callx_targets(self.facts.function_starts)
        linkage = "" if exported else "internal "
        self.lines.append(f"define {linkage}i64 @bpf_f{start}(ptr noalias %env, i64 %a1, i64 %a2, i64 %a3, "
                          f"i64 %a4, i64 %a5) {{")
        self.lines.append("entry:")
        self.emit(f"%stack = alloca [{isa.STACK_SIZE} x i8], align 16")
        for reg in range(10):
            self.emit(f"%r{reg} = alloca i64")
            if self.typed_pointers:
                self.emit(f"%p{reg} = alloca ptr")
            if 1 <= reg <= 5:
                self.set_address(reg, f"%a{reg}")
            else:
                self.set_reg(reg, "0")
        self.emit("%may_goto = alloca i64")
        self.emit(f"store i64 {MAY_GOTO_BUDGET}, ptr %may_goto")
        if self.counts_trips:
            self.emit("%trips_left = alloca i64")
            self.load_trips()
        if self.sandboxed_memory:  # nothing proved what it reads: a zeroed stack, as the interpreter's
            self.emit(f"call void @llvm.memset.p0.i64(ptr %stack, i8 0, i64 {isa.STACK_SIZE}, i1 false)")
            self.register_frame()
        for function, number in sorted(self.facts.zeroed_slots):
            if function == start:  # read before written on some path: zero, as the interpreter
                self.emit(f"store i64 0, ptr {self.stack_ptr(-SLOT_SIZE * (number + 1))}, align 8")
        self.branch(f"b{start}")
        absorbed = frozenset().union(*(s.absorbed | s.skipped for s in self.switches.values()))
        done_until = start  # slots below this were lowered as part of a copy
        for index in isa.slots(self.insns, start, end):
            insn = self.insns[index]
            if index in absorbed or index < done_until:
                continue
            if index in self.facts.block_starts or self.terminated:
                self.label(f"b{index}")
            if index in self.segments:
                self.spend_budget(index)
            if index in self.copies:
                self.lower_copy(self.copies[index])
                done_until = self.copies[index].end
            else:
                self.lower_insn(insn, index)
        if not self.terminated:  # unreachable: the structure check guarantees an exit or goto
            self.emit("unreachable")
        self.write_trip_blocks()
        self.lines.append("}")
        return self.lines

    def register_frame(self) -> None:
        """Sandboxed: list this call's stack in RunEnv.frames, where checked accesses look."""
        count_ptr = self.env_field(FIELD_FRAME_COUNT)
        self.emit(f"%frame_slot = load i64, ptr {count_ptr}")
        self.return_if(self.value(f"icmp uge i64 %frame_slot, {SANDBOX_FRAMES}"), Status.CALL_DEPTH,
                       self.function.start)
        slot = self.value(f"add i64 %frame_slot, {FIELD_FRAMES}")
        base = self.value(f"ptrtoint ptr {self.stack_ptr(-isa.STACK_SIZE)} to i64")
        self.emit(f"store i64 {base}, ptr {self.value(f'getelementptr inbounds i64, ptr %env, i64 {slot}')}")
        self.emit(f"store i64 {self.value('add i64 %frame_slot, 1')}, ptr {count_ptr}")

    def lower_insn(self, insn: Insn, index: int) -> None:
        """One instruction, under a comment naming its slot in the IR (INSN_COMMENT; a listing
        adds the disassembly, which would cost a cache hit a few microseconds per instruction);
        a failure names the instruction too."""
        self.lines.append(f"  {INSN_COMMENT}{index}")
        if index in self.facts.dead:  # no path reaches it: a trap, as the kernel's dead code
            self.fail(Status.DEAD_CODE, index)
            return
        try:
            self.lowerings[insn.cls](insn, index)
        except BPFError:
            raise
        except Exception as exc:  # a bug of the lowering: say where, not only what
            raise JITError(f"insn {index} ({insn_text(insn)}): lowering failed: {type(exc).__name__}: {exc}") \
                from exc

    def __post_init__(self) -> None:
        self.counts_trips = self.facts.trip_limit is not None and any(
            self.function.start <= source < self.function.end for source, _ in self.facts.loop_edges)
        self.switches = {} if self.sandboxed else \
            find_switches(self.insns, self.function.start, self.function.end, self.facts)
        if self.counts_trips:  # a tree's jumps stay jumps where one of them counts a loop trip
            counted = {source for source, _ in self.facts.loop_edges}
            self.switches = {root: tree for root, tree in self.switches.items()
                             if counted.isdisjoint(tree.absorbed | tree.skipped | {root})}
        self.segments = self.find_segments() if self.sandboxed else {}
        self.loop_heads = self.find_loop_heads() if self.sandboxed else frozenset()
        # Sandboxed code checks every access one by one: no fused copies there.
        self.copies = {} if self.sandboxed_memory else \
            find_copies(self.insns, self.function.start, self.function.end, self.facts.block_starts)
        # One method per instruction class.
        self.lowerings = {
            isa.LD: self.lower_ld, isa.LDX: self.lower_ldx, isa.ST: self.lower_st, isa.STX: self.lower_stx,
            isa.ALU: self.lower_alu, isa.ALU64: self.lower_alu, isa.JMP: self.lower_jmp, isa.JMP32: self.lower_jmp,
        }

    # --- the sandboxed variant: instruction and time budgets ------------------------------------
    def find_segments(self) -> dict[int, tuple[int, tuple[int, ...]]]:
        """Straight-line runs of the function, by first slot: how many instructions each holds
        and the positions (0-based, in instructions) of its ld_imm64s, which take two slots.
        A segment ends before a block start and after a call, a jump, an exit or a legacy packet
        load (which may return)."""
        segments: dict[int, tuple[int, tuple[int, ...]]] = {}
        first, count, wide, boundary = self.function.start, 0, [], False
        for index in isa.slots(self.insns, self.function.start, self.function.end):
            if count and (boundary or index in self.facts.block_starts):
                segments[first] = (count, tuple(wide))
                first, count, wide = index, 0, []
            insn = self.insns[index]
            if insn.is_lddw:
                wide.append(count)
            count += 1
            # Calls, exits and jumps are all of the jump classes; a legacy packet load may return.
            boundary = insn.is_jump or is_legacy_load(insn)
        if count:
            segments[first] = (count, tuple(wide))
        return segments

    def find_loop_heads(self) -> frozenset[int]:
        """The function's entry and every slot a back-edge jumps to: where the stop flag is polled."""
        heads = {self.function.start}
        for index in range(self.function.start, self.function.end):
            heads.update(s for s in self.facts.successors.get(index, ()) if s <= index)
        return frozenset(heads)

    def spend_budget(self, index: int) -> None:
        """Count the segment starting at `index`; stop if the run is over either budget."""
        count, wide = self.segments[index]
        steps_ptr = self.env_field(FIELD_STEPS)
        # Volatile: callbacks and callees spend the same count, and the watchdog thread sets the
        # stop flag, behind the back of the noalias %env.
        before = self.value(f"load volatile i64, ptr {steps_ptr}")
        after = self.value(f"add i64 {before}, {count}")
        self.emit(f"store volatile i64 {after}, ptr {steps_ptr}")
        budget = self.value(f"load i64, ptr {self.env_field(FIELD_MAX_STEPS)}")
        over, stay = self.unique("over_budget"), self.unique("in_budget")
        self.emit(f"br i1 {self.value(f'icmp ugt i64 {after}, {budget}')}, label %{over}, label %{stay}")
        # The interpreter stops at the instruction that would exceed the budget: the k-th of the
        # segment, k = budget - before, one slot further for each ld_imm64 before it.
        self.lines.append(f"{over}:")
        at = self.value(f"add i64 {self.value(f'sub i64 {budget}, {before}')}, {index}")
        for position in wide:
            later = self.value(f"icmp ugt i64 {self.value(f'sub i64 {budget}, {before}')}, {position}")
            at = self.value(f"add i64 {at}, {self.value(f'zext i1 {later} to i64')}")
        self.emit(f"store i64 {int(Status.STEP_BUDGET)}, ptr {self.env_field(FIELD_STATUS)}")
        self.emit(f"store i64 {at}, ptr {self.env_field(FIELD_INSN)}")
        self.emit("ret i64 0")
        self.lines.append(f"{stay}:")
        if index in self.loop_heads:
            stop = self.value(f"load volatile i64, ptr {self.env_field(FIELD_STOP)}")
            self.return_if(self.value(f"icmp ne i64 {stop}, 0"), Status.TIME_BUDGET, index)

    # --- LD: ld_imm64 (every pseudo source is a constant by now) and the legacy packet loads ----
    def lower_ld(self, insn: Insn, index: int) -> None:
        if is_legacy_load(insn):
            lower_legacy_load(self, insn, index)
            return
        value = self.env.ld_imm64_value(insn, index)
        # A map handle or a map value's address is a symbol bound at link time; none is ever 0
        # (LLVM takes a global's address as non-null), so a 0 (nothing to name) stays a number.
        address = insn.src not in (0, isa.PSEUDO_FUNC) and value != 0
        self.set_known(insn.dst, value, self.symbols.anchor(value) if address else None)

    # --- LDX / ST / STX ------------------------------------------------------------------------
    def lower_ldx(self, insn: Insn, index: int) -> None:
        bits = 8 * isa.SIZE_BYTES[insn.size]
        if insn.src in self.known:  # a load from a frozen read-only map is a constant
            frozen = self.env.frozen_bytes((self.known[insn.src] + insn.off) & isa.MASK64, bits // 8)
            if frozen is not None:
                value = int.from_bytes(frozen, "little")
                if insn.mode == isa.MEMSX:
                    value = isa.sign_extend(value, bits)
                self.set_known(insn.dst, value)
                return
        ptr = self.access(insn.src, insn.off, bits // 8, False, index)
        self.set_loaded(insn.dst, self.value(f"load {_INT[bits]}, ptr {ptr}, align 1"), bits,
                        "sext" if insn.mode == isa.MEMSX else "zext")

    def set_loaded(self, reg: int, loaded: str, bits: int, extend: str = "zext") -> None:
        """Set a register to a value read from memory: 64 bits may be a pointer (a spill filled,
        a pointer field of the context), narrower ones are numbers."""
        if bits == 64:
            self.set_address(reg, loaded)
        else:
            self.set_reg(reg, self.value(f"{extend} {_INT[bits]} {loaded} to i64"))

    def store(self, ptr: str, value64: str, bits: int) -> None:
        if bits != 64:
            value64 = self.value(f"trunc i64 {value64} to {_INT[bits]}")
        self.emit(f"store {_INT[bits]} {value64}, ptr {ptr}, align 1")

    def lower_st(self, insn: Insn, index: int) -> None:
        bits = 8 * isa.SIZE_BYTES[insn.size]
        ptr = self.access(insn.dst, insn.off, bits // 8, True, index)
        self.emit(f"store {_INT[bits]} {_const(insn.imm, bits)}, ptr {ptr}, align 1")

    def lower_stx(self, insn: Insn, index: int) -> None:
        bits = 8 * isa.SIZE_BYTES[insn.size]
        if insn.mode == isa.MEM:
            self.store(self.access(insn.dst, insn.off, bits // 8, True, index), self.reg(insn.src), bits)
        else:
            self.lower_atomic(insn, bits, index)

    def lower_atomic(self, insn: Insn, bits: int, index: int) -> None:
        ty, align = _INT[bits], bits // 8
        if insn.imm == isa.LOAD_ACQ:
            ptr = self.access(insn.src, insn.off, align, False, index)
            self.set_loaded(insn.dst, self.value(f"load atomic {ty}, ptr {ptr} acquire, align {align}"), bits)
            return
        ptr = self.access(insn.dst, insn.off, align, True, index)
        operand = self.reg(insn.src)
        if bits != 64:
            operand = self.value(f"trunc i64 {operand} to {ty}")
        if insn.imm == isa.STORE_REL:
            self.emit(f"store atomic {ty} {operand}, ptr {ptr} release, align {align}")
            return
        if insn.imm == isa.CMPXCHG:
            expected = self.reg(0) if bits == 64 else self.reg32(0)
            pair = self.value(f"cmpxchg ptr {ptr}, {ty} {expected}, {ty} {operand} seq_cst seq_cst, align {align}")
            old, result_reg = self.value(f"extractvalue {{ {ty}, i1 }} {pair}, 0"), 0
        else:
            op = "xchg" if insn.imm == isa.XCHG else _RMW[insn.imm & ~isa.FETCH]
            old = self.value(f"atomicrmw {op} ptr {ptr}, {ty} {operand} seq_cst, align {align}")
            result_reg = insn.src if insn.imm & isa.FETCH else None
        if result_reg is not None:
            self.set_loaded(result_reg, old, bits)

    # --- ALU / ALU64 ---------------------------------------------------------------------------
    def lower_alu(self, insn: Insn, index: int) -> None:
        bits = 64 if insn.cls == isa.ALU64 else 32
        ty = _INT[bits]
        op = insn.op
        if op == isa.END:
            self.set_reg(insn.dst, self.byte_swap(insn))
            return
        if op == isa.MOV and bits == 64 and insn.off == 0:
            if insn.source == isa.K:
                self.set_known(insn.dst, insn.imm)
                return
            if insn.src in self.known:
                self.set_known(insn.dst, self.known[insn.src], self.anchors.get(insn.src))
                return
            self.set_reg(insn.dst, self.reg(insn.src), self.reg_pointer(insn.src) if self.typed_pointers else None)
            return
        if op == isa.ADD and bits == 64 and insn.source == isa.K and insn.dst in self.known:
            self.set_known(insn.dst, self.known[insn.dst] + insn.imm, self.anchors.get(insn.dst))
            return
        if bits == 64 and index in self.facts.pointer_moves and self.typed_pointers:
            self.move_pointer(insn, self.facts.pointer_moves[index])
            return
        if op == isa.MOV and insn.is_movsx:
            narrow = self.value(f"trunc i64 {self.reg(insn.src)} to {_INT[insn.off]}")
            result = self.value(f"sext {_INT[insn.off]} {narrow} to {ty}")
        elif op == isa.MOV:
            result = self.operand(insn, bits)
        elif op == isa.NEG:
            result = self.value(f"sub {ty} 0, {self.dst(insn, bits)}")
        elif op in (isa.DIV, isa.MOD):
            result = self.divmod(insn, bits)
        elif op in (isa.LSH, isa.RSH, isa.ARSH):
            count = self.operand(insn, bits)
            if insn.source == isa.X:
                count = self.value(f"and {ty} {count}, {bits - 1}")
            else:
                count = str(insn.imm & (bits - 1))
            result = self.value(f"{_BINOPS[op]} {ty} {self.dst(insn, bits)}, {count}")
        else:
            result = self.value(f"{_BINOPS[op]} {ty} {self.dst(insn, bits)}, {self.operand(insn, bits)}")
        if bits == 32:
            result = self.value(f"zext i32 {result} to i64")
        self.set_reg(insn.dst, result)

    def move_pointer(self, insn: Insn, moved: int) -> None:
        """A 64-bit ADD/SUB that moves the pointer in register `moved` (-1: which one depends on
        the path): the ptr twin is that pointer's, moved by the other operand."""
        op = _BINOPS[insn.op]
        result = self.value(f"{op} i64 {self.reg(insn.dst)}, {self.operand(insn, 64)}")
        if moved < 0:
            self.set_address(insn.dst, result)
            return
        by = self.operand(insn, 64) if moved == insn.dst else self.reg(insn.dst)
        if insn.op == isa.SUB:
            by = self.value(f"sub i64 0, {by}")
        self.set_reg(insn.dst, result, self.value(f"getelementptr i8, ptr {self.reg_pointer(moved)}, i64 {by}"))

    def dst(self, insn: Insn, bits: int) -> str:
        return self.reg(insn.dst) if bits == 64 else self.reg32(insn.dst)

    def operand(self, insn: Insn, bits: int) -> str:
        """The source operand at the operation's width (K: imm sign-extended to 64 or as 32 bits)."""
        if insn.source == isa.X:
            return self.reg(insn.src) if bits == 64 else self.reg32(insn.src)
        return _const(insn.imm, bits)

    def divmod(self, insn: Insn, bits: int) -> str:
        """BPF division: x/0 = 0, x%0 = x, INT_MIN/-1 = INT_MIN, x%-1 = 0 -- without UB in LLVM."""
        ty, d = _INT[bits], self.dst(insn, bits)
        is_div, signed = insn.op == isa.DIV, insn.off == 1
        llvm_op = ("sdiv" if signed else "udiv") if is_div else ("srem" if signed else "urem")
        if insn.source == isa.K:
            divisor = isa.sign_extend(insn.imm, bits) if signed else insn.imm & ((1 << bits) - 1)
            if divisor == 0:
                return "0" if is_div else d
            if signed and divisor == -1:
                return self.value(f"sub {ty} 0, {d}") if is_div else "0"
            return self.value(f"{llvm_op} {ty} {d}, {_const(insn.imm, bits)}")
        s = self.operand(insn, bits)
        zero = self.value(f"icmp eq {ty} {s}, 0")
        if not signed:
            safe = self.value(f"select i1 {zero}, {ty} 1, {ty} {s}")
            quotient = self.value(f"{llvm_op} {ty} {d}, {safe}")
            return self.value(f"select i1 {zero}, {ty} {'0' if is_div else d}, {ty} {quotient}")
        minus_one = self.value(f"icmp eq {ty} {s}, -1")
        special = self.value(f"or i1 {zero}, {minus_one}")
        safe = self.value(f"select i1 {special}, {ty} 1, {ty} {s}")
        quotient = self.value(f"{llvm_op} {ty} {d}, {safe}")
        if is_div:
            negated = self.value(f"sub {ty} 0, {d}")
            by_minus_one = self.value(f"select i1 {minus_one}, {ty} {negated}, {ty} {quotient}")
            return self.value(f"select i1 {zero}, {ty} 0, {ty} {by_minus_one}")
        by_minus_one = self.value(f"select i1 {minus_one}, {ty} 0, {ty} {quotient}")
        return self.value(f"select i1 {zero}, {ty} {d}, {ty} {by_minus_one}")

    def byte_swap(self, insn: Insn) -> str:
        """le16/le32 truncate; be*/bswap* swap the low bits; all zero-extend to 64."""
        width, d = insn.imm, self.reg(insn.dst)
        if insn.cls == isa.ALU and insn.source == isa.K:  # to little-endian on x86
            return d if width == 64 else self.value(f"and i64 {d}, {(1 << width) - 1}")
        ty = _INT[width]
        narrow = d if width == 64 else self.value(f"trunc i64 {d} to {ty}")
        swapped = self.value(f"call {ty} @llvm.bswap.{ty}({ty} {narrow})")
        return swapped if width == 64 else self.value(f"zext {ty} {swapped} to i64")

    # --- JMP / JMP32 ---------------------------------------------------------------------------
    def lower_jmp(self, insn: Insn, index: int) -> None:
        op = insn.op
        if op == isa.EXIT:
            self.leave(self.reg(0))
        elif op == isa.CALL:
            self.lower_call(insn, index)
        elif insn.opcode == isa.GOTOX_OP:
            lower_gotox(self, insn, index)
        elif op == isa.JA and insn.src & isa.STATIC_BRANCH_JA:  # a patchable static-branch site
            self.emit(site_asm(index, self.edge(index, index + 1), self.edge(index, insn.jump_target(index))))
            self.terminated = True
        elif op == isa.JA:
            self.branch(self.edge(index, insn.jump_target(index)))
        elif index in self.switches:
            self.lower_switch(self.switches[index], index)
        elif op == isa.JCOND:
            left = self.value("load i64, ptr %may_goto")
            spent = self.value(f"icmp eq i64 {left}, 0")
            self.emit(f"br i1 {spent}, label %{self.edge(index, insn.jump_target(index))}, label %mg{index}")
            self.lines.append(f"mg{index}:")
            self.emit(f"store i64 {self.value(f'sub i64 {left}, 1')}, ptr %may_goto")
            self.branch(self.edge(index, index + 1))
        else:
            bits = 32 if insn.cls == isa.JMP32 else 64
            ty = _INT[bits]
            if op == isa.JSET:
                anded = self.value(f"and {ty} {self.dst(insn, bits)}, {self.operand(insn, bits)}")
                taken = self.value(f"icmp ne {ty} {anded}, 0")
            elif index in self.facts.pointer_compares and self.typed_pointers:  # two pointers: their twins
                taken = self.value(f"icmp {_PREDICATES[op]} ptr {self.reg_pointer(insn.dst)}, "
                                   f"{self.reg_pointer(insn.src)}")
            else:
                taken = self.value(f"icmp {_PREDICATES[op]} {ty} {self.dst(insn, bits)}, {self.operand(insn, bits)}")
            target, counted = insn.jump_target(index), self.facts.loop_edges if self.counts_trips else ()
            if target != index + 1 and (index, target) in counted:
                self.loop_latch(taken, target, index + 1, index)
            elif target != index + 1 and (index, index + 1) in counted:
                self.loop_latch(self.value(f"xor i1 {taken}, true"), index + 1, target, index)
            else:  # (a jump to the next slot has a single edge: counted on either path)
                self.emit(f"br i1 {taken}, label %{self.edge(index, target)}, label %{self.edge(index, index + 1)}")
                self.terminated = True

    # --- loop trips (Facts.trip_limit) ---------------------------------------------------------
    # A function with loop edges keeps the trips its invocation has left in %trips_left, promoted
    # to a register by mem2reg (a count down to zero is one decrement and branch per trip): made
    # from RunEnv.trips on entry and after every call (callees and callbacks count there), given
    # back to it before every call and exit.
    def load_trips(self) -> None:
        if self.counts_trips:
            used = self.value(f"load i64, ptr {self.env_field(FIELD_TRIPS)}")
            self.emit(f"store i64 {self.value(f'sub i64 {self.facts.trip_limit}, {used}')}, ptr %trips_left")

    def store_trips(self) -> None:
        if self.counts_trips:
            used = self.value(f"sub i64 {self.facts.trip_limit}, {self.value('load i64, ptr %trips_left')}")
            self.emit(f"store i64 {used}, ptr {self.env_field(FIELD_TRIPS)}")

    def count_trip(self) -> tuple[str, str]:
        """Count one trip: (the trips left before, whether one was left)."""
        before = self.value("load i64, ptr %trips_left")
        self.emit(f"store i64 {self.value(f'sub i64 {before}, 1')}, ptr %trips_left")
        return before, self.value(f"icmp ne i64 {before}, 0")

    def loop_latch(self, stays: str, loop: int, leave: int, index: int) -> None:
        """A conditional jump one of whose edges (to `loop`, when `stays`) is a loop trip: the
        loop goes on while `stays` and the count is within the limit, one condition, so that the
        loop keeps a single exit and LLVM still computes its trip count (the smaller of the two)
        and vectorises it. The exit then tells a spent budget from the loop's own end (to
        `leave`), and takes back the trip counted for the latter."""
        before, within = self.count_trip()
        out, over, done = self.unique("loop_out"), self.unique("trips_over"), self.unique("loop_done")
        self.emit(f"br i1 {self.value(f'and i1 {stays}, {within}')}, label %b{loop}, label %{out}")
        self.lines.append(f"{out}:")
        self.emit(f"br i1 {stays}, label %{over}, label %{done}")
        self.lines.append(f"{over}:")
        self.fail(Status.LOOP_BUDGET, index, str(self.facts.trip_limit))
        self.lines.append(f"{done}:")
        self.emit(f"store i64 {before}, ptr %trips_left")
        self.branch(f"b{leave}")

    def edge(self, index: int, target: int) -> str:
        """The label a jump at `index` names for `target`: the target's block, or for a loop
        trip (Facts.loop_edges), a block written after this one that counts the trip first."""
        if not self.counts_trips or (index, target) not in self.facts.loop_edges:
            return f"b{target}"
        label = self.unique("trip")
        self.trip_blocks.append((label, index, target))
        return label

    def write_trip_blocks(self) -> None:
        """The trip blocks the ended block's jumps named (edge)."""
        blocks, self.trip_blocks = self.trip_blocks, []
        for label, index, target in blocks:
            self.lines.append(f"{label}:")
            _, within = self.count_trip()
            over = self.unique("trips_over")
            self.emit(f"br i1 {within}, label %b{target}, label %{over}")
            self.lines.append(f"{over}:")
            self.fail(Status.LOOP_BUDGET, index, str(self.facts.trip_limit))

    def lower_switch(self, switch: Switch, index: int) -> None:
        """A compare tree clang made of a C switch, as one LLVM switch (jit/switches.py). A folded
        one only picks an immediate: from a constant table when its case values are dense,
        else through one block per leaf that names the leaf's immediate."""
        ty = _INT[switch.bits]
        value = self.reg(switch.reg) if switch.bits == 64 else self.reg32(switch.reg)
        fold = switch.fold
        values = [v for v, _ in switch.cases]
        if fold is not None and values[-1] - values[0] < 2 * len(values):  # dense: at most half holes
            self.apply_fold(fold, self.table_pick(switch, fold, value, index))
            return
        target = (lambda leaf: f"sw{index}_{leaf}") if fold else (lambda leaf: f"b{leaf}")
        cases = " ".join(f"{ty} {_const(v, switch.bits)}, label %{target(leaf)}" for v, leaf in switch.cases)
        self.emit(f"switch {ty} {value}, label %{target(switch.default)} [ {cases} ]")
        self.terminated = True
        if fold is not None:
            for leaf, _ in fold.imms:
                self.lines.append(f"sw{index}_{leaf}:")
                self.emit(f"br label %sw{index}_join")
            self.lines.append(f"sw{index}_join:")
            self.terminated = False
            incoming = ", ".join(f"[ {_const(imm, fold.bits)}, %sw{index}_{leaf} ]" for leaf, imm in fold.imms)
            self.apply_fold(fold, self.value(f"phi {_INT[fold.bits]} {incoming}"))

    def table_pick(self, switch: Switch, fold: Fold, value: str, index: int) -> str:
        """The immediate of the leaf `value` reaches, from a constant table over the case values
        (holes and values outside it: the default leaf's)."""
        ty, ety = _INT[switch.bits], _INT[fold.bits]
        imm_of = dict(fold.imms)
        low, span = switch.cases[0][0], switch.cases[-1][0] - switch.cases[0][0] + 1
        leaf_of = dict(switch.cases)
        entries = ", ".join(f"{ety} {_const(imm_of[leaf_of.get(low + i, switch.default)], fold.bits)}"
                            for i in range(span))
        table = f"@bpfjit_switch{index}"
        self.module_globals.append(f"{table} = private unnamed_addr constant [{span} x {ety}] [{entries}]")
        offset = self.value(f"sub {ty} {value}, {_const(low, switch.bits)}")
        inside = self.value(f"icmp ult {ty} {offset}, {span}")
        wide = offset if switch.bits == 64 else self.value(f"zext i32 {offset} to i64")
        slot = self.value(f"select i1 {inside}, i64 {wide}, i64 0")
        address = self.value(f"getelementptr inbounds [{span} x {ety}], ptr {table}, i64 0, i64 {slot}")
        entry = self.value(f"load {ety}, ptr {address}")
        return self.value(f"select i1 {inside}, {ety} {entry}, {ety} {_const(imm_of[switch.default], fold.bits)}")

    def apply_fold(self, fold: Fold, picked: str) -> None:
        """dst op= picked (the chosen leaf's immediate), then on to the leaves' common target."""
        ty, op = _INT[fold.bits], fold.opcode & 0xF0
        result = picked if op == isa.MOV else self.value(
            f"{_BINOPS[op]} {ty} {self.reg(fold.dst) if fold.bits == 64 else self.reg32(fold.dst)}, {picked}")
        self.set_reg(fold.dst, result if fold.bits == 64 else self.value(f"zext i32 {result} to i64"))
        self.branch(f"b{fold.join}")

    def lower_copy(self, copy: Copy) -> None:
        """Byte pairs that copy a range (jit/copies.py): one memcpy when the source and
        destination ranges are apart, else the pairs as written, in their order."""
        pairs = range(copy.start, copy.end)
        src = self.value(f"add i64 {self.reg(copy.src)}, {copy.low}")
        dst = self.value(f"add i64 {self.reg(copy.dst)}, {copy.low + copy.delta}")
        below = self.value(f"icmp ule i64 {self.value(f'add i64 {dst}, {copy.size}')}, {src}")
        above = self.value(f"icmp ule i64 {self.value(f'add i64 {src}, {copy.size}')}, {dst}")
        apart = self.value(f"or i1 {below}, {above}")
        # Where the pairs' accesses are checked (a raw program's memory), one check of each whole
        # range admits the memcpy; the pairs, each checked, report the first access that fails.
        checked = self.facts.checked_accesses
        if not checked.isdisjoint(range(copy.start, copy.end, 2)):
            apart = self.value(f"and i1 {apart}, {self.in_raw_memory(src, copy.size)}")
        if not checked.isdisjoint(range(copy.start + 1, copy.end, 2)):
            apart = self.value(f"and i1 {apart}, {self.in_raw_memory(dst, copy.size)}")
        fast, slow, done = self.unique("copy_apart"), self.unique("copy_pairs"), self.unique("copy_done")
        self.emit(f"br i1 {apart}, label %{fast}, label %{slow}")
        self.lines.append(f"{fast}:")
        to, source = self.pointer(copy.dst, copy.low + copy.delta), self.pointer(copy.src, copy.low)
        self.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {to}, ptr {source}, i64 {copy.size}, i1 false)")
        lasts = [(reg, self.value(f"load i8, ptr {self.pointer(copy.src, offset)}, align 1"))
                 for reg, offset in copy.scratch]  # all read before any is set: one may be src
        for reg, byte in lasts:
            self.set_reg(reg, self.value(f"zext i8 {byte} to i64"))
        self.emit(f"br label %{done}")
        self.lines.append(f"{slow}:")
        for index in pairs:
            self.lower_insn(self.insns[index], index)
        self.emit(f"br label %{done}")
        self.lines.append(f"{done}:")

    # --- calls ---------------------------------------------------------------------------------
    def args(self) -> str:
        return ", ".join(f"i64 {self.reg(r)}" for r in range(1, 6))

    def call_helper(self, helper_id: int, index: int) -> None:
        helper = self.env.helpers.get(helper_id)
        assert helper is not None  # the structure check rejects unknown helper ids
        if helper_id == MAP_LOOKUP_ELEM and 1 in self.known and self.facts.helper_args_proven and \
                (self.inline_array_lookup(self.known[1]) or self.inline_hash_lookup(self.known[1])):
            return
        # bpf_loop and for_each_map_elem (on an array map), unless the user registered helpers
        # of their own under their ids
        callback = self.env.function_of(self.known[2]) if 2 in self.known else None
        if callback is not None and helper_id == LOOP and helper.impl is standard_loop:
            self.inline_loop(callback, index)
            return
        layout = self.env.array_map(self.known[1]) if 1 in self.known else None
        if callback is not None and layout is not None and helper_id == FOR_EACH_MAP_ELEM \
                and helper.impl is standard_for_each and self.facts.verified:  # the key slot is no checked region
            self.inline_for_each(callback, index, layout)
            return
        if helper_id == TAIL_CALL and helper.impl is standard_tail_call and self.inline_tail_call(index):
            return
        if helper_id == REDIRECT_MAP and helper.impl is standard_redirect_map and self.inline_redirect_map():
            return
        if helper_id == REDIRECT and helper.impl is standard_redirect:
            self.inline_redirect()
            return
        self.call_helper_function(helper_id, index)

    def call_helper_function(self, helper_id: int, index: int) -> None:
        """Call the helper's implementation (native, or a Python callback) with r1-r5."""
        result = self.value(f"call i64 {self.symbols.helper(helper_id)}({self.args()})")
        self.set_address(0, result)
        if self.env.helpers.get(helper_id).stops_on_zero:
            self.return_if(self.value(f"icmp eq i64 {result}, 0"), Status.UNWOUND)
        self.propagate_stop(index)

    def inline_tail_call(self, index: int) -> bool:
        """bpf_tail_call(ctx, prog_array, index) as the kernel's JIT makes it: the index checked
        against the array's size and the run's tail-call count against MAX_TAIL_CALLS (either
        failing: r0 = -ENOENT, as the helper gives, and on to the next instruction); then the
        slot's native entry (runtime/maps/fd_array.py ProgArray) is called with the run's
        RunEnv and the ctx and length this program was entered with, and its result returned
        (a musttail call: this function's frame is gone, as the kernel reuses it). An empty
        slot fails too; an entry of 0 (a program whose entry is not filled yet) takes the
        helper, which fills it. Only from the main function of the normal code, whose entry arguments are
        those of the invocation: a tail call from a subprogram or a budgeted run stays the
        helper's, whose TAIL_CALL unwinds to bpfjit.program."""
        prog_array = _prog_array(self.known[2]) if 2 in self.known else None
        if prog_array is None or self.function.start != 0 or self.sandboxed or not self.facts.helper_args_proven:
            return False
        native, failed, slow, done = (self.unique(f"tail_{part}") for part in ("native", "failed", "slow", "done"))
        slot = self.value(f"zext i32 {self.reg32(3)} to i64")
        count_ptr = self.env_field(FIELD_TAIL_CALLS)
        count = self.value(f"load i64, ptr {count_ptr}")
        inside = self.value(f"icmp ult i64 {slot}, {prog_array.max_entries}")
        allowed = self.value(f"icmp ult i64 {count}, {MAX_TAIL_CALLS}")
        lookup = self.unique("tail_lookup")
        self.emit(f"br i1 {self.value(f'and i1 {inside}, {allowed}')}, label %{lookup}, label %{failed}")
        self.lines.append(f"{lookup}:")
        table = self.symbols.pointer(prog_array.entry_table)
        entry = self.value(f"load atomic i64, ptr {self.value(f'getelementptr i64, ptr {table}, i64 {slot}')} "
                           "acquire, align 8")
        cases = f"i64 0, label %{slow} i64 {ProgArray.EMPTY_ENTRY}, label %{failed}"
        self.emit(f"switch i64 {entry}, label %{native} [ {cases} ]")
        self.lines.append(f"{native}:")
        self.emit(f"store i64 {self.value(f'add i64 {count}, 1')}, ptr {count_ptr}")
        target = self.value(f"inttoptr i64 {entry} to ptr")
        result = self.value(f"musttail call i64 {target}(ptr %env, i64 %a1, i64 %a2, i64 0, i64 0, i64 0)")
        self.emit(f"ret i64 {result}")
        self.lines.append(f"{failed}:")
        self.set_reg(0, _const(-ENOENT, 64))
        self.emit(f"br label %{done}")
        self.lines.append(f"{slow}:")
        self.call_helper_function(TAIL_CALL, index)
        self.emit(f"br label %{done}")
        self.lines.append(f"{done}:")
        return True

    def inline_redirect(self) -> None:
        """bpf_redirect(ifindex, flags) by the program's type, as the Python helper decides it
        (runtime/stdhelpers.py redirect_rule): a flag it does not take gives that type's failure
        and records nothing, else the ifindex and flags are recorded in the RunEnv."""
        taken, failed, redirected = redirect_rule(self.env.program_type)
        flags = self.reg(2)
        bad = self.value(f"icmp ne i64 {self.value(f'and i64 {flags}, {_const(~taken, 64)}')}, 0")
        self.set_reg(0, self.value(f"select i1 {bad}, i64 {failed}, i64 {redirected}"))
        self.record_redirect(bad, (str(RECORD_IFINDEX), self.value(f"zext i32 {self.reg32(1)} to i64"), "0", flags))

    def record_redirect(self, bad: str, fields: tuple[str, str, str, str]) -> None:
        """Unless `bad`, write a redirect record (kind, target, key, flags) into the RunEnv's words
        (runtime/run_context.py record_redirect)."""
        record, done = self.unique("redirect_record"), self.unique("redirect_done")
        self.emit(f"br i1 {bad}, label %{done}, label %{record}")
        self.lines.append(f"{record}:")
        for offset, field_value in enumerate(fields):
            self.emit(f"store i64 {field_value}, ptr {self.env_field(FIELD_REDIRECT_KIND + offset)}")
        self.emit(f"br label %{done}")
        self.lines.append(f"{done}:")

    def inline_redirect_map(self) -> bool:
        """bpf_redirect_map(map, key, flags) on a DEVMAP or CPUMAP, whose slot is present when its
        first u32 (ifindex, queue size) is not 0 (runtime/maps/devices.py), as the Python helper
        decides it (runtime/stdhelpers.py redirect_map): flags it does not take give XDP_ABORTED
        and record nothing; a hit (or a DEVMAP broadcast) records the map, key and flags in the
        RunEnv and gives XDP_REDIRECT; a miss clears the record and gives the flags' fallback."""
        devices = _slot_redirect_map(self.known[1]) if 1 in self.known and self.facts.helper_args_proven else None
        if devices is None:
            return False
        allowed = REDIRECT_MAP_FLAGS[MapType(devices.map_type)]
        flags = self.reg(3)
        refused = self.value(f"and i64 {flags}, {_const(~(REDIRECT_FALLBACK_MASK | allowed), 64)}")
        bad = self.value(f"icmp ne i64 {refused}, 0")
        key = self.value(f"zext i32 {self.reg32(2)} to i64")
        hit, result = redirect_map_decision(self.value, key, str(devices.max_entries),
                                            self.symbols.pointer(devices.value_base), flags)
        self.set_reg(0, self.value(f"select i1 {bad}, i64 {XDP_ABORTED}, i64 {result}"))
        self.record_redirect(bad, (self.value(f"select i1 {hit}, i64 {RECORD_MAP}, i64 {RECORD_CLEARED}"),
                                   self.reg(1), key, self.value(f"and i64 {flags}, {allowed}")))
        return True

    def inline_array_lookup(self, handle: int) -> bool:
        """bpf_map_lookup_elem on an array map as address arithmetic, as the kernel inlines it; on
        a per-CPU array, into this run's CPU's copy: slot RunEnv.cpu modulo the map's slots, the
        one the native helper picks (jit/native_maps.py map_cpu)."""
        layout = self.env.array_map(handle)
        percpu = _percpu_array(handle) if layout is None else None
        if percpu is not None:
            layout = ArrayLayout(percpu.value_base, percpu.elem_stride, percpu.max_entries)
        if layout is None:
            return False
        key = self.value(f"load i32, ptr {self.pointer(2, 0)}, align 1")
        wide = self.value(f"zext i32 {key} to i64")
        inside = self.value(f"icmp ult i64 {wide}, {layout.max_entries}")
        offset = self.value(f"mul i64 {wide}, {layout.stride}")
        if percpu is not None and percpu.ncpus > 1:
            cpu = self.value(f"load i64, ptr {self.env_field(FIELD_CPU)}")
            slot = self.value(f"urem i64 {cpu}, {percpu.ncpus}")
            offset = self.value(f"add i64 {offset}, {self.value(f'mul i64 {slot}, {percpu.cpu_stride}')}")
        address = self.value(f"add i64 {offset}, {self.symbols.address(layout.value_base)}")
        value = self.value(f"select i1 {inside}, i64 {address}, i64 0")
        if self.typed_pointers:  # the value as a pointer into the map's region, or NULL
            element = self.value(f"getelementptr i8, ptr {self.symbols.pointer(layout.value_base)}, i64 {offset}")
            self.set_reg(0, value, self.value(f"select i1 {inside}, ptr {element}, ptr null"))
        else:
            self.set_reg(0, value)
        return True

    def inline_hash_lookup(self, handle: int) -> bool:
        """bpf_map_lookup_elem on a hash map as a walk of its native chains (runtime/hash_index.py):
        the key read in fixed chunks and hashed without a loop, then compared chunk by chunk with
        each element's key in the bucket, restarting when the walk ends on another bucket's marker."""
        layout = self.env.hash_map(handle)
        if layout is None:
            return False
        key = self.pointer(2, 0)
        words, hashed = [], "0"
        for offset, size in key_chunks(layout.key_size):
            words.append(self.load_chunk(key, offset, size))
            mixed = self.value(f"xor i64 {hashed}, {words[-1]}")
            hashed = self.value(f"mul i64 {mixed}, {_const(HASH_MULTIPLIER, 64)}")
        folded = self.value(f"xor i64 {hashed}, {self.value(f'lshr i64 {hashed}, 32')}")
        bucket = self.value(f"and i64 {folded}, {layout.nbuckets - 1}")
        marker = self.value(f"or i32 {self.value(f'trunc i64 {bucket} to i32')}, {_const(NULLS, 32)}")
        head = self.element_ptr(layout.heads, bucket, 4)
        start, loop, compare, advance, end, found, done = (self.unique(f"hash_{part}") for part in
                                                           ("start", "loop", "compare", "next", "end", "found", "done"))
        self.emit(f"br label %{start}")
        self.lines.append(f"{start}:")
        first = self.value(f"load atomic i32, ptr {head} acquire, align 4")
        self.emit(f"br label %{loop}")
        self.lines.append(f"{loop}:")
        at, following = self.tmp(), self.tmp()
        self.emit(f"{at} = phi i32 [ {first}, %{start} ], [ {following}, %{advance} ]")
        self.emit(f"br i1 {self.value(f'icmp uge i32 {at}, {_const(NULLS, 32)}')}, label %{end}, label %{compare}")
        self.lines.append(f"{compare}:")
        slot = self.value(f"zext i32 {self.value(f'sub i32 {at}, 1')} to i64")
        stored = self.value(f"inttoptr i64 {self.element_address(layout.key_base, slot, layout.key_stride)} to ptr")
        differs = "0"
        for (offset, size), word in zip(key_chunks(layout.key_size), words):
            delta = self.value(f"xor i64 {word}, {self.load_chunk(stored, offset, size)}")
            differs = self.value(f"or i64 {differs}, {delta}")
        self.emit(f"br i1 {self.value(f'icmp eq i64 {differs}, 0')}, label %{found}, label %{advance}")
        self.lines.append(f"{advance}:")
        self.emit(f"{following} = load atomic i32, ptr {self.element_ptr(layout.links, slot, 4)} acquire, align 4")
        self.emit(f"br label %{loop}")
        self.lines.append(f"{end}:")  # the chain's end: a miss, unless the walk strayed to another bucket
        self.emit(f"br i1 {self.value(f'icmp eq i32 {at}, {marker}')}, label %{done}, label %{start}")
        self.lines.append(f"{found}:")
        value = self.element_address(layout.value_base, slot, layout.stride)
        element = self.element_ptr(layout.value_base, slot, layout.stride)
        self.emit(f"br label %{done}")
        self.lines.append(f"{done}:")
        self.set_reg(0, self.value(f"phi i64 [ 0, %{end} ], [ {value}, %{found} ]"),
                     self.value(f"phi ptr [ null, %{end} ], [ {element}, %{found} ]"))
        return True

    def load_chunk(self, base: str, offset: int, size: int) -> str:
        """The `size` bytes at base + offset, zero-extended to i64."""
        at = self.value(f"getelementptr i8, ptr {base}, i64 {offset}") if offset else base
        word = self.value(f"load {_INT[8 * size]}, ptr {at}, align 1")
        return word if size == 8 else self.value(f"zext {_INT[8 * size]} {word} to i64")

    def element_address(self, base: int, index: str, stride: int) -> str:
        """base + index * stride as i64, base being a process-specific address."""
        offset = self.value(f"mul i64 {index}, {stride}")
        return self.value(f"add i64 {offset}, {self.symbols.address(base)}")

    def element_ptr(self, base: int, index: str, stride: int) -> str:
        """The same as a pointer derived from the symbol base is named by (Symbols)."""
        offset = self.value(f"mul i64 {index}, {stride}")
        return self.value(f"getelementptr i8, ptr {self.symbols.pointer(base)}, i64 {offset}")

    def inline_loop(self, callback: int, index: int) -> None:
        """bpf_loop(count, callback, ctx, flags) as a native loop that calls the callback
        directly, as the kernel inlines it: the helper's errors first (flags: -EINVAL, count
        over BPF_MAX_LOOPS: -E2BIG), then callback(i, ctx) for i < count until it returns 1;
        r0 = the calls made."""
        count, ctx = self.reg(1), self.reg(3)
        bad_flags = self.value(f"icmp ne i64 {self.reg(4)}, 0")
        too_many = self.value(f"icmp ugt i64 {count}, {BPF_MAX_LOOPS}")
        refused = self.value(f"or i1 {bad_flags}, {too_many}")
        error = self.value(f"select i1 {bad_flags}, i64 {-EINVAL}, i64 {-E2BIG}")
        self.callback_loop(callback, index, count, refused, error, lambda i: f"i64 {i}, i64 {ctx}, i64 0, i64 0, i64 0")

    def inline_for_each(self, callback: int, index: int, layout: ArrayLayout) -> None:
        """bpf_for_each_map_elem(map, callback, ctx, flags) on an array map as a native loop:
        -EINVAL for flags, else callback(map, &key, &value, ctx) for each slot until it returns
        1; r0 = the elements visited. The key lives in a slot of this function's own, as the
        kernel's lives on its stack (the callback may only read it)."""
        handle, ctx = self.reg(1), self.reg(3)
        refused = self.value(f"icmp ne i64 {self.reg(4)}, 0")
        key = self.entry_alloca("i32")
        key_address = self.value(f"ptrtoint ptr {key} to i64")

        def args(slot: str) -> str:
            self.emit(f"store i32 {self.value(f'trunc i64 {slot} to i32')}, ptr {key}")
            value = self.value(f"ptrtoint ptr {self.element_ptr(layout.value_base, slot, layout.stride)} to i64")
            return f"i64 {handle}, i64 {key_address}, i64 {value}, i64 {ctx}, i64 0"
        self.callback_loop(callback, index, str(layout.max_entries), refused, str(-EINVAL), args)

    def callback_loop(self, callback: int, index: int, count: str, refused: str, error: str,
                      args: Callable[[str], str]) -> None:
        """r0 = error where `refused` holds; else call the callback with args(i) for i < count
        until it returns 1, and r0 = the calls made (bpf_loop and for_each_map_elem inlined)."""
        no, head, body, stopped, finished, done = (
            self.unique(f"loop_{part}") for part in ("refused", "head", "body", "stopped", "finished", "done"))
        before = self.unique("loop_entry")
        self.emit(f"br label %{before}")
        self.lines.append(f"{before}:")
        self.emit(f"br i1 {refused}, label %{no}, label %{head}")
        self.lines.append(f"{no}:")
        self.emit(f"br label %{done}")
        self.lines.append(f"{head}:")
        at, following, latch = self.tmp(), self.tmp(), self.unique("loop_latch")
        self.emit(f"{at} = phi i64 [ 0, %{before} ], [ {following}, %{latch} ]")
        self.emit(f"br i1 {self.value(f'icmp ult i64 {at}, {count}')}, label %{body}, label %{finished}")
        self.lines.append(f"{body}:")
        stop = self.call_local(callback, index, args(at))
        self.emit(f"br label %{latch}")
        self.lines.append(f"{latch}:")
        self.emit(f"{following} = add i64 {at}, 1")
        self.emit(f"br i1 {self.value(f'icmp eq i64 {stop}, 1')}, label %{stopped}, label %{head}")
        self.lines.append(f"{stopped}:")
        self.emit(f"br label %{done}")
        self.lines.append(f"{finished}:")
        self.emit(f"br label %{done}")
        self.lines.append(f"{done}:")
        self.set_reg(0, self.value(f"phi i64 [ {error}, %{no} ], [ {following}, %{stopped} ], "
                                   f"[ {count}, %{finished} ]"))

    def entry_alloca(self, ty: str) -> str:
        """A slot of `ty` allocated in the function's entry block (where mem2reg and the frame
        layout expect every alloca)."""
        name = self.unique("%slot")
        self.lines.insert(self.lines.index("entry:") + 1, f"  {name} = alloca {ty}")
        return name

    def call_local(self, start: int, index: int, args: str | None = None) -> str:
        """Call the BPF function at `start` with r1-r5 (or `args`); r0 = its result, returned."""
        call = f"call i64 @bpf_f{start}(ptr %env, {args or self.args()})"
        if not self.counts_depth:
            result = self.value(call)
            self.set_address(0, result)
            if self.may_stop:
                self.propagate_stop()
            return result
        depth_ptr = self.env_field(FIELD_DEPTH)
        depth = self.value(f"load i64, ptr {depth_ptr}")
        self.return_if(self.value(f"icmp uge i64 {depth}, {MAX_CALL_FRAMES - 1}"), Status.CALL_DEPTH, index)
        self.emit(f"store i64 {self.value(f'add i64 {depth}, 1')}, ptr {depth_ptr}")
        result = self.value(call)
        self.set_address(0, result)
        self.emit(f"store i64 {depth}, ptr {depth_ptr}")
        self.propagate_stop()
        return result

    def lower_call(self, insn: Insn, index: int) -> None:
        self.store_trips()  # the callee, or a helper's callback, counts on
        if insn.source == isa.X:
            self.lower_callx(insn, index)
        elif insn.src == isa.CALL_LOCAL:
            self.call_local(insn.call_target(index), index)
        else:
            self.call_helper(insn.imm, index)
        if not self.terminated:
            self.load_trips()

    def lower_callx(self, insn: Insn, index: int) -> None:
        """Dispatch on the target value: helper ids and BPF function tokens, anything else fails."""
        target = self.reg(insn.callx_reg)
        helpers = [h.id for h in self.env.helpers] if self.env.callx_reaches_helpers else []
        functions = sorted(self.facts.callx_sites[index]) if index in self.facts.callx_sites \
            else self.env.callx_targets(self.facts.function_starts)
        cases = [f"i64 {h}, label %cx{index}h{h}" for h in helpers]
        cases += [f"i64 {_const(self.env.token_of(f), 64)}, label %cx{index}f{f}" for f in functions]
        self.emit(f"switch i64 {target}, label %cx{index}bad [ {' '.join(cases)} ]")
        for h in helpers:
            self.lines.append(f"cx{index}h{h}:")
            self.terminated = False
            self.call_helper(h, index)
            self.branch(f"cx{index}done")
        for f in functions:
            self.lines.append(f"cx{index}f{f}:")
            self.terminated = False
            self.call_local(f, index)
            self.branch(f"cx{index}done")
        self.lines.append(f"cx{index}bad:")
        self.fail(Status.BAD_CALLX, index, target)
        self.lines.append(f"cx{index}done:")
        self.terminated = False


# A sandboxed program's access check: inside a live BPF frame, or inside one of the run's regions
# (writable, for a write). Regions are (start, size, writable) u64 triples.
ACCESS_OK = f"""define internal i1 @bpfjit_access_ok(ptr %env, i64 %a, i64 %n, i1 %w) {{
entry:
  %fcp = getelementptr inbounds i64, ptr %env, i64 {FIELD_FRAME_COUNT}
  %fc = load i64, ptr %fcp
  %flim = sub i64 {isa.STACK_SIZE}, %n
  br label %frames
frames:
  %i = phi i64 [ 0, %entry ], [ %i1, %frame_next ]
  %more = icmp ult i64 %i, %fc
  br i1 %more, label %frame, label %regions
frame:
  %fslot = add i64 %i, {FIELD_FRAMES}
  %fp = getelementptr inbounds i64, ptr %env, i64 %fslot
  %lo = load i64, ptr %fp
  %frel = sub i64 %a, %lo
  %fin = icmp ule i64 %frel, %flim
  %i1 = add i64 %i, 1
  br i1 %fin, label %yes, label %frame_next
frame_next:
  br label %frames
regions:
  %rcp = getelementptr inbounds i64, ptr %env, i64 {FIELD_REGION_COUNT}
  %rc = load i64, ptr %rcp
  %rtp = getelementptr inbounds i64, ptr %env, i64 {FIELD_REGIONS}
  %rt = load ptr, ptr %rtp
  br label %scan
scan:
  %j = phi i64 [ 0, %regions ], [ %j1, %next ]
  %more2 = icmp ult i64 %j, %rc
  br i1 %more2, label %region, label %no
region:
  %at = mul i64 %j, 3
  %sp = getelementptr inbounds i64, ptr %rt, i64 %at
  %start = load i64, ptr %sp
  %szp = getelementptr inbounds i64, ptr %sp, i64 1
  %size = load i64, ptr %szp
  %wp = getelementptr inbounds i64, ptr %sp, i64 2
  %writable = load i64, ptr %wp
  %rel = sub i64 %a, %start
  %fits = icmp uge i64 %size, %n
  %lim = sub i64 %size, %n
  %within = icmp ule i64 %rel, %lim
  %inside = and i1 %fits, %within
  %j1 = add i64 %j, 1
  br i1 %inside, label %permission, label %next
permission:
  %ro = icmp eq i64 %writable, 0
  %refused = and i1 %w, %ro
  br i1 %refused, label %next, label %yes
next:
  br label %scan
yes:
  ret i1 true
no:
  ret i1 false
}}
""".splitlines()


def _prog_array(handle: int) -> ProgArray | None:
    """The prog array whose handle this is, else None."""
    found = map_from_handle(handle)
    return found if isinstance(found, ProgArray) else None


def redirect_map_decision(value: Callable[[str], str], key: str, entries: str, values: str,
                          flags: str) -> tuple[str, str]:
    """bpf_redirect_map's decision on a DEVMAP or CPUMAP of `entries` 8-byte slots at `values`, as
    IR made through `value` (which names an instruction's result): (hit, result). A slot is held
    when its first u32 (ifindex, queue size) is not 0 (runtime/maps/devices.py); a hit is a held
    slot or a broadcast, and gives XDP_REDIRECT, a miss the flags' fallback action."""
    inside = value(f"icmp ult i64 {key}, {entries}")
    slot = value(f"select i1 {inside}, i64 {key}, i64 0")  # slot 0 stands in when outside
    first = value(f"load i32, ptr {value(f'getelementptr i64, ptr {values}, i64 {slot}')}")
    present = value(f"and i1 {inside}, {value(f'icmp ne i32 {first}, 0')}")
    broadcast = value(f"and i64 {flags}, {BPF_F_BROADCAST}")
    hit = value(f"or i1 {present}, {value(f'icmp ne i64 {broadcast}, 0')}")
    fallback = value(f"and i64 {flags}, {REDIRECT_FALLBACK_MASK}")
    return hit, value(f"select i1 {hit}, i64 {XDP_REDIRECT}, i64 {fallback}")


def _slot_redirect_map(handle: int) -> Map | None:
    """The DEVMAP or CPUMAP whose handle this is (slots of 8 bytes in native memory), else None."""
    found = map_from_handle(handle)
    return found if found is not None and found.map_type in (MapType.DEVMAP, MapType.CPUMAP) else None


def _percpu_array(handle: int) -> Map | None:
    """The per-CPU array map whose handle this is, else None. Its layout comes from the map
    itself, which is what the helper would find from the same handle at run time
    (Environment.array_map names plain arrays only)."""
    found = map_from_handle(handle)
    return found if found is not None and found.map_type == MapType.PERCPU_ARRAY else None


def lower_program(insns: Sequence[Insn], facts: Facts, env: Environment,
                  sandboxed: bool = False) -> tuple[str, Symbols]:
    """The whole LLVM module (as text) for a checked program, and the names it leaves to bind.
    sandboxed: the variant that spends the run's instruction and time budgets."""
    symbols = Symbols.over([(region.start, region.size) for region in env.regions])
    real = [insn for i, insn in enumerate(insns) if not isa.is_filler(insns, i)]
    counts_depth = any(insn.is_lddw and insn.src == isa.PSEUDO_FUNC for insn in real)
    # In the sandboxed variant any call may spend the budget, and a checked access may fail in
    # any function (a legacy packet load at a header offset too): callers must always look.
    may_stop = sandboxed or counts_depth or not facts.verified or bool(facts.checked_accesses or facts.dead) \
        or facts.trip_limit is not None or any(
        (insn.opcode in (isa.CALL_OP, isa.CALLX_OP) and insn.src != isa.CALL_LOCAL) or is_legacy_load(insn)
        for insn in real)
    parts = MODULE_PROLOGUE + [
        "declare i16 @llvm.bswap.i16(i16)",
        "declare i32 @llvm.bswap.i32(i32)",
        "declare i64 @llvm.bswap.i64(i64)",
        "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)",
        "declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)",
        "",
    ]
    if not facts.verified:
        parts += ACCESS_OK
    for function in facts.functions:
        lowering = _FunctionLowering(insns, function, facts, env, symbols, may_stop, counts_depth, sandboxed)
        parts += lowering.lower() + lowering.module_globals + [""]
    parts += symbols.declarations()
    return "\n".join(parts) + "\n", symbols
