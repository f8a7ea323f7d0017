"""The public API: build a Program, check its structure, run it on either engine.

    prog = Program.from_asm("mov %r0, %r2\\nexit")
    prog.run(b"abcd")                    # 4, through the JIT
    prog.run(b"abcd", engine="reference")   # 4, through the reference interpreter

Both engines run on the same native memory and the same helpers (``Environment``), so their
results can be compared byte for byte. For raw programs r1 points at the memory and r2 holds its
length (the bpf_conformance convention).
"""
from __future__ import annotations

import ctypes
import errno
import functools
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Literal, NamedTuple, Sequence

from . import asm as assembler
from . import disasm, isa, verdicts
from .errors import BPFError, TestRunError, VerifierError
from .isa import Insn
from .jit.native_interp_image import build_image
from .jit.tiers import Tiering, chunk_runs
from .program_flags import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS, check_program_flags, check_sleepable, default_flags
from .runtime.environment import Environment
from .runtime.helpers import HelperRegistry
from .runtime.interp import Interpreter
from .runtime.jump_tables import program_tables
from .runtime.context import PROGRAM_TYPES
from .runtime.limits import Limits, Watchdog
from .runtime.maps import Map, ProgArray, map_from_handle
from .runtime.memory import Regions
from .runtime import run_context
from .runtime.run_context import Redirect, RedirectInfo, RunContext
from .runtime.run_memory import OutputSizes, RunMemory, run_memory
from .runtime.static_keys import NativeSite, Patchable, PatchableWord, StaticKey, set_default
from .runtime.status import RAW_LOOP_TRIPS, RunEnv, Status, raise_for_status
from .verifier import cfg
from .verifier.check import Verdict
from .verifier.insn_text import insn_text
from .verifier.ctx_access import rewrite_ctx_access
from .verifier.verify import inputs as verifier_inputs, verify as verify_program

if TYPE_CHECKING:  # the JIT's modules load llvmlite: imported where a program is compiled or run
    from .capture import CaptureRun
    from .jit import native_interp
    from .jit.engine import CompiledProgram

# The ld_imm64 sources that name a map (by fd or by its index in the object, or a value in it),
# each with the source that gives the map itself.
_MAP_SOURCES = {isa.PSEUDO_MAP_FD: isa.PSEUDO_MAP_FD, isa.PSEUDO_MAP_VALUE: isa.PSEUDO_MAP_FD,
                isa.PSEUDO_MAP_IDX: isa.PSEUDO_MAP_IDX, isa.PSEUDO_MAP_IDX_VALUE: isa.PSEUDO_MAP_IDX}


Engine = Literal["jit", "interp", "reference", "auto"]
# The engines, each one way of running a program, and every behaviour is checked on all three:
# the JIT, the native interpreter (jit/native_interp.py: no compile per program) and the Python
# reference interpreter (runtime/interp.py: the oracle).
ENGINES: tuple[str, ...] = ("jit", "interp", "reference")
# The action that makes the kernel act on a redirect helper's record: XDP_REDIRECT for XDP programs,
# TC_ACT_REDIRECT for the skb programs that have bpf_redirect (tc, tc actions, lwt_xmit).
XDP_REDIRECT, TC_ACT_REDIRECT = 4, 7
# ... and what a run may choose: also "auto", the tiered start (the native interpreter until the
# JIT's code is ready; bpfjit/tiers.py).
RUN_ENGINES: tuple[str, ...] = (*ENGINES, "auto")


@dataclass(frozen=True)
class RunResult:
    """What BPF_PROG_TEST_RUN reports: r0, the data after the run, mean time per run, ctx_out;
    how many of the runs each engine ran (engine="auto" may have run on two); and where the
    packet would go: ``redirect`` is set when the program returned the redirect action
    (XDP_REDIRECT, TC_ACT_REDIRECT) after a redirect helper recorded a target, else None.

    ``data_size_out`` and ``ctx_size_out`` are the full sizes of the outputs (None: the same as
    what was copied). ``errno`` is ``errno.ENOSPC`` when the caller's ``data_size_out`` or
    ``ctx_size_out`` cut an output short, as the kernel's test run fails then while still
    reporting retval and the full sizes; otherwise 0."""
    retval: int
    data_out: bytes
    duration_ns: float
    ctx_out: bytes | None = None
    tiers: dict[str, int] = field(default_factory=dict)
    redirect: Redirect | None = None
    data_size_out: int | None = None
    ctx_size_out: int | None = None
    errno: int = 0

    def __post_init__(self) -> None:
        if self.data_size_out is None:
            object.__setattr__(self, "data_size_out", len(self.data_out))
        if self.ctx_size_out is None and self.ctx_out is not None:
            object.__setattr__(self, "ctx_size_out", len(self.ctx_out))


