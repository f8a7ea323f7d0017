"""A program once per packet of captured traffic (``bpfjit run --pcap``, :meth:`Program.run_capture`),
as an attached program sees a link's packets: maps carry over from packet to packet, and each
packet's run has the memory a test run of its own would give it.

Verified XDP programs on the JIT and the native interpreter run their packets in native batches
(jit/batch.py): no Python per packet. Every other program, engine or packet (one with XDP frags)
goes through ``test_run``.
With ``threads`` > 1, chunks of packets are shared out over that many threads, each with its own
memory and its own slot in per-CPU maps (RunEnv.cpu), as a multi-queue NIC spreads a link over
CPUs; the results still come in capture order.
"""
from __future__ import annotations

import ctypes
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate
from typing import Iterable, Iterator, Sequence

from . import isa
from .errors import BPFError
from .program import RUN_ENGINES, XDP_REDIRECT, Program, _ChainEnd, _interpreter, settle
from .runtime import run_context
from .runtime.context import XDP_MD
from .runtime.memory import Regions
from .runtime.run_context import Redirect, RedirectInfo, RunContext
from .runtime.run_memory import XDP_LINEAR_MAX, run_memory
from .runtime.status import RunEnv, Status


def xdp_meta_len(prog_type: str, ctx_out: bytes | None) -> int:
    """How many bytes of metadata lead an XDP run's data_out: the xdp_md a test run copies back
    holds data as an offset from data_meta (xdp_convert_buff_to_md); 0 for other program types."""
    return int.from_bytes(ctx_out[:4], "little") if prog_type == "xdp" and ctx_out else 0

CHUNK_PACKETS = 1024  # packets per native batch, and per share of the work between threads


@dataclass(frozen=True)
class PacketResult:
    """One packet's run: r0, the packet afterwards as a test run reports it (``data_out``: an XDP
    packet's metadata first, ``meta_len`` bytes of it; None when the run was asked not to keep
    packets), where a redirect sends it, or the error that stopped its run (``retval`` None)."""
    index: int  # 0 for the capture's first packet
    data: bytes
    retval: int | None
    data_out: bytes | None = None
    meta_len: int = 0
    redirect: Redirect | None = None
    error: BPFError | None = None

    @property
    def packet_out(self) -> bytes | None:
        """The packet the run left, without metadata: what would go on the wire."""
        return None if self.data_out is None else self.data_out[self.meta_len:]


@dataclass
class Batch:
    """The results of a chunk of consecutive packets, as lists: a report of counts reads them
    without an object per packet."""
    start: int  # the index of the chunk's first packet
    packets: Sequence[bytes]
    retvals: list[int | None]  # None: the run failed (errors says why)
    data_outs: list[bytes | None]
    meta_lens: list[int]
    redirects: dict[int, Redirect]  # by position in the chunk
    errors: dict[int, BPFError]
    program_ns: int  # the time the program's runs took

    def results(self) -> Iterator[PacketResult]:
        for position, data in enumerate(self.packets):
            yield PacketResult(self.start + position, data, self.retvals[position], self.data_outs[position],
                               self.meta_lens[position], self.redirects.get(position), self.errors.get(position))


class CaptureRun:
    """The runs of a program over a sequence of packets, produced as they are iterated: per
    packet (``for result in run``) or per chunk (:meth:`batches`). ``program_ns`` (the program's
    time) and ``wall_ns`` (everything, Python included) are complete once iterated."""

    def __init__(self, program: Program, packets: Iterable[bytes], engine: str = "jit", threads: int = 1,
                 keep_data: bool = True):
        if engine not in RUN_ENGINES:
            raise BPFError(f"unknown engine {engine!r} (known: {', '.join(RUN_ENGINES)})")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise BPFError(f"threads must be a whole number of at least 1, not {threads!r}")
        self.program, self.engine, self.threads, self.keep_data = program, engine, threads, keep_data
        self.packets = [bytes(getattr(packet, "data", packet)) for packet in packets]
        self.program_ns = self.wall_ns = 0
        self._local = threading.local()
        native = engine in ("jit", "interp") and program.type.layout is XDP_MD and program.facts.verified
        self._lane_kind = _NativeXdpLane if native else _TestRunLane

    def __iter__(self) -> Iterator[PacketResult]:
        for batch in self.batches():
            yield from batch.results()

    def batches(self) -> Iterator[Batch]:
        self.program.prepare(self.engine)  # compiled before the clock starts, and not per thread
        if self._lane_kind is _NativeXdpLane:
            from .jit.batch import xdp_batch_loop
            xdp_batch_loop(self.engine)  # likewise the batch loop
        chunks = [(start, self.packets[start:start + CHUNK_PACKETS])
                  for start in range(0, len(self.packets), CHUNK_PACKETS)]
        started = time.perf_counter_ns()
        if self.threads == 1:
            batches: Iterator[Batch] = (self._run(start, chunk) for start, chunk in chunks)
        else:
            batches = self._threaded(chunks)
        for batch in batches:
            self.program_ns += batch.program_ns
            self.wall_ns = time.perf_counter_ns() - started
            yield batch

    def _threaded(self, chunks: list[tuple[int, list[bytes]]]) -> Iterator[Batch]:
        """The chunks run on the pool's threads, a few ahead of the consumer, in order."""
        pending = iter(chunks)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="bpfjit-capture") as pool:
            window = deque(pool.submit(self._run, *chunk) for chunk in _take(pending, 2 * self.threads))
            while window:
                batch = window.popleft().result()
                window.extend(pool.submit(self._run, *chunk) for chunk in _take(pending, 1))
                yield batch

    def _run(self, start: int, chunk: list[bytes]) -> Batch:
        lane = getattr(self._local, "lane", None)
        if lane is None:  # made on the thread that uses it: its RunEnv takes the thread's cpu slot
            lane = self._local.lane = self._lane_kind(self.program, self.engine, self.keep_data)
        return lane.run(start, chunk)


