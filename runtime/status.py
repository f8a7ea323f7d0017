"""The per-run record shared by both engines: how a run ended, where it went wrong, and the
limits it runs under.

The JIT writes these fields from native code (the structure is passed to the compiled entry
point), the interpreter fills the same fields, and :func:`raise_for_status` turns them into the
same user-facing exception for either engine.
"""
from __future__ import annotations

import ctypes
import enum
import threading
from typing import TYPE_CHECKING

from bpfjit.errors import BPFError, BPFRuntimeError

from .maps.native import CPU_NUMBERING

if TYPE_CHECKING:
    from .memory import Regions


class Status(enum.IntEnum):
    OK = 0
    UNWOUND = 1  # a helper asked to stop the program (bpf_conformance's "unwind" helper 5)
    BAD_CALLX = 2  # callx to a value that is neither a helper id nor a BPF function
    HELPER_FAILED = 3  # a Python helper raised
    CALL_DEPTH = 4  # a callx chain went deeper than MAX_CALL_FRAMES
    TAIL_CALL = 5  # bpf_tail_call succeeded: unwind, then run the target program
    STEP_BUDGET = 6  # the run executed more instructions than its max_steps
    TIME_BUDGET = 7  # the run went on longer than its timeout
    BAD_READ = 8  # a checked load outside the memory the run may read (value: the address)
    BAD_WRITE = 9  # a checked store outside the memory the run may write (value: the address)
    DEAD_CODE = 10  # an instruction the verifier proved unreachable ran: a verifier bug, stopped
    BAD_GOTOX = 11  # gotox to a slot no jump table of its function holds (runtime/jump_tables.py)
    LOOP_BUDGET = 12  # a raw program's run took more loop trips than Facts.trip_limit (value: the limit)


MAX_CALL_FRAMES = 8  # the kernel's limit: the main frame plus seven nested calls
MAX_TAIL_CALLS = 33  # the kernel's MAX_TAIL_CALL_CNT
BPF_MAX_LOOPS = 1 << 23  # the kernel's bound on bpf_loop iterations and on a frame's may_goto
MAY_GOTO_BUDGET = BPF_MAX_LOOPS  # iterations a frame's may_goto allows before it branches
UNLIMITED = (1 << 64) - 1  # max_steps of a run without an instruction budget
# Backward jumps one invocation of a raw program may take (Facts.trip_limit): the verifier proves
# a raw program's widened loops safe but not finite (verifier/widen.py), so a run counts their
# trips instead and ends with LOOP_BUDGET past this many. 2**28 trips are a byte loop over 256 MiB
# or a few tenths of a second of the tightest jitted loop.
RAW_LOOP_TRIPS = 1 << 28
# Frames a sandboxed JIT run registers for its checked accesses (calls, callbacks and their
# calls together; the verifier's limit does not hold for a program it never saw).
SANDBOX_FRAMES = 64
# RunEnv.insn of a failure a helper reported from Python: the jitted caller puts its own index
# there, unless a callback the helper ran has already named the instruction that failed.
INSN_PENDING = (1 << 64) - 1


class RunEnv(ctypes.Structure):
    """Layout known to the JIT (jit/lower.py and the entry loop of jit/engine.py read and write
    the u64 fields by index: FIELD_*)."""
    _fields_ = [
        ("status", ctypes.c_uint64),
        ("insn", ctypes.c_uint64),  # instruction index the status refers to
        ("value", ctypes.c_uint64),  # extra detail (the bad callx target, the failed helper's id)
        ("depth", ctypes.c_uint64),  # nested calls below the main frame (counted when callx can recurse)
        ("tail_calls", ctypes.c_uint64),  # successful bpf_tail_calls in this invocation
        ("steps", ctypes.c_uint64),  # instructions executed so far (budgeted runs only)
        ("max_steps", ctypes.c_uint64),  # the instruction budget (UNLIMITED: none)
        ("stop", ctypes.c_uint64),  # set (to 1) by the watchdog when the time budget is spent
        ("trips", ctypes.c_uint64),  # backward jumps of this invocation (counted when Facts.trip_limit is set)
        ("stack_top", ctypes.c_uint64),  # JIT runs: native addresses of the BPF frames lie below it
        # The thread's cpu number (runtime/maps/native.py): a per-CPU map's slot in this run is it
        # modulo the map's slot count, as the native map helpers compute it. Read once, when the
        # RunEnv is made on the thread that runs it, so the JIT's inlined per-CPU array lookups
        # take their slot from here instead of asking the thread for it on every call.
        ("cpu", ctypes.c_uint64),
        ("timeout", ctypes.c_double),  # the time budget in seconds (0: none), for the message
        ("deadline", ctypes.c_double),  # time.monotonic() at which the interpreter stops (0: none)
        # Checked accesses (jit/lower.py AccessChecks). A verified raw program's memory:
        ("mem_start", ctypes.c_uint64),
        ("mem_size", ctypes.c_uint64),
        ("access_size", ctypes.c_uint64),  # the size of the access a BAD_READ/BAD_WRITE refused
        # What the redirect helpers of this invocation recorded (runtime/run_context.py
        # RedirectInfo reads it after the run): how (RECORD_* there; 0: nothing yet), then the
        # map's handle or the ifindex, the key, the flags. Jitted code writes it inline.
        ("redirect_kind", ctypes.c_uint64),
        ("redirect_target", ctypes.c_uint64),
        ("redirect_key", ctypes.c_uint64),
        ("redirect_flags", ctypes.c_uint64),
        # An unverified program's: the regions of the run (start, size, writable triples) and
        # the live BPF frames, each [frames[i], frames[i] + STACK_SIZE).
        ("regions", ctypes.c_void_p),
        ("region_count", ctypes.c_uint64),
        ("frame_count", ctypes.c_uint64),
        ("frames", ctypes.c_uint64 * SANDBOX_FRAMES),
    ]

    def __init__(self, max_steps: int | None = None, timeout: float | None = None, deadline: float = 0.0):
        super().__init__()
        self.max_steps = UNLIMITED if max_steps is None else max_steps
        self.timeout = timeout or 0.0
        self.deadline = deadline
        self.cpu = thread_cpu()