class Program:
    """A structurally checked BPF program, ready to run interpreted or jitted."""

    def __init__(self, insns: Sequence[Insn], env: Environment | None = None, name: str = "prog",
                 prog_type: str = "raw", verify: bool = True, log_level: int = 1, flags: int | None = None):
        """verify: prove the program safe with the kernel verifier's rules first (the default;
        VerifierError if not). ``verify=False`` runs it unverified, sandboxed: the JIT checks every
        memory access against the run's memory, as the interpreter does. log_level: the verifier
        log's detail (1: the path to an error, 2: every state). flags: BPF_PROG_LOAD's prog_flags
        (``BPF_F_*``; check_program_flags says which a load takes: ProgramFlagsError if not); None
        gives the type's default (default_flags: BPF_F_SLEEPABLE for syscall programs, else 0)."""
        if prog_type not in PROGRAM_TYPES:
            raise BPFError(f"unknown program type {prog_type!r} (known: {', '.join(PROGRAM_TYPES)})")
        self.type = PROGRAM_TYPES[prog_type]
        self.env = replace(env if env is not None else Environment(), program_type=self.type.kernel_type)
        self.name = name
        self.prog_type = prog_type
        self.original_insns = list(insns)  # as loaded; self.insns is what runs (ctx accesses rewritten)
        # BPF_PROG_LOAD's prog_flags, as the kernel would be given them (libbpf's bpf_program__flags
        # plus what the section's definition adds at load).
        self.flags = check_program_flags(default_flags(prog_type) if flags is None else flags, name)
        if len(self.original_insns) >= WARM_NATIVE_INSNS:
            _warm_native_interpreter()
        started = time.perf_counter()
        self.facts = cfg.analyse(self.original_insns, self.env.helpers,
                                 self.env.function_tokens.values() if self.env.function_tokens else (),
                                 unverified=not verify,
                                 jump_tables=program_tables(self.original_insns, self.env.ld_imm64_value))
        if self.type.layout is None:
            self.facts = replace(self.facts, trip_limit=RAW_LOOP_TRIPS,
                                 loop_edges=cfg.loop_edges(self.original_insns, self.facts))
        if verify:  # the verifier's rules (verify=False: no verifier, the bits alone)
            self.check_sleepable()
        # What the verifier proved (None: not verified).
        self.verification: Verdict | None = None
        if verify:
            self.verification = self._verify(log_level)
            self.facts = replace(self.facts, verified=True,
                                 checked_accesses=self.verification.checked_accesses,
                                 helper_args_proven=self.verification.helper_args_proven,
                                 zeroed_slots=self.verification.uninit_stack_reads, dead=self.verification.dead,
                                 pointer_moves=self.verification.pointer_moves,
                                 pointer_compares=self.verification.pointer_compares,
                                 callx_sites=self.verification.callx_sites)
            if self.verification.bounded_loops:  # loops a counter bounded by the length ends
                self.facts = replace(self.facts, loop_edges=frozenset(
                    edge for edge in self.facts.loop_edges if edge[1] not in self.verification.bounded_loops))
        self._claim_prog_arrays()
        self.insns = self.original_insns
        if self.type.layout is not None:
            self.insns = rewrite_ctx_access(self.original_insns, self.facts, self.type.layout,
                                            self.verification.ctx_accesses if self.verification else None)
        self.check_seconds = time.perf_counter() - started  # checks + rewrite: "verify" in bench
        # The native interpreter's image is built now: cheap, it is what lets engine="auto" give a
        # first result at once, and resolving every ld_imm64 reports a bad pseudo source at load.
        self._image = build_image(self.insns, self.env, self.facts.function_starts, self.facts.checked_accesses,
                                  self.facts.callx_sites, self.facts.trip_limit, self.facts.loop_edges,
                                  self.facts.verified)
        self._compiled: dict[bool, CompiledProgram] = {}  # by sandboxed: the normal and the budgeted code
        self._compile_lock = threading.Lock()
        self._native_lock = threading.Lock()
        self._native: native_interp.HelperTable | None = None  # the image's helpers, once bound
        self._tiering: dict[bool, Tiering] = {}  # by sandboxed: engine="auto"'s background compile

    def check_sleepable(self) -> None:
        """The kernel verifier's rules on BPF_F_SLEEPABLE (program_flags.check_sleepable) on the
        maps this program's ld_imm64 instructions name and on its type."""
        named = self._used_maps() if self.flags & BPF_F_SLEEPABLE else []
        check_sleepable(self.name, self.flags, self.prog_type, self.type.kernel_type, named)

    @functools.cached_property
    def ctx_reach(self) -> int:
        """How far into its context the program reaches: the end of its furthest context access
        (the kernel verifier's max_ctx_offset; every such access is at a constant offset from the
        context's start). 0 for a program that was not verified."""
        insns = self.original_insns
        accesses = self.verification.ctx_accesses if self.verification is not None else ()
        return max((insns[index].off + isa.SIZE_BYTES[insns[index].size] for index in accesses), default=0)

    @property
    def tail_call_kind(self) -> tuple[str, bool]:
        """What a prog array it shares with other programs must agree on (ProgArray.claim)."""
        return self.type.kernel_type, bool(self.flags & BPF_F_XDP_HAS_FRAGS)

    def _claim_prog_arrays(self) -> None:
        """Load, as the kernel's bpf_check_tail_call: each prog array the program names takes its
        kind, or refuses it (MapError, EINVAL) for another kind's."""
        for _, found in self._used_maps():
            if isinstance(found, ProgArray):
                found.claim(self.tail_call_kind, f"program {self.name!r}")

    def _used_maps(self) -> list[tuple[int, Map]]:
        """(instruction, map) for each map an ld_imm64 names in the program's entry function and
        the functions it calls or hands to a helper (the kernel's used maps: libbpf links in
        those functions alone, where bpfjit also links the ones only global data points to)."""
        insns, named = self.original_insns, []
        functions = {function.start: function for function in self.facts.functions}
        used, todo = {0}, [0]
        while todo:
            function = functions[todo.pop()]
            taken = set()
            for index in range(function.start, function.end):
                insn = insns[index]
                if not insn.is_lddw or isa.is_filler(insns, index):
                    continue
                if insn.src == isa.PSEUDO_FUNC:
                    taken.add(insn.call_target(index))
                elif insn.src in _MAP_SOURCES:
                    try:  # the map itself, for any source (a bad fd or index is the verifier's to report)
                        found = map_from_handle(self.env.ld_imm64_value(replace(insn, src=_MAP_SOURCES[insn.src]),
                                                                        index))
                    except BPFError:
                        continue
                    if found is not None:
                        named.append((index, found))
            for start in (function.calls | taken) - used:
                used.add(start)
                todo.append(start)
        return sorted(named, key=lambda pair: pair[0])  # in instruction order, as the kernel meets them

    def _verify(self, log_level: int) -> Verdict:
        """The verifier's verdict: from the cache when this program was accepted before. The key
        holds the flags: the verifier reads none of them today (those that would change its
        verdict are refused or checked before it, check_program_flags), and a verdict reached
        under some flags must not answer for others if it ever does."""
        cacheable = log_level <= 1
        verdict_key = verdicts.key(f"{verifier_inputs(self.original_insns, self.env, self.type)}\n"
                                   f"prog_flags {self.flags:#x}") if cacheable else None
        cached = verdicts.lookup(verdict_key) if cacheable else None
        if cached is not None:
            return cached
        try:
            verdict = verify_program(self.original_insns, self.facts, self.env, self.type, log_level)
        except VerifierError as error:
            insns = self.original_insns
            insn = insn_text(insns[error.index]) if 0 <= error.index < len(insns) else ""
            raise VerifierError(error.index, error.message, error.log, error.line, self.name, insn) from None
        if cacheable:
            verdicts.store(verdict_key, verdict)
        return verdict

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, code: bytes, prog_type: str = "raw", helpers: HelperRegistry | None = None,
                   name: str = "prog", verify: bool = True, log_level: int = 1,
                   flags: int | None = None) -> "Program":
        """A program from raw bytecode (8-byte little-endian slots)."""
        return cls(isa.decode(code), Environment(helpers=helpers or HelperRegistry()), name, prog_type, verify,
                   log_level, flags)

    @classmethod
    def from_asm(cls, text: str, prog_type: str = "raw", helpers: HelperRegistry | None = None,
                 name: str = "prog", verify: bool = True, log_level: int = 1,
                 flags: int | None = None) -> "Program":
        """A program from bpf_conformance-syntax assembly."""
        return cls(assembler.assemble_insns(text), Environment(helpers=helpers or HelperRegistry()), name,
                   prog_type, verify, log_level, flags)

    @property
    def bytecode(self) -> bytes:
        return isa.encode(self.insns)

    def disassemble(self) -> str:
        return disasm.listing(self.insns, [(f.start, self.name if f.start == 0 else f"f{f.start}")
                                           for f in self.facts.functions])

    # --- compiling -----------------------------------------------------------------------------
    def compile(self, sandboxed: bool = False) -> CompiledProgram:
        """The jitted code (compiled once, on first use), its static-branch sites set to their keys.

        sandboxed: the variant runs with a budget use (max_steps, timeout), which counts the
        instructions it executes and polls the stop flag; the normal code does neither.
        """
        from .jit.engine import compile_program
        with self._compile_lock:
            compiled = self._compiled.get(sandboxed)
            if compiled is None:
                compiled = compile_program(self.insns, self.facts, self.env, sandboxed=sandboxed,
                                           verified=self.facts.verified and self.facts.helper_args_proven)
                likely = {site.index: self.insns[site.index].src == isa.STATIC_BRANCH_JA for site in compiled.sites}
                self._attach_sites(compiled, [(site.index, PatchableWord(NativeSite(site.address, site.target,
                                                                                    likely[site.index])))
                                              for site in compiled.sites])
                self._compiled[sandboxed] = compiled
            return compiled

    def tail_call_entry(self) -> int | None:
        """The entry point of this program's jitted code that prog arrays may call natively
        (runtime/maps/fd_array.py ProgArray), or None: the program was not verified (its helpers
        are not native) or its code cannot be entered so (jit/engine.py tail_call_entry). A
        prog array holds programs of its callers' type alone (ProgArray.claim), so a native
        switch keeps the running type that helpers such as bpf_redirect act by. Compiled now if
        need be; a compile that fails leaves it to the run to report."""
        if not self._may_be_tail_called():
            return None
        try:
            return self.compile().tail_call_entry
        except BPFError:
            return None

    def tail_call_image(self) -> int | None:
        """The address of this program's bound image that prog arrays may hand the native
        interpreter's tail calls (runtime/maps/fd_array.py ProgArray.image_table), or None: as
        for tail_call_entry, and also when the image binds a Python helper that calls back
        (native_interp.HelperTable.calls_back) or has traps (the run reports a trap by the image
        it started with)."""
        if not self._may_be_tail_called():
            return None
        image = self._native_image()
        if self._native.calls_back or image.traps:
            return None
        return ctypes.addressof(image.header)

    def _may_be_tail_called(self) -> bool:
        """Whether native code may switch to this program without bpfjit.program: its helpers
        are native (verified, arguments proven)."""
        return self.facts.verified and self.facts.helper_args_proven

    def prepare(self, engine: Engine = "jit") -> None:
        """Build now what the first run on `engine` would build (the JIT's code; the native
        interpreter and the program's bound image), so that timed runs time the program alone."""
        if engine not in RUN_ENGINES:
            raise BPFError(f"unknown engine {engine!r} (known: {', '.join(RUN_ENGINES)})")
        if engine == "jit":
            self.compile()
        elif engine == "interp":
            self._native_image()
            _interpreter()
        self._publish_tail_call_targets(engine)

    @functools.cached_property
    def _prog_arrays(self) -> list[ProgArray]:
        """The prog arrays the program names (its tail calls go through them), among the ld_imm64
        values its image resolved at load (a scan of a large program here held up its first run)."""
        return [found for found in map(map_from_handle, sorted(self._image.loaded)) if isinstance(found, ProgArray)]

    def _publish_tail_call_targets(self, engine: str) -> None:
        """Fill the entries of the prog arrays this program tail-calls through that the engine
        reads: the JIT's native entries (each target compiled now if need be, so that jitted runs
        compile nothing while timed; a target's own arrays are filled by the helper, on their
        first tail call) or the native interpreter's images (each target's image bound now).
        For the interpreter, the arrays its targets name too, and theirs in turn: nothing fills
        them in a run (the tail-call helper fills the JIT's table only). The reference
        interpreter reads none."""
        if engine not in ("jit", "interp"):
            return
        programs, seen = [self], {id(self)}
        while programs:
            for prog_array in programs.pop()._prog_arrays:
                for index in range(prog_array.max_entries):
                    if engine == "jit":
                        prog_array.publish_entry(index)
                    else:
                        prog_array.publish_image(index)
                        target = prog_array.program(index)
                        if isinstance(target, Program) and id(target) not in seen:
                            seen.add(id(target))
                            programs.append(target)

    def _native_image(self) -> "native_interp.ProgramImage":
        """The program's image for the native interpreter, its helpers bound on first use; its
        static-branch sites belong to their keys from then on, as the JIT's do."""
        from .jit import native_interp
        with self._native_lock:  # not the compile lock: the image is wanted while the JIT compiles
            if self._native is None:
                helpers = native_interp.HelperTable(self.env, self.facts.verified and self.facts.helper_args_proven)
                self._image.bind_helpers(helpers.address)
                self._attach_sites(self._image, self._image.branch_flags())
                self._native = helpers  # its callbacks live as long as the image
            return self._image

    def _native_checked(self, sandboxed: bool) -> bool:
        """The native interpreter's checked variant: for unverified programs and budgeted runs."""
        return not self.facts.verified or sandboxed

    def _attach_sites(self, owner: object, sites: Sequence[tuple[int, Patchable]]) -> None:
        """Hand each static-branch site (slot, patchable) of freshly built code to its key, so
        toggles reach it from now on; a site without a key is set as a disabled key's."""
        unkeyed: list[Patchable] = []
        by_key: dict[int, tuple[StaticKey, list[Patchable]]] = {}
        for index, site in sites:
            key = self.env.static_keys.get(index)
            if key is None:
                unkeyed.append(site)
            else:
                by_key.setdefault(id(key), (key, []))[1].append(site)
        for key, keyed in by_key.values():
            key.attach(owner, keyed)
        set_default(unkeyed)

    # --- static keys ---------------------------------------------------------------------------
    def declare_static_key(self, key: "StaticKey | str", sites: Sequence[int]) -> StaticKey:
        """Let `key` switch the static-branch JAs (goto_or_nop / nop_or_goto) at these slots.

        For raw bytecode and assembly; objects built with bpfjit's static_keys.h declare their
        keys in the object. Declare keys before the program is first compiled.
        """
        if self._compiled or self._native is not None:
            raise BPFError(f"{self.name}: declare static keys before the program is first compiled or run")
        key = StaticKey(key) if isinstance(key, str) else key
        for index in sites:
            insn = self.insns[index] if 0 <= index < len(self.insns) else None
            if insn is None or insn.op != isa.JA or not insn.is_jump or not insn.src & isa.STATIC_BRANCH_JA:
                raise BPFError(f"insn {index} is not a static-branch JA (goto_or_nop / nop_or_goto)")
            self.env.static_keys[index] = key
        return key

    # --- running -------------------------------------------------------------------------------
    def run(self, mem: bytes | bytearray = b"", engine: Engine = "jit", max_steps: int | None = None,
            timeout: float | None = None) -> int:
        """Run once with r1 = a copy of mem, r2 = len(mem); return r0.

        A bytearray is updated in place with the memory as the program left it. max_steps and
        timeout bound the run as in test_run.
        """
        # raw programs only take memory
        result = self.test_run(mem, engine=engine, max_steps=max_steps, timeout=timeout)
        if isinstance(mem, bytearray):
            mem[:] = result.data_out
        return result.retval

    def test_run(self, data: bytes | bytearray = b"", ctx: bytes | None = None, repeat: int = 1,
                 engine: Engine = "jit", max_steps: int | None = None, timeout: float | None = None,
                 data_size_out: int | None = None, ctx_size_out: int | None = None) -> RunResult:
        """BPF_PROG_TEST_RUN: run `repeat` times on the same memory (state in maps persists).

        Raw programs get r1 = a copy of data, r2 = its length. Packet programs (xdp, socket, tc)
        get r1 = their context, built from ctx (the uapi struct's bytes, pointer fields zero)
        around a copy of data; data_out is the packet afterwards and ctx_out the context.

        data_size_out and ctx_size_out are the sizes of the caller's output buffers, with the
        kernel's rules (docs/semantics.md, Test runs): an output longer than its buffer is cut
        to it, its full size is reported and RunResult.errno is ENOSPC; data_size_out None or 0
        copies the whole packet; a ctx_size_out alone runs on a zeroed ctx; ctx_size_out 0 is
        refused (EINVAL), as are either size for ctx-only program types. Input the kernel's test
        run refuses raises TestRunError, with the kernel's errno and the field at fault.
        duration_ns is the mean time per run; for the JIT the repeat loop is native code and times
        itself (CLOCK_MONOTONIC around the loop, as the kernel's test run), without Python's call.

        Runs are unlimited by default. max_steps bounds the instructions each run executes
        (bpf-to-bpf calls, callbacks and tail calls included) and timeout the seconds the whole
        call may take, on either engine: a run that spends its budget raises BPFRuntimeError
        ("instruction budget of N exhausted", "time budget of X s exhausted"). Budgeted JIT
        runs use a separately compiled, counting variant of the program and repeat from Python.
        """
        if engine not in RUN_ENGINES:
            raise BPFError(f"unknown engine {engine!r} (known: {', '.join(RUN_ENGINES)})")
        limits = Limits(max_steps, timeout)
        repeat = max(1, int(repeat))
        if self.type.kernel_type == "RAW_TRACEPOINT" and len(ctx or b"") < self.ctx_reach:
            # bpf_prog_test_run_raw_tp: ctx_size_in below the verifier's max_ctx_offset is EINVAL.
            raise TestRunError(f"{self.name}: the ctx has {len(ctx or b'')} bytes, and the program reads "
                               f"{self.ctx_reach}", errno.EINVAL, "ctx_in")
        memory = run_memory(self.type, self.name, bytes(data), ctx, OutputSizes(data_size_out, ctx_size_out))
        regions = Regions(self.env.regions + memory.regions)
        redirect = RedirectInfo()
        with Watchdog(limits) as watchdog:
            if engine == "auto":
                retval, elapsed, tiers = self._tiered_runs(memory, regions, watchdog, repeat, redirect)
            else:
                retval, elapsed = self._timed_runs(engine, memory, regions, watchdog, repeat, redirect)
                tiers = {engine: repeat}
        out = memory.output()
        redirect_action = XDP_REDIRECT if self.type.kernel_type == "XDP" else TC_ACT_REDIRECT
        target = redirect.target if retval & isa.MASK32 == redirect_action else None
        return RunResult(retval, out.data_out, elapsed / repeat, out.ctx_out, tiers, target,
                         out.data_size_out, out.ctx_size_out, out.errno)

    def run_capture(self, packets: Iterable[bytes], engine: Engine = "jit", threads: int = 1,
                    keep_data: bool = True) -> "CaptureRun":
        """Run once on each packet, in order, on the same maps, as an attached program sees a
        link's traffic (bpfjit/capture.py): iterate the result for each packet's
        :class:`~bpfjit.capture.PacketResult` (r0, the packet out, a redirect, or the error).
        Each packet's memory is that of a test run of its own. threads > 1 shares the packets
        out over that many threads, each with its own slot in per-CPU maps; keep_data=False
        keeps no packet bytes (counting actions over a long capture)."""
        from .capture import CaptureRun
        return CaptureRun(self, packets, engine, threads, keep_data)

    def _timed_runs(self, engine: str, memory: RunMemory, regions: Regions, watchdog: Watchdog,
                    repeat: int, redirect: RedirectInfo) -> tuple[int, int]:
        """`repeat` runs on one engine: (r0 of the last, the nanoseconds they took)."""
        bounded = watchdog.limits.bounded
        if engine == "jit":
            self.compile(bounded)
        if not bounded:
            self._publish_tail_call_targets(engine)
        start = time.perf_counter_ns()
        if engine == "jit" and not bounded:
            native = ctypes.c_uint64()  # timed by the native repeat loop itself
            retval = self._invoke("jit", memory, regions, watchdog, redirect, repeat, native)
            return retval, native.value
        if engine == "interp" and not bounded:
            retval = self._invoke("interp", memory, regions, watchdog, redirect, repeat)  # the repeat loop is native
            return retval, time.perf_counter_ns() - start
        for _ in range(repeat):
            retval = self._invoke(engine, memory, regions, watchdog, redirect)
        return retval, time.perf_counter_ns() - start

    def _tiered_runs(self, memory: RunMemory, regions: Regions, watchdog: Watchdog,
                     repeat: int, redirect: RedirectInfo) -> tuple[int, int, dict[str, int]]:
        """engine="auto": runs on the native interpreter, in growing chunks, until the JIT's code
        (compiled in the background from the first such run on) is ready; the rest on the JIT."""
        tiering = self._tiering_for(watchdog.limits.bounded)
        done, elapsed, chunk, tiers = 0, 0, 0, {}
        while done < repeat:
            tier = tiering.tier()
            count = repeat - done if tier == "jit" else chunk_runs(chunk, elapsed / max(done, 1), repeat - done)
            retval, ns = self._timed_runs(tier, memory, regions, watchdog, count, redirect)
            done, elapsed, chunk = done + count, elapsed + ns, count
            tiers[tier] = tiers.get(tier, 0) + count
            tiering.start()
        return retval, elapsed, tiers

    def wait_for_jit(self, timeout: float | None = None) -> bool:
        """With engine="auto": block until the JIT's code is ready; whether it is (a compile that
        failed raises at the next run)."""
        return self._tiering_for(False).wait(timeout)

    def _tiering_for(self, sandboxed: bool) -> Tiering:
        """The tiering of this variant of the code (made on first use). Not under the compile
        lock, which the background compile holds for as long as it runs."""
        with self._native_lock:
            if sandboxed not in self._tiering:
                self._tiering[sandboxed] = Tiering(lambda: self.compile(sandboxed))
            return self._tiering[sandboxed]

    def _invoke(self, engine: str, memory: RunMemory, regions: Regions, watchdog: Watchdog,
                redirect: RedirectInfo, repeat: int = 1, elapsed: ctypes.c_uint64 | None = None) -> int:
        """One invocation (or `repeat` native ones): tail calls followed, failures raised. The
        native loops stop early at a run whose tail call they left to Python: that run's chain is
        followed, then the loop goes on with the runs left."""
        env = watchdog.new_env()
        sandboxed = watchdog.limits.bounded
        # Checked accesses read the run's memory (verified raw programs) or regions (unverified).
        env.mem_start, env.mem_size = (memory.r1, memory.r2) if self.type.layout is None else (0, 0)
        table = regions.table()
        env.regions, env.region_count = ctypes.addressof(table), len(table) // 3
        native_ns, left = 0, repeat
        while True:
            chain = self._chain(engine, memory, regions, env, redirect, left, sandboxed)
            native_ns, left = native_ns + chain.native_ns, left - chain.runs
            if left == 0 or env.status != Status.OK:
                break
            env.tail_calls = env.trips = 0  # the next run is an invocation of its own
        if elapsed is not None:
            elapsed.value = native_ns
        return settle(env, chain, regions)

    def _chain(self, engine: str, memory: RunMemory, regions: Regions, env: RunEnv, redirect: RedirectInfo,
               repeat: int, sandboxed: bool) -> "_ChainEnd":
        """Runs of this program (`repeat` of them where the engine repeats natively) until one
        ends, that one's tail calls followed program by program."""
        program, runs, made, native_ns = self, repeat, None, 0
        while True:
            caller = program._function_caller(engine, env, regions, sandboxed)
            # The JIT keeps a verified program's stack in native frames: helpers may accept
            # pointers there (an unverified one's frames are listed in env.frames instead).
            run = RunContext(env, program.env, caller, regions,
                             native_stack=engine in ("jit", "interp") and program.facts.verified,
                             redirect=redirect, native_tail_calls=engine == "jit" and not sandboxed)
            count = runs
            with run_context.active(run):
                if engine == "jit":
                    ns, count_out = ctypes.c_uint64(), ctypes.c_uint64()
                    retval = program.compile(sandboxed).run(env, memory.r1, memory.r2, runs, ns, count_out)
                    native_ns, count = native_ns + ns.value, count_out.value
                elif engine == "interp":
                    image, count_out = program._native_image(), ctypes.c_uint64()
                    retval = _interpreter().run(image, env, memory.r1, memory.r2, runs,
                                                program._native_checked(sandboxed), count_out)
                    count = count_out.value
                else:
                    interpreter = Interpreter(program.insns, program.env, program.facts.function_starts,
                                              program.facts.callx_sites, program.facts.trip_limit,
                                              program.facts.loop_edges, program.facts.verified)
                    retval = interpreter.run(memory.r1, memory.r2, regions, env)
            made = count if made is None else made
            if env.status != Status.TAIL_CALL:
                return _ChainEnd(retval, program, run.errors, made, native_ns)
            # The caller's frames are gone (a sandboxed one unwound without unlisting its own).
            env.status, env.frame_count, program, runs = Status.OK, 0, run.tail_call_target, 1

    def _function_caller(self, engine: str, env: RunEnv, regions: Regions, sandboxed: bool):
        """How helpers such as bpf_loop call one of this program's functions, on this engine."""
        if engine == "jit":
            compiled = self.compile(sandboxed)
            return lambda start, args: compiled.call_function(env, start, args)
        if engine == "interp":
            image, checked = self._native_image(), self._native_checked(sandboxed)
            return lambda start, args: _interpreter().call_function(image, env, start, args, checked)

        def interpret(start: int, args: list[int]) -> int:
            interpreter = Interpreter(self.insns, self.env, self.facts.function_starts, self.facts.callx_sites,
                                      self.facts.trip_limit, self.facts.loop_edges, self.facts.verified)
            return interpreter.run_function(start, args, regions, env)
        return interpret


