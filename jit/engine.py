"""From LLVM IR text to callable native code: target machine, pass pipeline, MCJIT, lifetimes.

One :class:`CompiledProgram` owns exactly one MCJIT engine (which owns its module, its target
machine and the machine code) and the ctypes callbacks that code calls. ``close()`` releases the
engine; a finalizer does the same when the object is collected. The callbacks live exactly as
long as the CompiledProgram, so no machine code can call a freed callback.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
import pathlib
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Sequence

import llvmlite.binding as llvm
from elftools.elf.elffile import ELFFile

from bpfjit import isa
from bpfjit.errors import JITError
from bpfjit.isa import Insn, MASK64
from bpfjit.runtime.environment import Environment
from bpfjit.runtime import run_context
from bpfjit.runtime.helpers import Helper
from bpfjit.runtime.stdhelpers import FOR_EACH_MAP_ELEM, LOOP, TAIL_CALL
from bpfjit.runtime.status import (FIELD_STACK_TOP, FIELD_STATUS, FIELD_TAIL_CALLS, FIELD_TRIPS, INSN_PENDING, RunEnv,
                                   Status)
from bpfjit.verifier.facts import Facts

from . import cache, native_helpers
from .lower import lower_program
from .sites import Site, read_sites

HELPER_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, *(ctypes.c_uint64,) * 5)
REPEAT_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.POINTER(RunEnv), ctypes.c_uint64,
                               ctypes.c_uint64, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64),
                               ctypes.POINTER(ctypes.c_uint64))


def record_stack_top() -> str:
    """IR that records in RunEnv.stack_top (%env) where the program's native frames will begin:
    the stack pointer at the call, less the return address."""
    return f"""
  %sp = call i64 asm sideeffect "movq %rsp, $0", "=r"()
  %top = sub i64 %sp, 8
  %top_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_STACK_TOP}
  store i64 %top, ptr %top_field"""


def store_elapsed() -> str:
    """IR that stores in %elapsed the nanoseconds from timespec %before to timespec %after."""
    return """
  %s0 = load i64, ptr %before
  %s1 = load i64, ptr %after
  %ns0_at = getelementptr inbounds i64, ptr %before, i64 1
  %ns1_at = getelementptr inbounds i64, ptr %after, i64 1
  %ns0 = load i64, ptr %ns0_at
  %ns1 = load i64, ptr %ns1_at
  %seconds = sub i64 %s1, %s0
  %whole = mul i64 %seconds, 1000000000
  %part = sub i64 %ns1, %ns0
  %total = add i64 %whole, %part
  store i64 %total, ptr %elapsed"""


# Every run enters jitted code here: test_run's repeat loop, shared by every program, calls the
# program's main function (r1 = ctx, r2 = len, r3-r5 = 0) n times. The callee is an argument, so
# LLVM cannot see (or hoist) the work, and the loop is compiled once per process instead of once
# per program. It first records in RunEnv.stack_top where the program's native frames begin (the
# stack pointer at the call, less the return address): the BPF stack frames lie below it, and
# helpers accept pointers into the native stack only there (runtime/helper_args.py). It times
# the runs itself (CLOCK_MONOTONIC around the loop, as the kernel's test run does), so a run's
# duration is the program's, not the Python call's around it; how many runs it made is left in
# *runs. Each run is an invocation of its own: for a program that counts its loop trips or
# makes tail calls (the full loop, bpfjit_repeat), the tail-call and trip counts start again
# from 0 for the next run, and a run that ends in a tail call the JIT could not make natively
# (status TAIL_CALL: bpfjit.program runs the target) ends the loop. Other programs use
# bpfjit_repeat_plain, which does neither: the five instructions a run cost a 20 ns program 5%.
def _repeat_name(full: bool) -> str:
    return "bpfjit_repeat" if full else "bpfjit_repeat_plain"


@functools.lru_cache(maxsize=2)  # built once each: test_run asks for the loop on every call
def _repeat_ir(full: bool) -> str:
    name = _repeat_name(full)
    fields = f"""
  %status_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_STATUS}
  %tail_calls_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_TAIL_CALLS}
  %trips_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_TRIPS}""" if full else ""
    go = f"""
  %status = load volatile i64, ptr %status_field
  %stays = icmp ne i64 %status, {int(Status.TAIL_CALL)}
  %go = and i1 %more, %stays""" if full else ""
    again = """
  store volatile i64 0, ptr %tail_calls_field
  store volatile i64 0, ptr %trips_field""" if full else ""
    return f"""