_thread = threading.local()


def thread_cpu() -> int:
    """This thread's cpu number (CPU_NUMBERING), kept per thread once known: a thread's number
    never changes, and a ctypes call for it on every run would cost more than short runs."""
    cpu = getattr(_thread, "cpu", None)
    if cpu is None:
        cpu = _thread.cpu = CPU_NUMBERING.current()
    return cpu


(FIELD_STATUS, FIELD_INSN, FIELD_VALUE, FIELD_DEPTH, FIELD_TAIL_CALLS, FIELD_STEPS, FIELD_MAX_STEPS,
 FIELD_STOP, FIELD_TRIPS, FIELD_STACK_TOP, FIELD_CPU, _TIMEOUT, _DEADLINE, FIELD_MEM_START, FIELD_MEM_SIZE,
 FIELD_ACCESS_SIZE, FIELD_REDIRECT_KIND, FIELD_REDIRECT_TARGET, FIELD_REDIRECT_KEY, FIELD_REDIRECT_FLAGS,
 FIELD_REGIONS, FIELD_REGION_COUNT, FIELD_FRAME_COUNT, FIELD_FRAMES) = range(24)


class HelperFault(BPFError):
    """A helper refused what the program handed it (a pointer outside the run's memory, a
    ring-buffer record it never reserved...): the program's error, reported as
    ``insn N: bpf_<helper>: <message>`` by either engine."""


def raise_for_status(env: RunEnv, helper_error: BaseException | None = None, helper_name: str = "",
                     regions: "Regions | None" = None) -> None:
    """Raise the BPFRuntimeError a failed run deserves; return quietly for OK and UNWOUND."""
    status = Status(env.status)
    if status in (Status.OK, Status.UNWOUND, Status.TAIL_CALL):
        return
    if status == Status.BAD_CALLX:
        raise BPFRuntimeError(env.insn, f"callx to {env.value:#x}, which is neither a helper nor a BPF function")
    if status == Status.BAD_GOTOX:
        from .jump_tables import BAD_TARGET
        raise BPFRuntimeError(env.insn, BAD_TARGET)
    if status == Status.CALL_DEPTH:
        raise BPFRuntimeError(env.insn, f"more than {MAX_CALL_FRAMES} nested calls")
    if status == Status.STEP_BUDGET:
        raise BPFRuntimeError(env.insn, f"instruction budget of {env.max_steps} exhausted")
    if status == Status.TIME_BUDGET:
        raise BPFRuntimeError(env.insn, f"time budget of {env.timeout:g} s exhausted")
    if status == Status.LOOP_BUDGET:
        raise BPFRuntimeError(env.insn, f"loop budget of {env.value} trips exhausted (a raw program's "
                                        "loops are bounded when it runs)")
    if status == Status.DEAD_CODE:
        raise BPFRuntimeError(env.insn, "reached an instruction the verifier proved unreachable (a bpfjit bug)")
    if status in (Status.BAD_READ, Status.BAD_WRITE):
        kind = "read" if status == Status.BAD_READ else "write"
        region = regions.find(env.value, env.access_size, status == Status.BAD_WRITE) if regions is not None else None
        where = f" (read-only {region.name})" if region is not None and not region.writable else ""
        raise BPFRuntimeError(env.insn, f"invalid {kind} of {env.access_size} bytes at {env.value:#x}{where}")
    if isinstance(helper_error, HelperFault):
        prefix = "" if helper_name.startswith("bpf_") else "bpf_"
        raise BPFRuntimeError(env.insn, f"{prefix}{helper_name}: {helper_error}")
    name = f" ({helper_name})" if helper_name else ""
    raise BPFRuntimeError(env.insn, f"helper {env.value}{name} failed: {helper_error!r}")
