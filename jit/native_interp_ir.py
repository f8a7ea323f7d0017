"""The LLVM IR of the native interpreter: one loop that executes any pre-decoded BPF program.

The loop is written once (here, as IR text) and compiled once per process (jit/native_interp.py);
no program is ever compiled for it. It reads the image jit/native_interp_image.py builds: 8-byte
slots laid out as the kernel's ``struct bpf_insn`` (opcode, dst:4 src:4, off:16, imm:32), with
every ld_imm64 already resolved into its two imm fields, helper calls renumbered into a dense
table of native function pointers, and the few instructions no engine runs turned into a trap.

Shape, as a C interpreter such as uBPF has it: registers in an ``[16 x i64]`` array indexed by the
slot's 4-bit fields, a pc, and one handler block per opcode. Dispatch reads the slot, takes its
opcode and jumps through a 256-entry table: either ``indirectbr`` over a table of
``blockaddress`` es (DISPATCH_INDIRECT) or a ``switch`` that LLVM lowers to a jump table
(DISPATCH_SWITCH). jit/native_interp.py records which one it builds and why.

What keeps the loop short (each measured on the bench's micro-suite, see jit/native_interp.py):

* the dispatch is three machine instructions (load the slot, mask the opcode, jump), because
  every handler decodes the fields it uses itself (_Function.decode). That small block is what
  LLVM's tail duplication copies into the end of every handler, giving each its own predicted
  jump (threaded code); a dispatch that decoded every field was too large to copy, and all
  handlers shared one jump;
* conditional jumps, a plain register move (movsx aside) and division take real branches, not
  selects (_Function.keep_branch): the next instruction's fetch does not wait on a cmov, and one
  division runs instead of both the signed and the unsigned one;
* the fast variant reads the raw program's memory bounds once per run, so a checked access is
  one subtraction and one compare.

BPF-to-BPF calls keep a frame stack in the same native frame: for each of the MAX_CALL_FRAMES
frames a 512-byte BPF stack (zeroed on entry, as the reference interpreter's) and a record of the
caller's r1-r10, its return slot and its may_goto budget. A callee starts with r1-r5 of its
caller and r0, r6-r9 zero; its exit restores the caller's registers but r0
(runtime/interp.py, the oracle).

Two variants are built from this one description:

* ``fast``: for verified programs without a budget. Accesses are unchecked, except those the
  verifier left to the run (Facts.checked_accesses: a raw program's memory, whose size only the run
  knows), which the image marks with a spare addressing mode and which are compared with
  ``[RunEnv.mem_start, + mem_size)`` as the JIT does.
* ``checked``: for unverified programs and runs with a budget. Every load, store and atomic is
  checked by the JIT's ``@bpfjit_access_ok`` (jit/lower.py) against the run's regions and the live
  BPF frames (registered in RunEnv.frames, as the sandboxed JIT's); every instruction spends one
  step of RunEnv.max_steps, and every 1024 steps the watchdog's stop flag is read.

A taken jump, and a conditional jump's fall-through, that the image's loop-edge table marks
counts a loop trip in RunEnv.trips against the image's trip limit (Facts.loop_edges and
trip_limit: raw programs), ending the run with LOOP_BUDGET past it, as the JIT does.

A failed run records its status, instruction and detail in the RunEnv and returns 0, like the JIT;
``raise_for_status`` (runtime/status.py) turns that into the same error. TRAP is this engine's own
status: the image names the reason (kfuncs, unknown helpers), which
the reference interpreter reports at the same instruction.

``bpf_loop`` and ``bpf_for_each_map_elem`` on an array map (their standard implementations, which
the image gives call codes of their own) run as native loops, as the JIT inlines them
(jit/lower.py callback_loop): each call of the callback is a nested interpretation, a recursive
call of the interpreter function with a frame stack of its own and r1-r5 as the kernel passes
them, as the Python helpers' calls back into the interpreter (NativeInterpreter.call_function)
are; so nothing changes but the cost of an iteration (bench/progs/loop_squares.c: 4.2 us
through Python, 20-30 ns here). The callback is found by its token in the
image's function table and the map by its handle in the image's array-map table; a token or a
map not found there (an unverified program's, an inner map) goes to the Python helper, which
reports it. The checked variant hands for_each to the Python helper: the key's native slot is
none of the regions its accesses are checked against.

``bpf_tail_call`` (the standard helper, given a call code of its own) switches to the target's
image from the prog array's image table in the fast variant, from the main function of an
invocation: a musttail call of the interpreter function itself, so the chain runs in one native
frame and stays interpreted, as the JIT's tail call jumps to the target's code (_LoopBuilder.tail_call).

``gotox rX`` jumps to the slot rX holds (an entry of a jump table), once the image's table of
jump-table targets says that slot is one of the gotox's function's (its imm names the set);
any other value traps, with the reference interpreter's error.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Callable

from bpfjit import isa
from bpfjit.runtime.status import (BPF_MAX_LOOPS, FIELD_ACCESS_SIZE, FIELD_FRAME_COUNT, FIELD_FRAMES, FIELD_INSN,
                                   FIELD_MAX_STEPS, FIELD_MEM_SIZE, FIELD_MEM_START, FIELD_REDIRECT_KIND,
                                   FIELD_STACK_TOP, FIELD_STATUS,
                                   FIELD_STEPS, FIELD_STOP, FIELD_TAIL_CALLS, FIELD_TRIPS, FIELD_VALUE, INSN_PENDING,
                                   MAX_CALL_FRAMES, MAX_TAIL_CALLS, MAY_GOTO_BUDGET, SANDBOX_FRAMES, Status)

from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps.native import HEADER_MAX_ENTRIES, HEADER_TYPE, HEADER_VALUE_BASE
from bpfjit.runtime.packet_loads import SKB_DATA, SKB_DATA_END, SKF_LL_OFF
from bpfjit.runtime.run_context import RECORD_CLEARED, RECORD_IFINDEX, RECORD_MAP
from bpfjit.runtime.stdhelpers import REDIRECT_FALLBACK_MASK, REDIRECT_MAP_FLAGS, XDP_ABORTED, redirect_rule

from .lower import ACCESS_OK, redirect_map_decision
from .packet_loads import header_bytes, network_order

DISPATCH_INDIRECT = "indirectbr"
DISPATCH_SWITCH = "switch"
VARIANTS = ("fast", "checked")

TRAP = 0x100  # RunEnv.status of an instruction the image turned into a trap (TRAP_OPCODE)
TRAP_OPCODE = 0x00  # LD|IMM|W: no engine accepts it, so the image may use it for its traps
# The image's call codes (src of a call) for the standard bpf_loop, for_each_map_elem,
# bpf_tail_call, bpf_redirect_map and bpf_redirect (by the program's type: XDP's or the skb
# programs'): the codes after the kernel's (helper 0, BPF function 1, kfunc 2).
CALL_BPF_LOOP, CALL_FOR_EACH_ARRAY, CALL_TAIL = 3, 4, 5
CALL_REDIRECT_MAP, CALL_REDIRECT_XDP, CALL_REDIRECT_SKB = 6, 7, 8
STOPS_ON_ZERO = 1  # helper table flag: a zero result unwinds the run (bpf_conformance's helper 5)
POLL_EVERY = 1024  # steps between two looks at the watchdog's stop flag (checked variant)

# Checked accesses of the fast variant: the image moves them to an addressing mode no program
# may use (the structure check rejects it), so the dispatch itself tells them apart.
CHECKED_MODE = {isa.LDX | isa.MEM: isa.LDX | isa.ABS, isa.LDX | isa.MEMSX: isa.LDX | isa.IND,
                isa.ST | isa.MEM: isa.ST | isa.ABS, isa.STX | isa.MEM: isa.STX | isa.ABS,
                isa.STX | isa.ATOMIC: isa.STX | isa.IND}

# The image's fields (jit/native_interp_image.py ImageHeader), each 8 bytes.
(IMAGE_CODE, IMAGE_HELPERS, IMAGE_HELPER_IDS, IMAGE_HELPER_ID_COUNT, IMAGE_FUNCTIONS, IMAGE_FUNCTION_COUNT,
 IMAGE_BRANCHES, IMAGE_GOTOX_TARGETS, IMAGE_SLOT_COUNT, IMAGE_TOKEN_FUNCTION_COUNT, IMAGE_ARRAY_MAPS,
 IMAGE_ARRAY_MAP_COUNT, IMAGE_PROG_ARRAYS, IMAGE_PROG_ARRAY_COUNT, IMAGE_TRIP_LIMIT, IMAGE_LOOP_EDGES,
 IMAGE_CONTEXT_PROVEN) = range(17)
# The image's loop-edge table: one byte per slot, these bits set where the jump there counts a
# loop trip (Facts.loop_edges) when it is taken, or when it falls through.
TAKEN_TRIP, FALL_THROUGH_TRIP = 1, 2
# A frame record: the caller's r1-r10 (slots 0-9), its return slot, its may_goto budget.
RECORD_WORDS = 16
RECORD_RETURN, RECORD_MAY_GOTO = 10, 11

_WIDTH = {isa.B: 8, isa.H: 16, isa.W: 32, isa.DW: 64}
_BINOPS = {isa.ADD: "add", isa.SUB: "sub", isa.MUL: "mul", isa.OR: "or", isa.AND: "and", isa.XOR: "xor",
           isa.LSH: "shl", isa.RSH: "lshr", isa.ARSH: "ashr"}
_PREDICATES = {isa.JEQ: "eq", isa.JNE: "ne", isa.JGT: "ugt", isa.JGE: "uge", isa.JLT: "ult", isa.JLE: "ule",
               isa.JSGT: "sgt", isa.JSGE: "sge", isa.JSLT: "slt", isa.JSLE: "sle"}
_RMW = {isa.ADD: "add", isa.OR: "or", isa.AND: "and", isa.XOR: "xor"}


@dataclass
class _Function:
    """One interpreter function being written: its lines and a counter for fresh names."""
    checked: bool
    dispatch: str
    lines: list[str] = field(default_factory=list)
    counter: int = 0
    handlers: dict[int, str] = field(default_factory=dict)  # opcode -> label
    # The current handler's fields of its instruction (names of i64 values; decode() sets them).
    dst: str = ""
    src: str = ""
    off: str = ""  # sign-extended
    imm: str = ""  # sign-extended
    imm_field: str = ""  # the upper 32 bits of the slot, zero-extended

    def decode(self, tag: str) -> None:
        """Decode the fields of %insn at the top of a handler, under names of its own. Each handler
        decodes for itself, and LLVM drops what it does not use: the dispatch stays a load, a mask
        and a jump, instead of decoding every field for every instruction."""
        self.dst, self.src, self.off, self.imm, self.imm_field = (f"%{name}.{tag}"
                                                                  for name in ("dst", "src", "off", "imm", "imm_field"))
        self.emit(f"{self.dst} = and i64 {self.value('lshr i64 %insn, 8')}, 15")
        self.emit(f"{self.src} = and i64 {self.value('lshr i64 %insn, 12')}, 15")
        off16 = self.value(f"trunc i64 {self.value('lshr i64 %insn, 16')} to i16")
        self.emit(f"{self.off} = sext i16 {off16} to i64")
        self.emit(f"{self.imm_field} = lshr i64 %insn, 32")
        self.emit(f"{self.imm} = sext i32 {self.value(f'trunc i64 {self.imm_field} to i32')} to i64")

    @property
    def name(self) -> str:
        return f"@bpfjit_interp_{'checked' if self.checked else 'fast'}"

    def emit(self, line: str) -> None:
        self.lines.append(f"  {line}")

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")

    def value(self, expression: str) -> str:
        self.counter += 1
        name = f"%v{self.counter}"
        self.emit(f"{name} = {expression}")
        return name

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def env_field(self, index: int) -> str:
        return self.value(f"getelementptr inbounds i64, ptr %env, i64 {index}")

    def image_word(self, index: int, ty: str = "ptr") -> str:
        """Field `index` of the image header (IMAGE_*), loaded as ty."""
        return self.value(f"load {ty}, ptr {self.value(f'getelementptr inbounds i64, ptr %img, i64 {index}')}")

    def reg_ptr(self, reg: str) -> str:
        return self.value(f"getelementptr inbounds [16 x i64], ptr %regs, i64 0, i64 {reg}")

    def load_reg(self, reg: str) -> str:
        return self.value(f"load i64, ptr {self.reg_ptr(reg)}")

    def store_reg(self, reg: str, value: str) -> None:
        self.emit(f"store i64 {value}, ptr {self.reg_ptr(reg)}")

    def goto_pc(self, pc: str) -> None:
        self.emit(f"store i64 {pc}, ptr %pc_slot")
        self.emit("br label %dispatch")

    def next_pc(self, slots: int = 1) -> None:
        self.goto_pc(self.value(f"add i64 %pc, {slots}"))

    def fail(self, status: int, value: str | None = None, at: str = "%pc") -> None:
        """End the run: record status, the instruction (at) and the detail; return 0."""
        self.emit(f"store i64 {status}, ptr {self.env_field(FIELD_STATUS)}")
        self.emit(f"store i64 {at}, ptr {self.env_field(FIELD_INSN)}")
        if value is not None:
            self.emit(f"store i64 {value}, ptr {self.env_field(FIELD_VALUE)}")
        self.emit("store i64 0, ptr %ret_slot")
        self.emit("br label %leave")

    def branch_if(self, condition: str, weight_taken: bool | None = None) -> tuple[str, str]:
        """Split on condition; return (taken label, fall-through label) and continue in neither."""
        taken, other = self.fresh("yes"), self.fresh("no")
        prof = ""
        if weight_taken is not None:
            weights = "1, i32 2000" if not weight_taken else "2000, i32 1"
            prof = f", !prof !{{!\"branch_weights\", i32 {weights}}}"
        self.emit(f"br i1 {condition}, label %{taken}, label %{other}{prof}")
        return taken, other

    def keep_branch(self) -> None:
        """An empty asm statement at the top of one side of a branch: LLVM may not speculate it,
        so it cannot fold the two sides into a select, and the branch stays a predicted jump."""
        self.emit('call void asm sideeffect "", ""()')

    # --- memory ---------------------------------------------------------------------------------
    def address(self, base: str) -> str:
        """[base + off] as an integer (base: 'dst' or 'src')."""
        return self.value(f"add i64 {self.load_reg(getattr(self, base))}, {self.off}")

    def checked_pointer(self, address: str, bits: int, write: bool, raw_check: bool) -> str:
        """A pointer for an access of bits/8 bytes at address, checked first where the variant
        asks: everything in the checked variant, the raw program's memory for a marked access."""
        size = bits // 8
        if self.checked:
            ok = self.value(f"call i1 @bpfjit_access_ok(ptr %env, i64 {address}, i64 {size}, i1 {int(write)})")
        elif raw_check:
            ok = self.value(f"icmp ult i64 {self.value(f'sub i64 {address}, %mem_start')}, %mem_limit{size}")
        else:
            return self.value(f"inttoptr i64 {address} to ptr")
        fine, bad = self.branch_if(ok, weight_taken=True)
        self.label(bad)
        self.emit(f"store i64 {size}, ptr {self.env_field(FIELD_ACCESS_SIZE)}")
        self.fail(int(Status.BAD_WRITE if write else Status.BAD_READ), address)
        self.label(fine)
        return self.value(f"inttoptr i64 {address} to ptr")