declare i32 @clock_gettime(i32, ptr)

define i64 @{name}(ptr %fn, ptr %env, i64 %ctx, i64 %len, i64 %n, ptr %elapsed, ptr %runs) {{
entry:
  %before = alloca [2 x i64]
  %after = alloca [2 x i64]{record_stack_top()}{fields}
  call i32 @clock_gettime(i32 1, ptr %before)
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %again ]
  %r = call i64 %fn(ptr %env, i64 %ctx, i64 %len, i64 0, i64 0, i64 0)
  %next = add i64 %i, 1
  %more = icmp ult i64 %next, %n{go}
  br i1 {"%go" if full else "%more"}, label %again, label %done
again:{again}
  br label %loop
done:
  call i32 @clock_gettime(i32 1, ptr %after){store_elapsed()}
  store i64 %next, ptr %runs
  ret i64 %r
}}
"""


_shared_lock = threading.Lock()
# name -> (the engine holding the function, which lives as long as the process; its ctypes function)
_shared: dict[str, tuple[llvm.ExecutionEngine, object]] = {}


def shared_function(key: str, ir: str, ctype, symbol: str | None = None):
    """Function `symbol` (default: `key`) of module `ir`, as a `ctype`, compiled on first use
    and kept under `key` for the life of the process."""
    with _shared_lock, llvm_lock:
        if key not in _shared:
            tm = target_machine()
            module = llvm.parse_assembly(ir)
            module.triple = tm.triple
            engine = llvm.create_mcjit_compiler(module, tm)
            engine.finalize_object()
            _shared[key] = (engine, ctype(engine.get_function_address(symbol or key)))
        return _shared[key][1]


def repeat_loop(full: bool = True):
    """The shared repeat loop: the full one, or the plain one (_repeat_ir)."""
    return shared_function(_repeat_name(full), _repeat_ir(full), REPEAT_TYPE)


_host_lock = threading.Lock()
_host: tuple[llvm.Target, str, str] | None = None
_local = threading.local()  # per thread: the target machine that optimises and emits code
# Everything that touches LLVM's global context (parsing, optimising, emitting, creating and
# closing engines, linking) holds this lock: the context is not thread-safe, and the tiered
# start (jit/tiers.py) and threads that run programs compile from several threads. Binding a
# module's symbols (llvm.add_symbol is process-wide) and resolving them in finalize_object() also
# happen together under it: two programs may bind the same name differently. Re-entrant: an
# engine's finalizer may run (a garbage collection) while its thread holds it.
llvm_lock = threading.RLock()


# Routines LLVM's x86-64 code generator calls for what the CPU has no instruction for: 128-bit
# division and remainder, which the loop passes use to count a loop's trips when its step is
# not a power of two (``for (p = mem; p < end; p += 9)``). They live in libgcc (compiler-rt's
# builtins elsewhere), which a Python process need not have loaded: unbound, MCJIT linked the
# calls to address 0, and such a program crashed the host on its first run.
RUNTIME_LIBRARY = ("__udivti3", "__umodti3", "__divti3", "__modti3", "__multi3")


def _bind_runtime_library() -> None:
    """Bind the runtime library's routines for every engine (llvm.add_symbol is process-wide);
    those this machine lacks stay unbound, and code that calls them is refused when emitted."""
    try:
        library = ctypes.CDLL(ctypes.util.find_library("gcc_s") or "libgcc_s.so.1")
    except OSError:
        return
    for name in RUNTIME_LIBRARY:
        routine = getattr(library, name, None)
        if routine is not None:
            llvm.add_symbol(name, ctypes.cast(routine, ctypes.c_void_p).value)


def host() -> tuple[llvm.Target, str, str]:
    """The host target, CPU name and CPU features (LLVM initialised on first use)."""
    global _host
    with _host_lock:
        if _host is None:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            llvm.initialize_native_asmparser()  # inline asm: the patchable static-branch sites
            _bind_runtime_library()
            _host = (llvm.Target.from_default_triple(), llvm.get_host_cpu_name(),
                     llvm.get_host_cpu_features().flatten())
        return _host


def target_machine() -> llvm.TargetMachine:
    """A fresh target machine for the host CPU and its features.

    Each MCJIT engine takes ownership of the target machine it is given (and frees it with the
    engine), so every compiled program gets its own; only the host description is cached.
    """
    target, cpu, features = host()
    return target.create_target_machine(cpu=cpu, features=features, opt=3, codemodel="jitdefault")


def linking_machine() -> llvm.TargetMachine:
    """A target machine for an engine that only links object code it is handed (the object
    cache hook): it never generates code, so the generic CPU will do, and building one costs a
    tenth of a host-tuned one (0.02 vs 0.2 ms, paid on every compile)."""
    target, _, _ = host()
    return target.create_target_machine(codemodel="jitdefault")


def compiling_machine() -> llvm.TargetMachine:
    """This thread's long-lived target machine for optimising and emitting object code."""
    tm = getattr(_local, "tm", None)
    if tm is None:
        tm = _local.tm = target_machine()
    return tm