class _ChainEnd(NamedTuple):
    """How Program._chain's runs ended: r0 and the program of the last, the errors of its failed
    helpers, how many runs were made, and the nanoseconds the JIT's native loops measured."""
    retval: int
    program: Program
    errors: list[BaseException]
    runs: int
    native_ns: int


def settle(env: RunEnv, chain: _ChainEnd, regions: Regions) -> int:
    """The r0 of an invocation whose chain of runs ended so, or its failure raised (from the
    status the runs left in env)."""
    if env.status == Status.HELPER_FAILED:
        helper = chain.program.env.helpers.get(env.value)
        raise_for_status(env, chain.errors[0] if chain.errors else None, helper.name if helper else "")
    raise_for_status(env, regions=regions)
    return 0 if env.status == Status.UNWOUND else chain.retval


def _interpreter() -> "native_interp.NativeInterpreter":
    """The process's native interpreter (its module imported only now: it loads llvmlite)."""
    from .jit import native_interp
    return native_interp.interpreter()


# A program this large takes the verifier seconds: LLVM and the native interpreter (~40 ms to load,
# once per process) load beside it on a thread of their own, so that its first native run, the
# one engine="auto" answers at once, does not wait for them. Smaller programs load no LLVM until
# they run natively.
WARM_NATIVE_INSNS = 10_000
_warm_lock = threading.Lock()
_warm_started: list[bool] = []


def _warm_native_interpreter() -> None:
    with _warm_lock:
        if _warm_started:
            return
        _warm_started.append(True)
    threading.Thread(target=_load_interpreter_quietly, name="bpfjit-warm-interpreter", daemon=True).start()


def _load_interpreter_quietly() -> None:
    try:
        _interpreter()
    except Exception:  # noqa: BLE001 - the first native run loads it again and reports what failed
        pass