class _LoopBuilder:
    """Writes one variant of the interpreter function (and its dispatch table)."""

    def __init__(self, checked: bool, dispatch: str):
        self.f = _Function(checked, dispatch)

    def build(self) -> list[str]:
        f = self.f
        handlers = self.handler_writers()
        f.handlers.update((opcode, f"h{opcode:02x}") for opcode in sorted(handlers))
        self.prologue()
        self.dispatch_block()
        for opcode, label in f.handlers.items():
            f.label(label)
            f.decode(label)
            handlers[opcode](opcode)
        self.shared_blocks()
        header = [f"define internal i64 {f.name}(ptr %img, ptr %env, i64 %start, i64 %a1, i64 %a2, i64 %a3, "
                  "i64 %a4, i64 %a5) {"]
        return header + f.lines + ["}", ""] + self.table()

    # --- entry, dispatch, exit --------------------------------------------------------------------
    def prologue(self) -> None:
        f = self.f
        f.label("entry")
        f.emit("%regs = alloca [16 x i64], align 16")
        f.emit(f"%records = alloca [{MAX_CALL_FRAMES * RECORD_WORDS} x i64], align 16")
        f.emit(f"%stacks = alloca [{MAX_CALL_FRAMES * isa.STACK_SIZE} x i8], align 16")
        f.emit("%pc_slot = alloca i64")
        f.emit("%depth_slot = alloca i64")
        f.emit("%ret_slot = alloca i64")
        f.emit("%steps_slot = alloca i64")
        if not f.checked:
            f.emit("%key_slot = alloca i32")  # for_each's key, which its callback reads
        f.emit(f"%code = load ptr, ptr {f.value(f'getelementptr inbounds i64, ptr %img, i64 {IMAGE_CODE}')}")
        for reg in range(16):
            value = f"%a{reg}" if 1 <= reg <= 5 else "0"
            f.store_reg(str(reg), value)
        f.emit(f"call void @llvm.memset.p0.i64(ptr %stacks, i8 0, i64 {isa.STACK_SIZE}, i1 false)")
        f.store_reg("10", f.value(f"ptrtoint ptr {f.value(f'getelementptr i8, ptr %stacks, i64 {isa.STACK_SIZE}')} "
                                  "to i64"))
        f.emit(f"store i64 {MAY_GOTO_BUDGET}, ptr {self.record_field('0', RECORD_MAY_GOTO)}")
        f.emit("store i64 %start, ptr %pc_slot")
        f.emit("store i64 0, ptr %depth_slot")
        self.trip_limit, self.loop_edges = f.image_word(IMAGE_TRIP_LIMIT, "i64"), f.image_word(IMAGE_LOOP_EDGES)
        self.counts_trips = f.value(f"icmp ne ptr {self.loop_edges}, null")  # no table: no loop edge
        if not f.checked:
            self.memory_limits()
        else:
            f.emit(f"%frames_at_entry = load i64, ptr {f.env_field(FIELD_FRAME_COUNT)}")
            f.emit(f"store i64 {f.value(f'load volatile i64, ptr {f.env_field(FIELD_STEPS)}')}, ptr %steps_slot")
            self.register_frame("%frames_at_entry", "%stacks", "%start")
        f.emit("br label %dispatch")

    def memory_limits(self) -> None:
        """Fast variant: the raw program's memory, read once per run (nothing changes it during
        one): an access of n bytes at a is inside it iff a - %mem_start < %mem_limit<n>, that is
        mem_size - n + 1, or 0 when n bytes do not fit at all. One compare per checked access."""
        f = self.f
        f.emit(f"%mem_start = load i64, ptr {f.env_field(FIELD_MEM_START)}")
        length = f.value(f"load i64, ptr {f.env_field(FIELD_MEM_SIZE)}")
        for size in (1, 2, 4, 8):
            fits = f.value(f"icmp uge i64 {length}, {size}")
            f.emit(f"%mem_limit{size} = select i1 {fits}, i64 {f.value(f'sub i64 {length}, {size - 1}')}, i64 0")

    def register_frame(self, count: str, base_ptr: str, at: str) -> None:
        """Checked variant: list a BPF stack in RunEnv.frames (CALL_DEPTH at `at` when the list is
        full: callbacks nest frames of several invocations there)."""
        f = self.f
        full, room = f.branch_if(f.value(f"icmp uge i64 {count}, {SANDBOX_FRAMES}"), weight_taken=False)
        f.label(full)
        f.fail(int(Status.CALL_DEPTH), at=at)
        f.label(room)
        slot = f.value(f"add i64 {count}, {FIELD_FRAMES}")
        f.emit(f"store i64 {f.value(f'ptrtoint ptr {base_ptr} to i64')}, "
               f"ptr {f.value(f'getelementptr inbounds i64, ptr %env, i64 {slot}')}")
        f.emit(f"store i64 {f.value(f'add i64 {count}, 1')}, ptr {f.env_field(FIELD_FRAME_COUNT)}")

    def record_field(self, depth: str, word: int) -> str:
        index = self.f.value(f"add i64 {self.f.value(f'mul i64 {depth}, {RECORD_WORDS}')}, {word}")
        return self.f.value(f"getelementptr inbounds i64, ptr %records, i64 {index}")

    def dispatch_block(self) -> None:
        f = self.f
        f.label("dispatch")
        f.emit("%pc = load i64, ptr %pc_slot")
        if f.checked:
            self.spend_step()
        f.emit("%slot_ptr = getelementptr inbounds i64, ptr %code, i64 %pc")
        f.emit("%insn = load i64, ptr %slot_ptr")
        f.emit("%opcode = and i64 %insn, 255")
        if f.dispatch == DISPATCH_INDIRECT:
            f.emit(f"%target_ptr = getelementptr inbounds [256 x ptr], ptr {self.table_name}, i64 0, i64 %opcode")
            f.emit("%target = load ptr, ptr %target_ptr")
            labels = ", ".join(f"label %{label}" for label in dict.fromkeys(self.table_labels()))
            f.emit(f"indirectbr ptr %target, [{labels}]")
        else:
            cases = " ".join(f"i64 {opcode}, label %{label}" for opcode, label in f.handlers.items())
            f.emit(f"switch i64 %opcode, label %trap [ {cases} ]")

    def spend_step(self) -> None:
        """Checked variant: one step of the budget per instruction; the stop flag now and then."""
        f = self.f
        steps = f.value(f"add i64 {f.value('load i64, ptr %steps_slot')}, 1")
        f.emit(f"store i64 {steps}, ptr %steps_slot")
        budget = f.value(f"load i64, ptr {f.env_field(FIELD_MAX_STEPS)}")
        over, within = f.branch_if(f.value(f"icmp ugt i64 {steps}, {budget}"), weight_taken=False)
        f.label(over)
        f.fail(int(Status.STEP_BUDGET))
        f.label(within)
        poll, go_on = f.branch_if(f.value(f"icmp eq i64 {f.value(f'and i64 {steps}, {POLL_EVERY - 1}')}, 0"),
                                  weight_taken=False)
        f.label(poll)
        stop = f.value(f"load volatile i64, ptr {f.env_field(FIELD_STOP)}")
        stopped, running = f.branch_if(f.value(f"icmp ne i64 {stop}, 0"), weight_taken=False)
        f.label(stopped)
        f.fail(int(Status.TIME_BUDGET))
        f.label(running)
        f.emit(f"br label %{go_on}")
        f.label(go_on)

    @property
    def table_name(self) -> str:
        return f"{self.f.name}_table"

    def table_labels(self) -> list[str]:
        return [self.f.handlers.get(opcode, "trap") for opcode in range(256)]

    def table(self) -> list[str]:
        if self.f.dispatch != DISPATCH_INDIRECT:
            return []
        entries = ", ".join(f"ptr blockaddress({self.f.name}, %{label})" for label in self.table_labels())
        return [f"{self.table_name} = internal constant [256 x ptr] [{entries}]", ""]

    def shared_blocks(self) -> None:
        """The blocks handlers jump to: trap, local call, helper call, and the one way out."""
        f = self.f
        f.label("trap")
        f.fail(TRAP)
        self.local_call()
        self.helper_call()
        f.label("leave")
        if f.checked:
            f.emit(f"store volatile i64 {f.value('load i64, ptr %steps_slot')}, ptr {f.env_field(FIELD_STEPS)}")
            f.emit(f"store i64 %frames_at_entry, ptr {f.env_field(FIELD_FRAME_COUNT)}")
        f.emit(f"ret i64 {f.value('load i64, ptr %ret_slot')}")

    def local_call(self) -> None:
        """Enter the function at %call_target: save the caller's registers, open a zeroed frame."""
        f = self.f
        f.label("call_local")
        f.emit("%call_target = phi i64 " + ", ".join(f"[ {value}, %{block} ]" for value, block in self.call_sources))
        depth = f.value("load i64, ptr %depth_slot")
        inner = f.value(f"add i64 {depth}, 1")
        deep, fine = f.branch_if(f.value(f"icmp uge i64 {inner}, {MAX_CALL_FRAMES}"), weight_taken=False)
        f.label(deep)
        f.fail(int(Status.CALL_DEPTH))
        f.label(fine)
        record = self.record_field(depth, 0)
        f.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {record}, ptr {f.reg_ptr('1')}, i64 80, i1 false)")
        f.emit(f"store i64 {f.value('add i64 %pc, 1')}, ptr {self.record_field(depth, RECORD_RETURN)}")
        f.emit(f"store i64 {MAY_GOTO_BUDGET}, ptr {self.record_field(inner, RECORD_MAY_GOTO)}")
        base = f.value(f"getelementptr inbounds i8, ptr %stacks, i64 {f.value(f'mul i64 {inner}, {isa.STACK_SIZE}')}")
        f.emit(f"call void @llvm.memset.p0.i64(ptr {base}, i8 0, i64 {isa.STACK_SIZE}, i1 false)")
        if f.checked:
            self.register_frame(f.value(f"load i64, ptr {f.env_field(FIELD_FRAME_COUNT)}"), base, "%pc")
        for reg in (0, 6, 7, 8, 9):
            f.store_reg(str(reg), "0")
        top = f.value(f"getelementptr inbounds i8, ptr {base}, i64 {isa.STACK_SIZE}")
        f.store_reg("10", f.value(f"ptrtoint ptr {top} to i64"))
        f.emit(f"store i64 {inner}, ptr %depth_slot")
        f.goto_pc("%call_target")

    def helper_call(self) -> None:
        """Call entry %helper_index of the helper table with r1-r5; r0 = its result."""
        f = self.f
        f.label("call_helper")
        f.emit("%helper_index = phi i64 " + ", ".join(f"[ {v}, %{b} ]" for v, b in self.helper_sources))
        table = f.image_word(IMAGE_HELPERS)
        entry = f.value(f"getelementptr inbounds i64, ptr {table}, i64 {f.value('mul i64 %helper_index, 2')}")
        function = f.value(f"load ptr, ptr {entry}")
        flags = f.value(f"load i64, ptr {f.value(f'getelementptr inbounds i64, ptr {entry}, i64 1')}")
        args = ", ".join(f"i64 {f.load_reg(str(reg))}" for reg in range(1, 6))
        result = self.spending_call(f"call i64 {function}({args})")
        f.store_reg("0", result)
        stops = f.value(f"icmp ne i64 {f.value(f'and i64 {flags}, {STOPS_ON_ZERO}')}, 0")
        unwind = f.value(f"and i1 {stops}, {f.value(f'icmp eq i64 {result}, 0')}")
        unwound, going = f.branch_if(unwind, weight_taken=False)
        f.label(unwound)
        f.emit(f"store i64 {int(Status.UNWOUND)}, ptr {f.env_field(FIELD_STATUS)}")
        f.emit("store i64 0, ptr %ret_slot")
        f.emit("br label %leave")
        f.label(going)
        status = f.value(f"load volatile i64, ptr {f.env_field(FIELD_STATUS)}")
        stopped, fine = f.branch_if(f.value(f"icmp ne i64 {status}, 0"), weight_taken=False)
        f.label(stopped)
        # A failure the helper reported is placed here; one a callback of it placed stays put.
        insn_ptr = f.env_field(FIELD_INSN)
        placed = f.value(f"load i64, ptr {insn_ptr}")
        pending = f.value(f"icmp eq i64 {placed}, {INSN_PENDING - (1 << 64)}")
        f.emit(f"store i64 {f.value(f'select i1 {pending}, i64 %pc, i64 {placed}')}, ptr {insn_ptr}")
        f.emit("store i64 0, ptr %ret_slot")
        f.emit("br label %leave")
        f.label(fine)
        f.next_pc()

    def spending_call(self, call: str) -> str:
        """Make a call that may run BPF code (a helper's callback, a nested interpretation): in
        the checked variant it spends the same step budget, kept in the RunEnv meanwhile."""
        f = self.f
        if f.checked:
            f.emit(f"store volatile i64 {f.value('load i64, ptr %steps_slot')}, ptr {f.env_field(FIELD_STEPS)}")
        result = f.value(call)
        if f.checked:
            f.emit(f"store i64 {f.value(f'load volatile i64, ptr {f.env_field(FIELD_STEPS)}')}, ptr %steps_slot")
        return result

    # --- handlers --------------------------------------------------------------------------------
    def handler_writers(self) -> dict:
        writers = {}
        for cls in (isa.ALU, isa.ALU64):
            for op in (isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.OR, isa.AND, isa.LSH, isa.RSH, isa.NEG, isa.MOD,
                       isa.XOR, isa.MOV, isa.ARSH, isa.END):
                for source in (isa.K, isa.X):
                    writers[cls | op | source] = self.alu
        for cls in (isa.JMP, isa.JMP32):
            for op in (*_PREDICATES, isa.JSET):
                for source in (isa.K, isa.X):
                    writers[cls | op | source] = self.conditional_jump
        writers.update({isa.JA_OP: self.ja, isa.GOTOL_OP: self.ja, isa.GOTOX_OP: self.gotox,
                        isa.MAY_GOTO_OP: self.may_goto, isa.CALL_OP: self.call, isa.CALLX_OP: self.callx,
                        isa.EXIT_OP: self.exit, isa.LDDW: self.lddw})
        for size in (isa.B, isa.H, isa.W):
            for mode in (isa.ABS, isa.IND):
                writers[isa.LD | mode | size] = self.legacy_load
        for size in (isa.B, isa.H, isa.W, isa.DW):
            for mode, writer in ((isa.LDX | isa.MEM, self.ldx), (isa.ST | isa.MEM, self.st),
                                 (isa.STX | isa.MEM, self.stx), (isa.STX | isa.ATOMIC, self.atomic)):
                writers[mode | size] = writer
                writers[CHECKED_MODE[mode] | size] = writer
            if size != isa.DW:
                writers[isa.LDX | isa.MEMSX | size] = self.ldx
                writers[CHECKED_MODE[isa.LDX | isa.MEMSX] | size] = self.ldx
        self.call_sources: list[tuple[str, str]] = []
        self.helper_sources: list[tuple[str, str]] = []
        return writers

    def alu(self, opcode: int) -> None:
        f = self.f
        op, bits = opcode & 0xF0, 64 if opcode & 0x07 == isa.ALU64 else 32
        ty = f"i{bits}"
        d64 = f.load_reg(f.dst)
        if op == isa.END:
            result = self.byte_swap(opcode, d64)
            f.store_reg(f.dst, result)
            f.next_pc()
            return
        s64 = f.load_reg(f.src) if opcode & isa.X else f.imm
        d, s = (d64, s64) if bits == 64 else (f.value(f"trunc i64 {d64} to i32"), f.value(f"trunc i64 {s64} to i32"))
        if op == isa.NEG:
            result = f.value(f"sub {ty} 0, {d}")
        elif op == isa.MOV:
            result = self.move(opcode, s, s64, ty)
        elif op in (isa.DIV, isa.MOD):
            result = self.divide(op, d, s, ty)
        elif op in (isa.LSH, isa.RSH, isa.ARSH):
            result = f.value(f"{_BINOPS[op]} {ty} {d}, {f.value(f'and {ty} {s}, {bits - 1}')}")
        else:
            result = f.value(f"{_BINOPS[op]} {ty} {d}, {s}")
        f.store_reg(f.dst, result if bits == 64 else f.value(f"zext i32 {result} to i64"))
        f.next_pc()

    def move(self, opcode: int, s: str, s64: str, ty: str) -> str:
        """mov, and movsx (off 8/16/32 of a register move: the source's low bits sign-extended).

        A register move is the commonest instruction: a plain one (off 0) branches past the
        sign extensions instead of paying their selects."""
        f = self.f
        if not opcode & isa.X:
            return s
        sign_extend, plain = f.branch_if(f.value(f"icmp ne i64 {f.off}, 0"))
        f.label(plain)
        f.store_reg(f.dst, s64 if ty == "i64" else f.value(f"zext i32 {s} to i64"))
        f.next_pc()
        f.label(sign_extend)
        f.keep_branch()
        result = s
        for width in (8, 16, 32):
            narrow = f.value(f"trunc i64 {s64} to i{width}")
            extended = f.value(f"sext i{width} {narrow} to {ty}") if ty != f"i{width}" else narrow
            result = f.value(f"select i1 {f.value(f'icmp eq i64 {f.off}, {width}')}, {ty} {extended}, {ty} {result}")
        return result

    def divide(self, op: int, d: str, s: str, ty: str) -> str:
        """BPF division: by zero gives 0 (div) or dst (mod); signed (off 1) truncates toward zero,
        and INT_MIN / -1 wraps to INT_MIN with remainder 0. LLVM's UB cases never execute.

        Branches, not selects: exactly one division runs (a 64-bit divide costs tens of cycles,
        and LLVM computes both sides of a select)."""
        f = self.f
        name = "div" if op == isa.DIV else "rem"
        zero = f.value(f"icmp eq {ty} {s}, 0")
        signed = f.value(f"icmp eq i64 {f.off}, 1")
        minus_one = f.value(f"and i1 {signed}, {f.value(f'icmp eq {ty} {s}, -1')}")
        special, divide = f.branch_if(f.value(f"or i1 {zero}, {minus_one}"), weight_taken=False)
        join = f.fresh("divided")
        f.label(special)
        by_minus_one = f.value(f"sub {ty} 0, {d}") if op == isa.DIV else "0"
        special_result = f.value(f"select i1 {zero}, {ty} {'0' if op == isa.DIV else d}, {ty} {by_minus_one}")
        f.emit(f"br label %{join}")
        f.label(divide)
        signed_block, unsigned_block = f.branch_if(signed)
        results = []
        for block, kind in ((signed_block, "s"), (unsigned_block, "u")):
            f.label(block)
            results.append((f.value(f"{kind}{name} {ty} {d}, {s}"), block))
            f.emit(f"br label %{join}")
        f.label(join)
        incoming = ", ".join(f"[ {value}, %{block} ]" for value, block in [(special_result, special), *results])
        return f.value(f"phi {ty} {incoming}")

    def byte_swap(self, opcode: int, d: str) -> str:
        """le (ALU, K): a truncation to imm bits on x86; be and bswap: the low imm bits swapped."""
        f = self.f
        results = []
        for width in (16, 32, 64):
            narrow = d if width == 64 else f.value(f"trunc i64 {d} to i{width}")
            if opcode & 0x07 == isa.ALU and not opcode & isa.X:
                value = narrow
            else:
                value = f.value(f"call i{width} @llvm.bswap.i{width}(i{width} {narrow})")
            results.append(value if width == 64 else f.value(f"zext i{width} {value} to i64"))
        wide = f.value(f"select i1 {f.value(f'icmp eq i64 {f.imm}, 32')}, i64 {results[1]}, i64 {results[2]}")
        return f.value(f"select i1 {f.value(f'icmp eq i64 {f.imm}, 16')}, i64 {results[0]}, i64 {wide}")

    def conditional_jump(self, opcode: int) -> None:
        f = self.f
        d = f.load_reg(f.dst)
        s = f.load_reg(f.src) if opcode & isa.X else f.imm
        ty = "i64"
        if opcode & 0x07 == isa.JMP32:
            d, s, ty = f.value(f"trunc i64 {d} to i32"), f.value(f"trunc i64 {s} to i32"), "i32"
        op = opcode & 0xF0
        if op == isa.JSET:
            taken = f.value(f"icmp ne {ty} {f.value(f'and {ty} {d}, {s}')}, 0")
        else:
            taken = f.value(f"icmp {_PREDICATES[op]} {ty} {d}, {s}")
        self.jump_if(taken, f.off)

    def jump_if(self, taken: str, offset: str) -> None:
        """Go to pc + 1 + offset when taken, else to pc + 1, by a real branch (keep_branch): a
        cmov would make the next instruction's fetch wait for the comparison, where a predicted
        branch lets the loop run ahead."""
        f = self.f
        after = f.value("add i64 %pc, 1")
        if taken == "true":
            self.jump_to(f.value(f"add i64 {after}, {offset}"))
            return
        yes, no = f.branch_if(taken)
        f.label(yes)
        f.keep_branch()
        self.jump_to(f.value(f"add i64 {after}, {offset}"))
        f.label(no)
        self.count_trip(FALL_THROUGH_TRIP)
        f.goto_pc(after)

    def jump_to(self, target: str) -> None:
        """A taken jump to slot `target`."""
        self.count_trip(TAKEN_TRIP)
        self.f.goto_pc(target)

    def count_trip(self, edge: int) -> None:
        """Where the image's loop-edge table marks this edge of the jump at %pc, count a loop
        trip of the run, and end it with LOOP_BUDGET past the image's trip limit. An image without
        a table (a typed program's) branches past on a value fixed for the run: no load per jump."""
        f = self.f
        table, plain = f.branch_if(self.counts_trips, weight_taken=False)
        f.label(table)
        flags = f.value(f"load i8, ptr {f.value(f'getelementptr inbounds i8, ptr {self.loop_edges}, i64 %pc')}")
        counted, uncounted = f.branch_if(f.value(f"icmp ne i8 {f.value(f'and i8 {flags}, {edge}')}, 0"),
                                         weight_taken=False)
        f.label(uncounted)
        f.emit(f"br label %{plain}")
        f.label(counted)
        trips_ptr = f.env_field(FIELD_TRIPS)
        trips = f.value(f"add i64 {f.value(f'load i64, ptr {trips_ptr}')}, 1")
        f.emit(f"store i64 {trips}, ptr {trips_ptr}")
        over, within = f.branch_if(f.value(f"icmp ugt i64 {trips}, {self.trip_limit}"), weight_taken=False)
        f.label(over)
        f.fail(int(Status.LOOP_BUDGET), self.trip_limit)
        f.label(within)
        f.emit(f"br label %{plain}")
        f.label(plain)

    def ja(self, opcode: int) -> None:
        """ja (off), gotol (imm), and the static-branch flavours (src != 0): their site's byte in
        the image's branch table says whether they jump now."""
        f = self.f
        if opcode == isa.GOTOL_OP:
            self.jump_if("true", f.imm)
            return
        keyed, plain = f.branch_if(f.value(f"icmp ne i64 {f.src}, 0"), weight_taken=False)
        f.label(plain)
        self.jump_if("true", f.off)
        f.label(keyed)
        table = f.image_word(IMAGE_BRANCHES)
        byte = f.value(f"load volatile i8, ptr {f.value(f'getelementptr inbounds i8, ptr {table}, i64 %pc')}")
        self.jump_if(f.value(f"icmp ne i8 {byte}, 0"), f.off)

    def gotox(self, opcode: int) -> None:
        """gotox rX: to the slot rX holds, if the image's target table gives that slot the set
        this gotox names in its imm (the targets of its function's jump tables)."""
        f = self.f
        target = f.load_reg(f.dst)
        inside = f.value(f"icmp ult i64 {target}, {f.image_word(IMAGE_SLOT_COUNT, 'i64')}")
        slot = f.value(f"select i1 {inside}, i64 {target}, i64 0")
        owners = f.image_word(IMAGE_GOTOX_TARGETS)
        owner = f.value(f"load i32, ptr {f.value(f'getelementptr inbounds i32, ptr {owners}, i64 {slot}')}")
        named = f.value(f"icmp eq i64 {f.value(f'zext i32 {owner} to i64')}, {f.imm_field}")
        go, bad = f.branch_if(f.value(f"and i1 {inside}, {named}"), weight_taken=True)
        f.label(bad)
        f.fail(TRAP)
        f.label(go)
        self.jump_to(target)

    def may_goto(self, opcode: int) -> None:
        """may_goto: falls through while this frame's budget lasts, then branches."""
        f = self.f
        budget_ptr = self.record_field(f.value("load i64, ptr %depth_slot"), RECORD_MAY_GOTO)
        left = f.value(f"load i64, ptr {budget_ptr}")
        spent = f.value(f"icmp eq i64 {left}, 0")
        less = f.value(f"sub i64 {left}, 1")
        f.emit(f"store i64 {f.value(f'select i1 {spent}, i64 0, i64 {less}')}, ptr {budget_ptr}")
        self.jump_if(spent, f.off)

    def call(self, opcode: int) -> None:
        """call: a helper (src 0, imm = its index in the helper table), a BPF function (src 1), or
        the standard bpf_loop, for_each_map_elem or bpf_tail_call (CALL_BPF_LOOP,
        CALL_FOR_EACH_ARRAY, CALL_TAIL; imm = the helper's index)."""
        f = self.f
        local, other = f.branch_if(f.value(f"icmp eq i64 {f.src}, 1"))
        f.label(local)
        target = f.value(f"add i64 {f.value('add i64 %pc, 1')}, {f.imm}")
        self.call_sources.append((target, local))
        f.emit("br label %call_local")
        f.label(other)
        loops, helper = f.branch_if(f.value(f"icmp uge i64 {f.src}, {CALL_BPF_LOOP}"), weight_taken=False)
        f.label(helper)
        self.to_helper(helper)
        f.label(loops)
        bpf_loop, for_each, tail = f.fresh("own_loop"), f.fresh("own_for_each"), f.fresh("own_tail")
        redirect_map, redirect_xdp, redirect_skb = (f.fresh(f"own_{name}") for name in ("redirect_map", "xdp", "skb"))
        f.emit(f"switch i64 {f.src}, label %trap [ i64 {CALL_BPF_LOOP}, label %{bpf_loop} "
               f"i64 {CALL_FOR_EACH_ARRAY}, label %{for_each} i64 {CALL_TAIL}, label %{tail} "
               f"i64 {CALL_REDIRECT_MAP}, label %{redirect_map} i64 {CALL_REDIRECT_XDP}, label %{redirect_xdp} "
               f"i64 {CALL_REDIRECT_SKB}, label %{redirect_skb} ]")
        f.label(bpf_loop)
        self.bpf_loop()
        for block, native in ((for_each, self.for_each_array), (tail, self.tail_call),
                              (redirect_map, self.redirect_map), (redirect_xdp, lambda: self.redirect("XDP")),
                              (redirect_skb, lambda: self.redirect("SCHED_CLS"))):  # any skb type's rule
            f.label(block)
            if f.checked:  # no checked region holds for_each's key; a budgeted run's tail calls unwind
                self.to_helper(block)
            else:
                native()

    def to_helper(self, block: str) -> None:
        """From `block`, call the helper whose index imm holds (through the helper table)."""
        self.helper_sources.append((self.f.imm, block))
        self.f.emit("br label %call_helper")

    def bpf_loop(self) -> None:
        """bpf_loop(count, callback, ctx, flags): the helper's errors first (flags: -EINVAL,
        count over BPF_MAX_LOOPS: -E2BIG), then callback(i, ctx) for i < count until it returns 1."""
        f = self.f
        count, ctx, flags = (f.load_reg(reg) for reg in "134")
        bad_flags = f.value(f"icmp ne i64 {flags}, 0")
        refused = f.value(f"or i1 {bad_flags}, {f.value(f'icmp ugt i64 {count}, {BPF_MAX_LOOPS}')}")
        self.refuse_if(refused, f.value(f"select i1 {bad_flags}, i64 {-errno.EINVAL}, i64 {-errno.E2BIG}"))
        start = self.callback_start()
        self.callback_loop(start, count, lambda i: [i, ctx, "0", "0", "0"])

    def for_each_array(self) -> None:
        """for_each_map_elem(map, callback, ctx, flags) on an array map the program loads: -EINVAL
        for flags, else callback(map, &key, &value, ctx) for each slot until it returns 1. The
        key lives in this invocation's native frame, as the kernel's on the helper's stack."""
        f = self.f
        handle, ctx = f.load_reg("1"), f.load_reg("3")
        self.refuse_if(f.value(f"icmp ne i64 {f.load_reg('4')}, 0"), str(-errno.EINVAL))
        found, layout, missing = self.scan_pairs(f.image_word(IMAGE_ARRAY_MAPS),
                                                 f.image_word(IMAGE_ARRAY_MAP_COUNT, "i64"), handle)
        f.label(missing)
        self.to_helper(missing)
        f.label(found)
        words = f.value(f"inttoptr i64 {layout} to ptr")  # value base, stride, max entries
        base, stride, entries = (
            f.value(f"load i64, ptr {f.value(f'getelementptr inbounds i64, ptr {words}, i64 {word}')}")
            for word in range(3))
        start = self.callback_start()
        key = f.value("ptrtoint ptr %key_slot to i64")

        def args(i: str) -> list[str]:
            f.emit(f"store i32 {f.value(f'trunc i64 {i} to i32')}, ptr %key_slot")
            return [handle, key, f.value(f"add i64 {base}, {f.value(f'mul i64 {i}, {stride}')}"), ctx, "0"]
        self.callback_loop(start, entries, args)

    def tail_call(self) -> None:
        """bpf_tail_call(ctx, prog_array, index) from the main function of an invocation, as the
        JIT makes it (jit/lower.py inline_tail_call): the index against the array's size and
        RunEnv's count against MAX_TAIL_CALLS, then the slot's image in the array's image table
        (runtime/maps/fd_array.py ProgArray): empty, or any check failing, gives r0 = -ENOENT and
        the next instruction; an image interprets the target from its first slot with the ctx and
        length this invocation was entered with, in a fresh frame (a musttail call of this
        function: the caller's frame is gone, so a chain of 33 takes no more native stack than
        one). An image not filled yet (0), an array not in the image's table, or a call from a
        BPF function or a callback goes to the Python helper, whose TAIL_CALL bpfjit.program
        acts on."""
        f = self.f
        depth = f.value("load i64, ptr %depth_slot")
        main = f.value(f"and i1 {f.value(f'icmp eq i64 {depth}, 0')}, {f.value('icmp eq i64 %start, 0')}")
        go, nested = f.branch_if(main, weight_taken=True)
        f.label(nested)
        self.to_helper(nested)
        f.label(go)
        found, words, missing = self.scan_pairs(f.image_word(IMAGE_PROG_ARRAYS),
                                                f.image_word(IMAGE_PROG_ARRAY_COUNT, "i64"), f.load_reg("2"))
        f.label(missing)
        self.to_helper(missing)
        f.label(found)
        # The array's image table, its max entries and the word of an empty slot (a value of the
        # map's, read from the image: this IR is cached by the sources it is built from).
        record = f.value(f"inttoptr i64 {words} to ptr")
        table, entries, empty_entry = (
            f.value(f"load {ty}, ptr {f.value(f'getelementptr inbounds i64, ptr {record}, i64 {word}')}")
            for word, ty in enumerate(("ptr", "i64", "i64")))
        index = f.load_reg("3")
        slot = f.value(f"zext i32 {f.value(f'trunc i64 {index} to i32')} to i64")
        count_ptr = f.env_field(FIELD_TAIL_CALLS)
        count = f.value(f"load i64, ptr {count_ptr}")
        allowed = f.value(f"and i1 {f.value(f'icmp ult i64 {slot}, {entries}')}, "
                          f"{f.value(f'icmp ult i64 {count}, {MAX_TAIL_CALLS}')}")
        self.refuse_if(f.value(f"xor i1 {allowed}, true"), str(-errno.ENOENT))
        entry = f.value(f"load atomic i64, ptr {f.value(f'getelementptr inbounds i64, ptr {table}, i64 {slot}')} "
                        "acquire, align 8")
        self.refuse_if(f.value(f"icmp eq i64 {entry}, {empty_entry}"), str(-errno.ENOENT))
        slow, native = f.branch_if(f.value(f"icmp eq i64 {entry}, 0"), weight_taken=False)
        f.label(slow)
        self.to_helper(slow)
        f.label(native)
        f.emit(f"store i64 {f.value(f'add i64 {count}, 1')}, ptr {count_ptr}")
        target = f.value(f"inttoptr i64 {entry} to ptr")
        result = f.value(f"musttail call i64 {f.name}(ptr {target}, ptr %env, i64 0, i64 %a1, i64 %a2, i64 0, "
                         "i64 0, i64 0)")
        f.emit(f"ret i64 {result}")

    def redirect_map(self) -> None:
        """bpf_redirect_map on a DEVMAP or CPUMAP, decided from the map's header as the JIT's
        inlined one decides it from the map it names (jit/lower.py inline_redirect_map): flags
        the map does not take give XDP_ABORTED; a slot whose first u32 is not 0 (or a DEVMAP
        broadcast) records the map, key and flags in the RunEnv and gives XDP_REDIRECT; a miss
        clears the record and gives the flags' fallback. Another map type goes to the helper."""
        f = self.f
        handle, flags = f.load_reg("1"), f.load_reg("3")
        header = f.value(f"inttoptr i64 {handle} to ptr")

        def header_field(offset: int, ty: str) -> str:
            return f.value(f"load {ty}, ptr {f.value(f'getelementptr inbounds i8, ptr {header}, i64 {offset}')}")
        map_type = header_field(HEADER_TYPE, "i32")
        devmap = f.value(f"icmp eq i32 {map_type}, {int(MapType.DEVMAP)}")
        slots = f.value(f"or i1 {devmap}, {f.value(f'icmp eq i32 {map_type}, {int(MapType.CPUMAP)}')}")
        go, other = f.branch_if(slots, weight_taken=True)
        f.label(other)
        self.to_helper(other)
        f.label(go)
        allowed = f.value(f"select i1 {devmap}, i64 {REDIRECT_MAP_FLAGS[MapType.DEVMAP]}, "
                          f"i64 {REDIRECT_MAP_FLAGS[MapType.CPUMAP]}")
        not_taken = f.value(f"xor i64 {f.value(f'or i64 {allowed}, {REDIRECT_FALLBACK_MASK}')}, -1")
        refused = f.value(f"and i64 {flags}, {not_taken}")
        self.refuse_if(f.value(f"icmp ne i64 {refused}, 0"), str(XDP_ABORTED))
        key_arg = f.load_reg("2")
        key = f.value(f"zext i32 {f.value(f'trunc i64 {key_arg} to i32')} to i64")
        entries = f.value(f"zext i32 {header_field(HEADER_MAX_ENTRIES, 'i32')} to i64")
        values = f.value(f"inttoptr i64 {header_field(HEADER_VALUE_BASE, 'i64')} to ptr")
        hit, result = redirect_map_decision(f.value, key, entries, values, flags)
        self.record_redirect((f.value(f"select i1 {hit}, i64 {RECORD_MAP}, i64 {RECORD_CLEARED}"), handle, key,
                              f.value(f"and i64 {flags}, {allowed}")))
        f.store_reg("0", result)
        f.next_pc()

    def redirect(self, program_type: str) -> None:
        """bpf_redirect(ifindex, flags) as the JIT inlines it for the program's type (jit/lower.py
        inline_redirect, runtime/stdhelpers.py redirect_rule): a flag the type does not take gives
        its failure, else the ifindex is recorded and the result is its redirect action."""
        f = self.f
        flags = f.load_reg("2")
        taken, failed, redirected = redirect_rule(program_type)
        refused = f.value(f"and i64 {flags}, {~taken}")
        self.refuse_if(f.value(f"icmp ne i64 {refused}, 0"), str(failed))
        ifindex_arg = f.load_reg("1")
        ifindex = f.value(f"zext i32 {f.value(f'trunc i64 {ifindex_arg} to i32')} to i64")
        self.record_redirect((str(RECORD_IFINDEX), ifindex, "0", flags))
        f.store_reg("0", str(redirected))
        f.next_pc()

    def record_redirect(self, fields: tuple[str, str, str, str]) -> None:
        """The redirect record's four RunEnv words (runtime/run_context.py record_redirect)."""
        for offset, value in enumerate(fields):
            self.f.emit(f"store i64 {value}, ptr {self.f.env_field(FIELD_REDIRECT_KIND + offset)}")

    def refuse_if(self, refused: str, error: str) -> None:
        """Where `refused` holds, r0 = error and on to the next instruction; the code continues
        where it does not."""
        f = self.f
        no, go = f.branch_if(refused, weight_taken=False)
        f.label(no)
        f.store_reg("0", error)
        f.next_pc()
        f.label(go)

    def callback_start(self) -> str:
        """The start slot of the function whose token r2 holds (a loop's callback), from the
        image's functions with a token; the code continues where it is found, and a token not
        found goes to the Python helper, which reports it."""
        f = self.f
        found, start, missing = self.scan_pairs(f.image_word(IMAGE_FUNCTIONS),
                                                f.image_word(IMAGE_TOKEN_FUNCTION_COUNT, "i64"), f.load_reg("2"))
        f.label(missing)
        self.to_helper(missing)
        f.label(found)
        return start

    def callback_loop(self, start: str, count: str, args: Callable[[str], list[str]]) -> None:
        """Interpret the function at `start` with r1-r5 = args(i) for i < count, until a call
        returns 1; r0 = the calls made. A call that fails ends the run where it failed."""
        f = self.f
        enter, head, body, failed, latch, stopped, finished = (
            f.fresh(f"loop_{part}") for part in ("enter", "head", "body", "failed", "latch", "stopped", "finished"))
        i, following = f.fresh("%loop_i"), f.fresh("%loop_next")
        f.emit(f"br label %{enter}")
        f.label(enter)
        f.emit(f"br label %{head}")
        f.label(head)
        f.emit(f"{i} = phi i64 [ 0, %{enter} ], [ {following}, %{latch} ]")
        f.emit(f"br i1 {f.value(f'icmp ult i64 {i}, {count}')}, label %{body}, label %{finished}")
        f.label(body)
        values = ", ".join(f"i64 {value}" for value in args(i))
        result = self.spending_call(f"call i64 {f.name}(ptr %img, ptr %env, i64 {start}, {values})")
        status = f.value(f"load volatile i64, ptr {f.env_field(FIELD_STATUS)}")
        f.emit(f"br i1 {f.value(f'icmp ne i64 {status}, 0')}, label %{failed}, label %{latch}, "
               '!prof !{!"branch_weights", i32 1, i32 2000}')
        f.label(failed)  # the nested run recorded where and why
        f.emit("store i64 0, ptr %ret_slot")
        f.emit("br label %leave")
        f.label(latch)
        f.emit(f"{following} = add i64 {i}, 1")
        f.emit(f"br i1 {f.value(f'icmp eq i64 {result}, 1')}, label %{stopped}, label %{head}")
        f.label(stopped)
        f.store_reg("0", following)
        f.next_pc()
        f.label(finished)
        f.store_reg("0", count)
        f.next_pc()

    def callx(self, opcode: int) -> None:
        """callx: a BPF function's token (in the run of the image's function table its imm names:
        the first pair's index, plus the count << 16), else a helper id where the program's
        environment allows it (the image's helper-id table), else BAD_CALLX."""
        f = self.f
        target = f.load_reg(f.dst)
        first = f.value(f"mul i64 {f.value(f'and i64 {f.imm_field}, 65535')}, 2")
        functions = f.value(f"getelementptr inbounds i64, ptr {f.image_word(IMAGE_FUNCTIONS)}, i64 {first}")
        for table, count, sources, block in (
                (functions, f.value(f"lshr i64 {f.imm_field}, 16"), self.call_sources, "call_local"),
                (f.image_word(IMAGE_HELPER_IDS), f.image_word(IMAGE_HELPER_ID_COUNT, "i64"), self.helper_sources,
                 "call_helper")):
            found, value, missing = self.scan_pairs(table, count, target)
            f.label(found)
            sources.append((value, found))
            f.emit(f"br label %{block}")
            f.label(missing)
        f.fail(int(Status.BAD_CALLX), target)

    def scan_pairs(self, table: str, count: str, key: str) -> tuple[str, str, str]:
        """A linear search of (key, value) u64 pairs. Returns (found label, value, missing label);
        the code continues in neither."""
        f = self.f
        before, head, body, found, missing = (f.fresh(f"scan_{part}")
                                              for part in ("before", "head", "body", "found", "missing"))
        i, i_next = f.fresh("%i"), f.fresh("%i_next")
        f.emit(f"br label %{before}")
        f.label(before)
        f.emit(f"br label %{head}")
        f.label(head)
        f.emit(f"{i} = phi i64 [ 0, %{before} ], [ {i_next}, %{body} ]")
        f.emit(f"br i1 {f.value(f'icmp ult i64 {i}, {count}')}, label %{body}, label %{missing}")
        f.label(body)
        pair = f.value(f"getelementptr inbounds i64, ptr {table}, i64 {f.value(f'mul i64 {i}, 2')}")
        value = f.value(f"load i64, ptr {f.value(f'getelementptr inbounds i64, ptr {pair}, i64 1')}")
        f.emit(f"{i_next} = add i64 {i}, 1")
        hit = f.value(f"icmp eq i64 {f.value(f'load i64, ptr {pair}')}, {key}")
        f.emit(f"br i1 {hit}, label %{found}, label %{head}")
        return found, value, missing

    def exit(self, opcode: int) -> None:
        """exit: the run's result from the main frame, else back to the caller with this r0."""
        f = self.f
        depth = f.value("load i64, ptr %depth_slot")
        last, inner = f.branch_if(f.value(f"icmp eq i64 {depth}, 0"))
        f.label(last)
        f.emit(f"store i64 {f.load_reg('0')}, ptr %ret_slot")
        f.emit("br label %leave")
        f.label(inner)
        outer = f.value(f"sub i64 {depth}, 1")
        f.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {f.reg_ptr('1')}, ptr {self.record_field(outer, 0)}, i64 80, "
               "i1 false)")
        f.emit(f"store i64 {outer}, ptr %depth_slot")
        if f.checked:
            count = f.env_field(FIELD_FRAME_COUNT)
            live = f.value(f"load i64, ptr {count}")
            f.emit(f"store i64 {f.value(f'sub i64 {live}, 1')}, ptr {count}")
        f.goto_pc(f.value(f"load i64, ptr {self.record_field(outer, RECORD_RETURN)}"))

    def legacy_load(self, opcode: int) -> None:
        """BPF_LD_ABS / BPF_LD_IND, as jit/packet_loads.py lowers them: r0 = the packet's bytes at
        the offset (imm, plus the source register's low 32 bits for IND, a signed 32-bit sum),
        big-endian, when [offset, offset + size) lies inside [skb->data, data_end) of the context
        in r6; a header offset (SKF_LL_OFF up to 0) reads the header the context's runtime words
        place, inside [head, data_end), if the image says r6 is the context (a verified program;
        else it stops the run with BAD_READ); any other offset returns 0 from the current
        function, as the kernel's hidden exit does."""
        f = self.f
        bits = _WIDTH[opcode & 0x18]
        size = bits // 8
        skb = f.load_reg("6")
        data, end = (f.value(f"load i64, ptr {f.checked_pointer(f.value(f'add i64 {skb}, {field}'), 64, False, False)}")
                     for field in (SKB_DATA, SKB_DATA_END))
        if opcode & 0xE0 == isa.ABS:
            offset = f.imm
        else:
            total = f.value(f"add i64 {f.load_reg(f.src)}, {f.imm}")
            offset = f.value(f"sext i32 {f.value(f'trunc i64 {total} to i32')} to i64")
        last = f.value(f"sub i64 {f.value(f'sub i64 {end}, {data}')}, {size}")
        inside = f.value(f"and i1 {f.value(f'icmp sge i64 {offset}, 0')}, {f.value(f'icmp sle i64 {offset}, {last}')}")
        found, missed = f.branch_if(inside, weight_taken=True)
        f.label(missed)
        address = f.value(f"add i64 {data}, {offset}")
        below_zero = f.value(f"icmp slt i64 {offset}, 0")
        header = f.value(f"and i1 {below_zero}, {f.value(f'icmp sge i64 {offset}, {SKF_LL_OFF}')}")
        named, failed = f.branch_if(header)
        f.label(named)
        proven = f.value(f"icmp ne i64 {f.image_word(IMAGE_CONTEXT_PROVEN, 'i64')}, 0")
        readable, refused = f.branch_if(proven)
        f.label(refused)
        f.emit(f"store i64 {size}, ptr {f.env_field(FIELD_ACCESS_SIZE)}")
        f.fail(int(Status.BAD_READ), address)
        f.label(readable)
        placed, within = header_bytes(f, skb, data, end, offset, size)
        hit, miss = f.branch_if(within)
        f.label(miss)
        f.emit(f"br label %{failed}")
        f.label(hit)
        self._load_network_order(f.value(f"inttoptr i64 {placed} to ptr"), bits)
        f.label(failed)
        f.store_reg("0", "0")
        f.emit(f"br label %{self.f.handlers[isa.EXIT_OP]}")
        f.label(found)
        self._load_network_order(f.checked_pointer(f.value(f"add i64 {data}, {offset}"), bits, False, False), bits)

    def _load_network_order(self, pointer: str, bits: int) -> None:
        """r0 = the bits at pointer, read in network order; on to the next instruction."""
        self.f.store_reg("0", network_order(self.f, pointer, bits // 8))
        self.f.next_pc()

    def lddw(self, opcode: int) -> None:
        """ld_imm64: the image holds the resolved value in the imm fields of its two slots."""
        f = self.f
        high_slot = f.value(f"load i64, ptr {f.value('getelementptr inbounds i64, ptr %slot_ptr, i64 1')}")
        high = f.value(f"and i64 {high_slot}, -4294967296")
        f.store_reg(f.dst, f.value(f"or i64 {high}, {f.value(f'and i64 {f.imm_field}, 4294967295')}"))
        f.next_pc(2)

    def ldx(self, opcode: int) -> None:
        f = self.f
        bits = _WIDTH[opcode & 0x18]
        raw_check = opcode & 0xE0 in (isa.ABS, isa.IND)
        pointer = f.checked_pointer(f.address("src"), bits, False, raw_check)
        value = f.value(f"load i{bits}, ptr {pointer}, align 1")
        extend = "sext" if opcode & 0xE0 in (isa.MEMSX, CHECKED_MODE[isa.LDX | isa.MEMSX] & 0xE0) else "zext"
        f.store_reg(f.dst, value if bits == 64 else f.value(f"{extend} i{bits} {value} to i64"))
        f.next_pc()

    def st(self, opcode: int) -> None:
        self.store(opcode, self.f.imm)

    def stx(self, opcode: int) -> None:
        self.store(opcode, self.f.load_reg(self.f.src))

    def store(self, opcode: int, value: str) -> None:
        f = self.f
        bits = _WIDTH[opcode & 0x18]
        pointer = f.checked_pointer(f.address("dst"), bits, True, opcode & 0xE0 == isa.ABS)
        narrow = value if bits == 64 else f.value(f"trunc i64 {value} to i{bits}")
        f.emit(f"store i{bits} {narrow}, ptr {pointer}, align 1")
        f.next_pc()

    def atomic(self, opcode: int) -> None:
        """The atomic operations, chosen by imm; any other imm traps (the structure check
        rejects it before a run)."""
        f = self.f
        bits = _WIDTH[opcode & 0x18]
        ty, align = f"i{bits}", bits // 8
        raw_check = opcode & 0xE0 == isa.IND
        cases = [(imm, f.fresh("atomic")) for imm in sorted(isa.ATOMIC_IMMS)]
        targets = " ".join(f"i64 {imm}, label %{label}" for imm, label in cases)
        f.emit(f"switch i64 {f.imm}, label %trap [ {targets} ]")
        for imm, label in cases:
            f.label(label)
            if imm == isa.LOAD_ACQ:
                pointer = f.checked_pointer(f.address("src"), bits, False, raw_check)
                value = f.value(f"load atomic {ty}, ptr {pointer} acquire, align {align}")
                f.store_reg(f.dst, value if bits == 64 else f.value(f"zext {ty} {value} to i64"))
                f.next_pc()
                continue
            pointer = f.checked_pointer(f.address("dst"), bits, True, raw_check)
            source = f.load_reg(f.src)
            operand = source if bits == 64 else f.value(f"trunc i64 {source} to {ty}")
            if imm == isa.STORE_REL:
                f.emit(f"store atomic {ty} {operand}, ptr {pointer} release, align {align}")
                f.next_pc()
                continue
            if imm == isa.CMPXCHG:
                r0 = f.load_reg("0")
                expected = r0 if bits == 64 else f.value(f"trunc i64 {r0} to {ty}")
                pair = f.value(f"cmpxchg ptr {pointer}, {ty} {expected}, {ty} {operand} seq_cst seq_cst, "
                               f"align {align}")
                old = f.value(f"extractvalue {{ {ty}, i1 }} {pair}, 0")
                f.store_reg("0", old if bits == 64 else f.value(f"zext {ty} {old} to i64"))
                f.next_pc()
                continue
            operation = "xchg" if imm == isa.XCHG else _RMW[imm & ~isa.FETCH]
            old = f.value(f"atomicrmw {operation} ptr {pointer}, {ty} {operand} seq_cst, align {align}")
            if imm & isa.FETCH:
                f.store_reg(f.src, old if bits == 64 else f.value(f"zext {ty} {old} to i64"))
            f.next_pc()


def module_ir(dispatch: str = DISPATCH_INDIRECT) -> str:
    """The interpreter module: both variants, and per variant two entry points:

    ``i64 @bpfjit_interp_<variant>_repeat(ptr image, ptr env, i64 r1, i64 r2, i64 n, ptr runs)``
    runs the program from slot 0 n times (stopping early at a run that does not end OK, such as
    one whose tail call is left to bpfjit.program), leaves how many runs it made in *runs and
    returns the last r0; each run is an invocation of its own, its tail-call count from 0;
    ``i64 @bpfjit_interp_<variant>_call(ptr image, ptr env, i64 start, ptr args)`` runs the function
    at slot `start` once with r1-r5 = args[0..4] (a helper's callback).
    """
    parts = [*(f"declare i{bits} @llvm.bswap.i{bits}(i{bits})" for bits in (16, 32, 64)),
             "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)",
             "declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)", "", *ACCESS_OK, ""]
    for variant in VARIANTS:
        parts += _LoopBuilder(variant == "checked", dispatch).build()
        parts += _entries(variant)
    return "\n".join(parts) + "\n"


def _entries(variant: str) -> list[str]:
    core = f"@bpfjit_interp_{variant}"
    return f"""
define i64 {core}_repeat(ptr %img, ptr %env, i64 %r1, i64 %r2, i64 %n, ptr %runs) {{
entry:
  %sp = call i64 asm sideeffect "movq %rsp, $0", "=r"()
  %top = sub i64 %sp, 8
  %top_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_STACK_TOP}
  store i64 %top, ptr %top_field
  %status_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_STATUS}
  %tail_calls_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_TAIL_CALLS}
  %trips_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_TRIPS}
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %again ]
  %r = call i64 {core}(ptr %img, ptr %env, i64 0, i64 %r1, i64 %r2, i64 0, i64 0, i64 0)
  %next = add i64 %i, 1
  %status = load volatile i64, ptr %status_field
  %failed = icmp ne i64 %status, 0
  br i1 %failed, label %done, label %again
again:
  store volatile i64 0, ptr %tail_calls_field
  store volatile i64 0, ptr %trips_field
  %more = icmp ult i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  store i64 %next, ptr %runs
  ret i64 %r
}}

define i64 {core}_call(ptr %img, ptr %env, i64 %start, ptr %args) {{
entry:
  %p2 = getelementptr inbounds i64, ptr %args, i64 1
  %p3 = getelementptr inbounds i64, ptr %args, i64 2
  %p4 = getelementptr inbounds i64, ptr %args, i64 3
  %p5 = getelementptr inbounds i64, ptr %args, i64 4
  %a1 = load i64, ptr %args
  %a2 = load i64, ptr %p2
  %a3 = load i64, ptr %p3
  %a4 = load i64, ptr %p4
  %a5 = load i64, ptr %p5
  %r = call i64 {core}(ptr %img, ptr %env, i64 %start, i64 %a1, i64 %a2, i64 %a3, i64 %a4, i64 %a5)
  ret i64 %r
}}
""".splitlines()