def _take(items: Iterator, n: int) -> list:
    return [item for _, item in zip(range(n), items)]


def _empty_batch(start: int, chunk: Sequence[bytes]) -> Batch:
    n = len(chunk)
    return Batch(start, chunk, [None] * n, [None] * n, [0] * n, {}, {}, 0)


class _TestRunLane:
    """One thread's runs through ``test_run``, packet by packet."""

    def __init__(self, program: Program, engine: str, keep_data: bool):
        self.program, self.engine, self.keep_data = program, engine, keep_data

    def run(self, start: int, chunk: Sequence[bytes]) -> Batch:
        batch = _empty_batch(start, chunk)
        for position, data in enumerate(chunk):
            self.run_one(batch, position, data)
        return batch

    def run_one(self, batch: Batch, position: int, data: bytes) -> None:
        try:
            result = self.program.test_run(data, engine=self.engine)
        except BPFError as error:  # a packet the test run refuses (a runt frame...): said, and on to the next
            batch.errors[position] = error
            return
        batch.retvals[position] = result.retval
        batch.program_ns += int(result.duration_ns)
        if self.keep_data:
            batch.data_outs[position] = result.data_out
        batch.meta_lens[position] = xdp_meta_len(self.program.prog_type, result.ctx_out)
        if result.redirect is not None:
            batch.redirects[position] = result.redirect