# The helpers whose Python implementations call the running program's functions back.
CALLS_BACK = frozenset({LOOP, FOR_EACH_MAP_ELEM})
FUNCTION_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(RunEnv), *(ctypes.c_uint64,) * 5)


def helper_callback(helper: Helper):
    def call(a: int, b: int, c: int, d: int, e: int) -> int:
        try:
            return int(helper.impl(a, b, c, d, e)) & MASK64
        except BaseException as exc:  # never let an exception unwind through native frames
            run = run_context.current_or_none()
            if run is None:  # called from native code outside any run: nowhere to report it
                return 0
            if run.env.status == Status.OK:  # else a callback it ran failed and said where
                run.env.status, run.env.value, run.env.insn = Status.HELPER_FAILED, helper.id, INSN_PENDING
            run.errors.append(exc)
            return 0
    return HELPER_TYPE(call)


@dataclass
class CompileTimes:
    """Where compile time went, in seconds (optimise and codegen are 0 on a cache hit)."""
    lower: float = 0.0
    optimise: float = 0.0
    codegen: float = 0.0
    link: float = 0.0
    cache_hit: bool = False


@dataclass
class CompiledProgram:
    ir: str
    _optimised_ir: str | pathlib.Path  # the text, or where the cache keeps it
    times: CompileTimes
    _engine: llvm.ExecutionEngine
    _callbacks: dict[int, object]
    _exported: frozenset[int]  # start slots of the functions callbacks may enter
    sites: list[Site]  # the patchable static-branch sites, every copy LLVM made of each
    bindings: dict[str, int]  # the module's symbols -> this process's addresses (jit/lower.py Symbols)
    full_runs: bool = True  # runs need the full repeat loop: they count loop trips or make tail calls
    _entry_address: int = field(init=False)

    def __post_init__(self) -> None:
        self._entry_address = self._engine.get_function_address("bpf_f0")
        self._finalizer = weakref.finalize(self, _release, self._engine)

    def run(self, env: RunEnv, r1: int, r2: int, repeat: int = 1, elapsed: ctypes.c_uint64 | None = None,
            runs: ctypes.c_uint64 | None = None) -> int:
        """Run the program (repeat times, in a native loop); return r0 of the last run.

        How the run ended is left in env for the caller (bpfjit.program) to act on; the
        nanoseconds the runs took, measured around the native loop, in `elapsed`; how many runs
        were made in `runs` (fewer than `repeat` when one ended in a tail call to finish in Python).
        """
        timing = elapsed if elapsed is not None else ctypes.c_uint64()
        made = runs if runs is not None else ctypes.c_uint64()
        return repeat_loop(self.full_runs)(self._entry_address, ctypes.byref(env), r1, r2, max(repeat, 1),
                                           ctypes.byref(timing), ctypes.byref(made))

    @property
    def tail_call_entry(self) -> int | None:
        """The entry point a prog array's native table may hold for this code (jit/lower.py
        tail calls call it with the caller's RunEnv), or None when the code binds a Python helper
        that calls back into BPF code (bpf_loop, bpf_for_each_map_elem not inlined): such a
        helper finds the function to call in the run's context, which names the program the
        run started with, so the target must run through bpfjit.program's tail-call loop."""
        if self._callbacks.keys() & CALLS_BACK:
            return None
        return self._entry_address

    def call_function(self, env: RunEnv, start: int, args: list[int]) -> int:
        """Call the BPF function at slot `start` (a helper's callback) with r1-r5 = args."""
        if start not in self._exported:
            raise ValueError(f"the function at insn {start} cannot be called back")
        function = FUNCTION_TYPE(self._engine.get_function_address(f"bpf_f{start}"))
        return function(ctypes.byref(env), *(a & MASK64 for a in args))

    @property
    def optimised_ir(self) -> str:
        if isinstance(self._optimised_ir, pathlib.Path):
            try:
                self._optimised_ir = self._optimised_ir.read_text()
            except OSError as exc:
                return f"; the optimised IR of this cached program is gone: {exc}\n"
        return self._optimised_ir

    def code_address(self) -> int:
        return self._entry_address

    def close(self) -> None:
        self._finalizer()


def _release(engine: llvm.ExecutionEngine) -> None:
    with llvm_lock:
        engine.close()


def compile_program(insns: Sequence[Insn], facts: Facts, env: Environment, opt_level: int = 2,
                    sandboxed: bool = False, verified: bool = False) -> CompiledProgram:
    """Lower a checked program, get its object code (from the cache, or optimised and emitted
    now), and link it into memory with this process's addresses. sandboxed: the variant that
    spends the run's instruction and time budgets (jit/lower.py). verified: the verifier proved
    the program's helper arguments, so helpers with a native implementation may use it."""
    callbacks: dict[int, object] = {}

    def helper_address(helper_id: int) -> int:
        if verified:
            native = native_helpers.native_address(helper_id, env)
            if native is not None:
                return native
        if helper_id not in callbacks:
            callbacks[helper_id] = helper_callback(env.helpers.get(helper_id))
        return ctypes.cast(callbacks[helper_id], ctypes.c_void_p).value

    t0 = time.perf_counter()
    ir, symbols = lower_program(insns, facts, env, sandboxed)
    times = CompileTimes(lower=time.perf_counter() - t0)
    _, cpu, features = host()
    cache_key = cache.key(ir, opt_level, cpu, features)
    cached = cache.lookup(cache_key)
    if cached is not None:
        obj, optimised = cached
        times.cache_hit = True
    else:
        obj, optimised = optimise_and_emit(ir, opt_level, times)
        cache.store(cache_key, obj, optimised)
    t1 = time.perf_counter()
    bindings = symbols.bindings(helper_address)
    engine = link_object(obj, bindings)
    times.link = time.perf_counter() - t1
    exported = frozenset(env.callx_targets(facts.function_starts))
    full_runs = (facts.trip_limit is not None and bool(facts.loop_edges)) or any(
        insn.opcode == isa.CALL_OP and insn.src == isa.CALL_HELPER and insn.imm == TAIL_CALL for insn in insns)
    return CompiledProgram(ir, optimised, times, engine, callbacks, exported, read_sites(engine), bindings,
                           full_runs)


def shared_object(ir: str) -> bytes:
    """The object code of a module every program shares, compiled once per machine at O2 (the
    native helpers): from the object cache under the hash of its IR, else optimised and emitted
    now and stored there."""
    _, cpu, features = host()
    return _cached_object(cache.key(ir, 2, cpu, features), lambda: ir)


def sourced_object(name: str, build_ir: Callable[[], str]) -> bytes:
    """As shared_object, for a module whose IR is a function of bpfjit's digested sources alone
    (cache.code_digest: the native interpreter's loop): it is looked up under its name, so a
    process whose cache has it never builds its IR (about 10 ms of Python)."""
    _, cpu, features = host()
    return _cached_object(cache.key(f"; the shared module {name}", 2, cpu, features), build_ir)


def _cached_object(cache_key: str, build_ir: Callable[[], str]) -> bytes:
    cached = cache.lookup(cache_key)
    if cached is not None:
        return cached[0]
    obj, optimised = optimise_and_emit(build_ir(), 2, CompileTimes())
    cache.store(cache_key, obj, optimised)
    return obj


def optimise_and_emit(ir: str, opt_level: int, times: CompileTimes) -> tuple[bytes, str]:
    with llvm_lock:
        return _optimise_and_emit(ir, opt_level, times)


# A module with more basic blocks than this is optimised by a short pipeline whose cost grows
# about linearly with its size. O2's SimplifyCFG is quadratic in a switch's cases (hoisting
# common code from, and deduplicating, thousands of successors), InstCombine in the compares on
# one value (its dominating-condition cache), and codegen's tail merging and block placement in
# blocks with common tails: a chain of 8,000 compares took 20-60 s at O2, 0.4 s this way.
# Every program of the bench and the tests has at most 150 blocks and keeps O2.
LARGE_MODULE_BLOCKS = 1000
_LARGE_PASSES = ("sroa", "instruction_combine", "sccp", "dead_code_elimination")
# Codegen options for those modules, as (option, its value then, its value otherwise).
_LARGE_CODEGEN = (("enable-tail-merge", "false", "true"), ("disable-block-placement", "true", "false"))
_LABEL = re.compile(r"^[^\s;]\S*:$", re.M)