class _NativeXdpLane:
    """One thread's native batches (jit/batch.py) of a verified XDP program on the JIT or the
    native interpreter: one xdp_buff, one RunEnv and one run context, reused packet after packet.
    Packets the batch loop does not take (frags, runts) go through test_run in their place in
    the order."""

    def __init__(self, program: Program, engine: str, keep_data: bool):
        from .jit.batch import OUT_SLOT, RESULT_WORDS, xdp_batch_loop
        self.program, self.engine, self.loop, self.words = program, engine, xdp_batch_loop(engine), RESULT_WORDS
        self.slow = _TestRunLane(program, engine, keep_data)
        self.shortest = program.type.min_data
        self.memory = run_memory(program.type, program.name, bytes(self.shortest), None)
        self.page = self.memory.xdp.page.address
        self.regions = Regions(program.env.regions + self.memory.regions)
        self.env = RunEnv()
        self.table = self.regions.table()
        self.env.regions, self.env.region_count = ctypes.addressof(self.table), len(self.table) // 3
        self.redirect = RedirectInfo()  # a tail call's chain, settled in Python, records here
        caller = program._function_caller(engine, self.env, self.regions, False)
        self.context = RunContext(self.env, program.env, caller, self.regions, native_stack=True,
                                  redirect=self.redirect, native_tail_calls=engine == "jit")
        if engine == "jit":
            self.entry, self.image = program.compile().code_address(), None
        else:
            self.image = program._native_image()
            self.entry = _interpreter().repeat_address()
        self.spans = (ctypes.c_uint64 * (2 * CHUNK_PACKETS))()
        self.results = (ctypes.c_uint64 * (RESULT_WORDS * CHUNK_PACKETS))()
        self.slot = OUT_SLOT
        self.out = ctypes.create_string_buffer(OUT_SLOT * CHUNK_PACKETS) if keep_data else None
        self.elapsed = ctypes.c_uint64()

    def _native(self, data: bytes) -> bool:
        return self.shortest <= len(data) <= XDP_LINEAR_MAX

    def run(self, start: int, chunk: Sequence[bytes]) -> Batch:
        batch = _empty_batch(start, chunk)
        position = 0
        with run_context.active(self.context):
            while position < len(chunk):
                if not self._native(chunk[position]):
                    self.slow.run_one(batch, position, chunk[position])
                    position += 1
                    continue
                end = position
                while end < len(chunk) and self._native(chunk[end]):
                    end += 1
                position += self._segment(batch, position, chunk[position:end])
        return batch

    def _segment(self, batch: Batch, first: int, packets: Sequence[bytes]) -> int:
        """Run packets natively until one ends in anything but success; record the runs made and
        settle that one; how many packets were run."""
        blob = b"".join(packets)
        base = ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p).value or 0
        lengths = [len(packet) for packet in packets]
        spans = self.spans
        spans[0:2 * len(packets):2] = [base + offset for offset in accumulate(lengths, initial=0)][:-1]
        spans[1:2 * len(packets):2] = lengths
        out = ctypes.addressof(self.out) if self.out is not None else None
        image = ctypes.addressof(self.image.header) if self.image is not None else None
        made = self.loop(self.entry, image, ctypes.byref(self.env), self.memory.r1, self.page, ctypes.addressof(spans),
                         len(packets), ctypes.addressof(self.results), out, ctypes.byref(self.elapsed))
        batch.program_ns += self.elapsed.value
        self._record(batch, first, self.results[0:self.words * made])
        if self.env.status != Status.OK:
            self._settle(batch, first + made - 1, made - 1)
        return made

    def _record(self, batch: Batch, first: int, words: list[int], at: int = 0) -> None:
        """Record the runs whose loop records (r0, data_meta, data, data_end) are `words`, made
        for the packets from `first` on, whose packets out are in the slots from `at` on: a
        slice at a time, with no Python call per packet."""
        count = len(words) // self.words
        metas, datas, ends = words[1::self.words], words[2::self.words], words[3::self.words]
        batch.retvals[first:first + count] = words[0::self.words]
        batch.meta_lens[first:first + count] = [data - meta for meta, data in zip(metas, datas)]
        kinds = words[4::self.words]
        if any(kinds):  # a redirect helper ran for some packet: where its XDP_REDIRECT sends it
            for i in (i for i, kind in enumerate(kinds) if kind):
                record = words[i * self.words + 4:(i + 1) * self.words]
                self._redirect(batch, first + i, run_context.redirect_of(*record))
        if self.out is not None:
            base = ctypes.addressof(self.out) + at * self.slot
            batch.data_outs[first:first + count] = [ctypes.string_at(base + i * self.slot, end - meta)
                                                    for i, (meta, end) in enumerate(zip(metas, ends))]

    @staticmethod
    def _redirect(batch: Batch, position: int, target: Redirect | None) -> None:
        """A packet's redirect, which counts when its program returned XDP_REDIRECT."""
        retval = batch.retvals[position]
        batch.redirects.pop(position, None)
        if target is not None and retval is not None and retval & isa.MASK32 == XDP_REDIRECT:
            batch.redirects[position] = target

    def _settle(self, batch: Batch, position: int, at: int) -> None:
        """The packet whose run stopped the batch: a tail call left to Python is followed (on
        this lane's memory), a failure becomes the packet's error; the lane is ready again."""
        from .jit.native_interp import raise_for_trap
        env = self.env
        chain = _ChainEnd(batch.retvals[position], self.program, self.context.errors, 1, 0)
        try:
            if self.image is not None:
                raise_for_trap(env, self.image)  # the interpreter reached an instruction it refuses
            if env.status == Status.TAIL_CALL:
                env.status, env.frame_count = Status.OK, 0
                self.redirect.target = None  # the chain's context takes in the packet's record so far
                chain = self.context.tail_call_target._chain(self.engine, self.memory, self.regions, env,
                                                             self.redirect, 1, False)
                xdp = self.memory.xdp
                xdp.region.bind_table(env.regions, env.region_count)  # the chain's run context unbound it
                if self.out is not None:
                    ctypes.memmove(ctypes.addressof(self.out) + at * self.slot, xdp.data_meta,
                                   xdp.data_end - xdp.data_meta)
                self._record(batch, position, [chain.retval, xdp.data_meta - self.page, xdp.data - self.page,
                                               xdp.data_end - self.page, 0, 0, 0, 0], at)
                self._redirect(batch, position, self.redirect.target)
            batch.retvals[position] = settle(env, chain, self.regions)
        except BPFError as error:
            batch.retvals[position], batch.data_outs[position] = None, None
            batch.redirects.pop(position, None)
            batch.errors[position] = error
        finally:
            env.status, env.insn, env.value, env.depth, env.frame_count = Status.OK, 0, 0, 0, 0
            self.context.errors.clear()
            self.context.tail_call_target = None