def _optimise_and_emit(ir: str, opt_level: int, times: CompileTimes) -> tuple[bytes, str]:
    tm = compiling_machine()
    t0 = time.perf_counter()
    try:
        module = llvm.parse_assembly(ir)
        module.triple = tm.triple
        module.data_layout = str(tm.target_data)
        module.verify()
    except RuntimeError as exc:
        raise JITError(f"LLVM rejected the generated IR: {exc}") from None
    large = len(_LABEL.findall(ir)) > LARGE_MODULE_BLOCKS
    pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
    # The loop vectorizer (with interleaving) runs from O2: byte loops through typed pointers
    # (jit/lower.py) become vector copies and scans with a run-time overlap check, 10-30x faster
    # than byte by byte (memcpy, log2_int), for a few milliseconds of compile per loop program.
    # The SLP vectorizer and unrolling wait for O3: they bought no run time on the bench.
    pto.loop_vectorization = pto.loop_interleaving = opt_level >= 2
    pto.slp_vectorization = pto.loop_unrolling = opt_level >= 3
    pb = llvm.create_pass_builder(tm, pto)
    if large:
        passes = llvm.create_new_module_pass_manager()
        for name in _LARGE_PASSES:
            getattr(passes, f"add_{name}_pass")()
        passes.run(module, pb)
    else:
        pb.getModulePassManager().run(module, pb)
    optimised = str(module)
    t1 = time.perf_counter()
    try:
        for option, value, _ in _LARGE_CODEGEN if large else ():
            llvm.set_option("", f"-{option}={value}")  # process-wide: the caller holds llvm_lock
        obj = tm.emit_object(module)
    finally:
        for option, _, default in _LARGE_CODEGEN if large else ():
            llvm.set_option("", f"-{option}={default}")
    times.optimise, times.codegen = t1 - t0, time.perf_counter() - t1
    _check_bound(obj, module)
    return obj, optimised


def _check_bound(obj: bytes, module: llvm.ModuleRef) -> None:
    """Code generation may add calls the IR does not declare (RUNTIME_LIBRARY, memcpy): each must
    resolve, as bound by llvm.add_symbol or as the process's own (libc), or linking would bind
    it to address 0."""
    declared = {function.name for function in module.functions} | {var.name for var in module.global_variables}
    symbols = ELFFile(io.BytesIO(obj)).get_section_by_name(".symtab")
    for symbol in symbols.iter_symbols() if symbols is not None else ():
        name = symbol.name
        if name and symbol["st_shndx"] == "SHN_UNDEF" and name not in declared and not _resolvable(name):
            raise JITError(f"the compiled code calls {name}, which this process cannot provide")


def _resolvable(name: str) -> bool:
    if llvm.address_of_symbol(name) is not None:
        return True
    try:
        getattr(_PROCESS, name)
    except AttributeError:
        return False
    return True


_PROCESS = ctypes.CDLL(None)  # the symbols the process has loaded, which MCJIT falls back to


def assembly_of(ir: str) -> str:
    """x86-64 assembly of a module (optimised IR), as the code generator emits it for this host
    (RuntimeError if LLVM cannot)."""
    with llvm_lock:
        tm = target_machine()
        module = llvm.parse_assembly(ir)
        module.triple = tm.triple
        module.data_layout = str(tm.target_data)
        return tm.emit_assembly(module)


def link_object(obj: bytes, symbols: dict[str, int]) -> llvm.ExecutionEngine:
    """An engine holding object code linked in memory, its undefined symbols bound to these
    addresses (JITError if it cannot be linked)."""
    with llvm_lock:
        engine = llvm.create_mcjit_compiler(empty_module(), linking_machine())
        try:
            # MCJIT compiles the module it was created with when it finalizes; its object cache
            # hook hands it the object code instead, so no code generation runs here.
            engine.set_object_cache(getbuffer_func=lambda module: obj)
            for name, address in symbols.items():
                llvm.add_symbol(name, address)
            engine.finalize_object()
        except RuntimeError as exc:
            engine.close()
            raise JITError(f"linking compiled code failed: {exc}") from None
    return engine


def empty_module() -> llvm.ModuleRef:
    """The module an engine is created with; its machine code is the program's object code."""
    module = llvm.parse_assembly("")
    module.triple = llvm.get_process_triple()
    return module
