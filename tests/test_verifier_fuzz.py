"""The verifier's hostile-program fuzzer (issue 11): no host crash, no hang; every program is
rejected, or runs safely and gives the interpreter's result.

The verifier is the JIT's licence to drop run-time checks, so a program it wrongly accepts can
crash the host. Each case of tests/hostile_programs.py is verified here, in the parent (any
exception but a BPFError is a verifier bug; so is a verification that takes over
PER_PROGRAM_SECONDS). An accepted program runs on the interpreter here, whose every access is
checked: a memory fault there means the verifier accepted an unsafe program. It then runs on the
JIT in a child process, in batches: a child killed by a signal, failing or silent for
JIT_SECONDS is narrowed down to the case responsible. The JIT's r0, packet, ctx and maps
must equal the interpreter's, or both must raise BPFRuntimeError.

A raw program's memory (r1) has a size only the run knows: an access the verifier cannot prove
inside keeps a run-time check (Facts.checked_accesses), so an interpreted run may fault there, and
the JIT must fail alike; a fault at an access it proved is a finding. One exception, counted and
printed: a program whose output depends on addresses (a pointer it leaks into r0 or memory) or
on stack it never wrote (privileged programs may read it,
as in the kernel; the interpreter's stack starts zeroed, the JIT's does not) cannot be compared:
a result that differs is re-run on the interpreter at other addresses and on a dirty stack, and
when that changes it too, the difference is not a finding; nor is one that goes away when the
reference and the JIT, side by side in a fresh child on the same maps, agree on and give unlike
the parent's (a JIT child's maps lie elsewhere than the parent's, and re-runs in the parent may
keep an address's low bits).

The default run judges DEFAULT_PROGRAMS programs; ``pytest -m slow`` runs
BPFJIT_VERIFIER_FUZZ_PROGRAMS (default 100,000). BPFJIT_VERIFIER_FUZZ_SEED replays a campaign.
"""
from __future__ import annotations

import collections
import ctypes
import mmap
import multiprocessing
import os
import queue
import random
import re
import signal
import threading
import traceback
import weakref
from contextlib import contextmanager
from unittest import mock
from dataclasses import dataclass, field, replace

import pytest

from hostile_programs import (READY, Case, Maps, Outcome, build, jit_child, make_case, map_fd, run_once,
                              side_by_side_child)

from bpfjit import disasm, isa
from bpfjit.errors import BPFError, VerifierError
from bpfjit.isa import Insn
from bpfjit.program import Program
from bpfjit.runtime import interp
from bpfjit.runtime.memory import Buffer
from bpfjit.verifier.check import Verifier

DEFAULT_PROGRAMS = 2_000
SLOW_PROGRAMS = 100_000
DEFAULT_SEED = 0x11F022
PER_PROGRAM_SECONDS = 10  # to verify one program
# Instructions a second below which a verification that ran out of time counts as stuck. The
# Python verifier processes ~15,000 a second (README), so a program that needs the kernel's whole
# 1M-instruction budget takes about a minute: slow, not a hang.
SLOW_BUT_MOVING = 2_000
JIT_SECONDS = 5  # to run one program on the JIT: microseconds when it terminates
CHILD_START_SECONDS = 30  # for a child to start and say it is ready
INTERP_STEPS = 100_000  # a longer interpreted run is not compared (the JIT still runs it)
BATCH = 80  # cases per JIT child
RERUNS = 3  # interpreted runs at other addresses before a difference counts
MIN_SHARE = 0.15  # of accepted and of rejected programs: else the fuzzer tests nothing


class VerifyTimeout(Exception):
    def __init__(self, processed: int):
        super().__init__(processed)
        self.processed = processed  # instructions the verifier had processed by then


def _processed(frame) -> int:
    """How many instructions the Verifier running in `frame` or a caller has processed (0: none)."""
    while frame is not None:
        checker = frame.f_locals.get("self")
        if isinstance(checker, Verifier):
            return checker.stats.insns_processed
        frame = frame.f_back
    return 0


@contextmanager
def time_limit(seconds: float):
    """Interrupt the block after `seconds` (main thread only: SIGALRM)."""
    def expired(signum, frame):
        raise VerifyTimeout(_processed(frame))
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Job:
    """An accepted case, the inputs the JIT runs it on, and what the interpreter gave for each
    (None: the interpreter's budget ran out, so only the JIT's safety is checked)."""
    case: Case
    runs: tuple[int, ...]
    expected: dict[int, Outcome | None]


@dataclass
class Tally:
    judged: int = 0
    accepted: int = 0
    rejected: int = 0  # VerifierError
    malformed: int = 0  # other BPFErrors: bytecode that does not decode or has no valid CFG
    compared: int = 0  # JIT runs checked against the interpreter
    jit_only: int = 0  # JIT runs with nothing to compare (the interpreter's budget ran out)
    raw_memory_faults: int = 0  # raw-program runs that fault at an access the verifier left checked
    not_comparable: int = 0  # results that depend on addresses or uninitialised stack
    slow: int = 0  # verifications cut off while making progress (see SLOW_BUT_MOVING)
    messages: collections.Counter = field(default_factory=collections.Counter)
    findings: list[str] = field(default_factory=list)
    mismatches: list[tuple[Job, int, Outcome]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def find(self, case: Case, what: str) -> None:
        with self.lock:
            self.findings.append(f"{case.name} ({case.prog_type}, {case.kind}): {what}\n{listing(case)}")

    def summary(self) -> str:
        top = "\n".join(f"  {count:5d}  {message}" for message, count in self.messages.most_common(15))
        return (f"judged {self.judged}: accepted {self.accepted}, rejected {self.rejected} (VerifierError), "
                f"malformed {self.malformed}, cut off while slow {self.slow}\n"
                f"JIT runs compared {self.compared}, unchecked by the interpreter {self.jit_only}, raw-memory "
                f"faults at run-time checks {self.raw_memory_faults}, depending on addresses or uninitialised stack "
                f"{self.not_comparable}\ntop rejections:\n{top}")


def listing(case: Case) -> str:
    """The program as generated (before the ctx rewrite), for a finding's report."""
    try:
        prog = build(case, Maps(), verify=False)
        return disasm.listing(prog.original_insns, [(f.start, f"f{f.start}") for f in prog.facts.functions])
    except BPFError as error:
        return f"(no listing: {error}) bytecode {case.code.hex()}"


# --- the parent: verify, interpret -------------------------------------------------------------------

def judge(case: Case, maps: Maps, tally: Tally) -> Job | None:
    """Verify the case; for an accepted one, interpret it on every input: the job for the JIT."""
    tally.judged += 1
    try:
        with time_limit(PER_PROGRAM_SECONDS):
            prog = build(case, maps)
    except VerifierError as error:
        tally.rejected += 1
        tally.messages[re.sub(r"-?\b(0x[0-9a-f]+|\d+)\b", "N", error.message.splitlines()[-1])] += 1
        return None
    except BPFError:
        tally.malformed += 1
        return None
    except VerifyTimeout as timeout:
        if timeout.processed >= SLOW_BUT_MOVING * PER_PROGRAM_SECONDS:
            tally.slow += 1  # walking towards the 1M budget at the Python verifier's known pace
        else:
            tally.find(case, f"verification stuck: {timeout.processed} instructions in {PER_PROGRAM_SECONDS} s")
        return None
    except Exception:  # the verifier must answer with a VerifierError, never crash
        tally.find(case, f"the verifier raised\n{traceback.format_exc()}")
        return None
    tally.accepted += 1
    runs, expected = [], {}
    for index, data in enumerate(case.inputs):
        outcome = run_once(prog, maps, case, data, "reference", INTERP_STEPS)
        if outcome.error and "budget" in outcome.error:
            runs.append(index)
            expected[index] = None
        elif outcome.error and outcome.error.startswith("invalid "):
            if case.prog_type == "raw" and outcome.error_at in prog.facts.checked_accesses:
                tally.raw_memory_faults += 1  # checked at run time on every engine: the JIT must fail alike
                runs.append(index)
                expected[index] = outcome
                continue
            tally.find(case, f"accepted, but the interpreter faults on input {data.hex()}: "
                             f"insn {outcome.error_at}: {outcome.error}")
        else:
            runs.append(index)
            expected[index] = outcome
    return Job(case, tuple(runs), expected) if runs else None


# --- the children: run on the JIT -------------------------------------------------------------------

class JitRunner:
    """Runs jobs on the JIT in child processes, one batch at a time, in a thread of its own
    (the parent keeps verifying meanwhile); compares with the interpreter's outcomes."""

    def __init__(self, tally: Tally):
        self.tally = tally
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["hostile_programs"])
        self.batches: queue.Queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def submit(self, jobs: list[Job]) -> None:
        if jobs:
            self.batches.put(jobs)

    def finish(self) -> None:
        self.batches.put(None)
        self.thread.join()

    def _serve(self) -> None:
        while (jobs := self.batches.get()) is not None:
            try:
                self._run(jobs)
            except Exception:  # pragma: no cover - a harness failure must not hang the test
                self.tally.find(jobs[0].case, f"JIT runner failed\n{traceback.format_exc()}")

    def _run(self, jobs: list[Job]) -> None:
        while jobs:
            done, failure = self._execute(jobs)
            for job, outcomes in done:
                self._compare(job, outcomes)
            if failure is None:
                return
            if failure.startswith("the JIT run hung"):  # a hang is the running case's own
                hung = jobs[len(done)]
                # A loaded machine can stall a child for seconds: a hang must hang again alone,
                # given six times as long.
                if self._execute([hung], 6 * JIT_SECONDS)[1] is not None:
                    self.tally.find(hung.case, failure)
            else:
                self._isolate(jobs[:len(done) + 1], failure)
            jobs = jobs[len(done) + 1:]

    def _execute(self, jobs: list[Job], patience: float = JIT_SECONDS) -> tuple[list[tuple[Job, list[Outcome]]],
                                                                                 str | None]:
        """Run jobs in one child: the (job, outcomes) it finished, and why it stopped early (None
        if it did not); a job with no answer in `patience` seconds hung."""
        receiver, sender = self.context.Pipe(duplex=False)
        child = self.context.Process(target=jit_child, args=(sender, [(job.case, job.runs) for job in jobs]))
        child.start()
        sender.close()
        done: list = []
        failure = None
        ready = receiver.poll(CHILD_START_SECONDS) and receiver.recv() == READY
        while ready and len(done) < len(jobs):
            if not receiver.poll(patience):
                child.kill()
                failure = f"the JIT run hung (no answer in {patience} s)"
                break
            try:
                position, outcomes = receiver.recv()
            except EOFError:
                child.join()
                code = child.exitcode
                failure = f"the JIT child died by signal {-code}" if code < 0 else f"the JIT child failed ({code})"
                break
            done.append((jobs[position], outcomes))
        if not ready:
            child.kill()
            failure = "the JIT child did not start"
        child.join()
        receiver.close()
        return done, failure

    def _isolate(self, jobs: list[Job], failure: str) -> None:
        """The last job of `jobs` was running when the child failed: blame it if it fails alone;
        else find the earliest job from which on the sequence still fails."""
        last = jobs[-1]
        if self._execute([last])[1] is not None:
            self.tally.find(last.case, failure)
            return
        low, high = 0, len(jobs) - 1  # jobs[low:] fails, jobs[high:] does not
        while high - low > 1:
            middle = (low + high) // 2
            if self._execute(jobs[middle:])[1] is not None:
                low = middle
            else:
                high = middle
        self.tally.find(jobs[low].case, f"{failure} while running {last.case.name} after it")

    def moved_by_addresses(self, job: Job, index: int) -> bool:
        """Whether run `index` gives, in a fresh child, the same result on the reference and the
        JIT (hostile_programs.side_by_side_child: both on the same maps), and one unlike the
        parent's reference: then the result follows where the maps lie (a program that leaks an
        address), not the engine. A JIT that differs only in the child that first ran it (a
        state-dependent bug) is still a finding: the fresh child's reference then agrees with the
        parent's and its JIT does not."""
        receiver, sender = self.context.Pipe(duplex=False)
        child = self.context.Process(target=side_by_side_child, args=(sender, job.case, index))
        child.start()
        sender.close()
        answer = receiver.recv() if receiver.poll(CHILD_START_SECONDS + 6 * JIT_SECONDS) else None
        if answer is None:
            child.kill()
        child.join()
        receiver.close()
        return answer is not None and answer[0].agrees(answer[1]) and not answer[0].agrees(job.expected[index])

    def _compare(self, job: Job, outcomes: list[Outcome]) -> None:
        for index, got in zip(job.runs, outcomes):
            expected = job.expected[index]
            with self.tally.lock:
                if expected is None:
                    self.tally.jit_only += 1
                    continue
                self.tally.compared += 1
                if not expected.agrees(got):
                    self.tally.mismatches.append((job, index, got))


class _DirtyBuffer(Buffer):
    """A buffer whose bytes not given start as garbage (0xA5), as a native stack's do, at an
    address of its own choosing: pages mapped near a random place of the address space, so that
    even the low 32 bits of an address (what a 32-bit compare with r10 sees) differ from rerun to
    rerun, as the JIT's native stack differs from the interpreter's heap buffer."""

    def __init__(self, size: int, init: bytes = b"") -> None:
        length = (max(size, 1) + PAGE - 1) // PAGE * PAGE
        hint = _RANDOM_PLACES.randrange(1 << 32, 1 << 46) // PAGE * PAGE
        address = _libc.mmap(ctypes.c_void_p(hint), length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if address in (None, MAP_FAILED):
            raise MemoryError("mmap failed")
        self.size, self.address = size, address
        self._storage = (ctypes.c_uint8 * length).from_address(address)
        weakref.finalize(self, _libc.munmap, ctypes.c_void_p(address), length)
        ctypes.memmove(address, bytes(init) + b"\xa5" * (size - len(init)), size)


PAGE = mmap.PAGESIZE
PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS = 1, 2, 2, 0x20
MAP_FAILED = (1 << 64) - 1
_RANDOM_PLACES = random.Random(0x57AC4)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)


def _not_comparable(job: Job, index: int) -> bool:
    """Whether the interpreter's result changes when every address does (fresh maps, with the
    old ones kept so that nothing new lands where something old was) and its stack starts dirty:
    then the program leaks an address or reads stack it never wrote (which privileged programs
    may, as in the kernel), and the JIT's different result is no finding."""
    kept = []
    for _ in range(RERUNS):
        kept += [Maps(), *(Buffer(size) for size in range(8, 4200, 8) for _ in range(2))]
        maps = Maps()
        prog = build(job.case, maps)
        with mock.patch.object(interp, "Buffer", _DirtyBuffer):
            again = run_once(prog, maps, job.case, job.case.inputs[index], "reference", INTERP_STEPS)
        kept.append(maps)
        if not again.agrees(job.expected[index]):
            return True
    return False


def campaign(seed: int, count: int) -> Tally:
    tally = Tally()
    rnd = random.Random(seed)
    runner = JitRunner(tally)
    maps = Maps()
    batch: list[Job] = []
    try:
        for _ in range(count):
            job = judge(make_case(rnd.getrandbits(64)), maps, tally)
            if job is not None:
                batch.append(job)
            if len(batch) >= BATCH:
                runner.submit(batch)
                batch = []
        runner.submit(batch)
    finally:
        runner.finish()
    for job, index, got in tally.mismatches:
        if _not_comparable(job, index) or runner.moved_by_addresses(job, index):
            tally.not_comparable += 1
            continue
        tally.find(job.case, f"JIT and interpreter differ on input {job.case.inputs[index].hex()}:\n"
                             f"  interp {job.expected[index]}\n  jit    {got}")
    return tally


def check_campaign(seed: int, count: int) -> None:
    tally = campaign(seed, count)
    print(f"verifier fuzz: seed {seed:#x} (BPFJIT_VERIFIER_FUZZ_SEED={seed:#x} replays it)\n{tally.summary()}")
    assert tally.judged == count
    assert not tally.findings, f"{len(tally.findings)} findings (seed {seed:#x}):\n\n" + "\n\n".join(
        tally.findings[:10])
    assert tally.accepted >= MIN_SHARE * count, tally.summary()
    assert tally.rejected >= MIN_SHARE * count, tally.summary()
    assert tally.compared >= MIN_SHARE * count, tally.summary()


def _seed() -> int:
    return int(os.environ.get("BPFJIT_VERIFIER_FUZZ_SEED", str(DEFAULT_SEED)), 0)


def test_hostile_programs_are_rejected_or_run_safely():
    check_campaign(_seed(), DEFAULT_PROGRAMS)


@pytest.mark.slow
def test_hostile_programs_campaign():
    count = int(os.environ.get("BPFJIT_VERIFIER_FUZZ_PROGRAMS", str(SLOW_PROGRAMS)))
    seed = int(os.environ["BPFJIT_VERIFIER_FUZZ_SEED"], 0) if "BPFJIT_VERIFIER_FUZZ_SEED" in os.environ \
        else random.SystemRandom().getrandbits(32)
    check_campaign(seed, count)


def test_the_harness_blames_an_unchecked_fault_and_catches_a_differing_result():
    """The checks above can fail: a raw program's fault at an access the verifier left checked
    is expected (and compared on the JIT), one where it proved the access is a finding; and a JIT
    result unlike the interpreter's is recorded."""
    proven = Program.from_asm("mov %r0, 0\njlt %r2, 8, out\nldxb %r0, [%r1+7]\nout:\nexit")
    case = replace(make_case(1), prog_type="raw", inputs=(bytes(8), bytes(4)))
    tally = Tally()
    with mock.patch(f"{__name__}.build", return_value=proven):
        job = judge(case, Maps(), tally)
    assert tally.findings == [] and tally.raw_memory_faults == 0 and job.runs == (0, 1)
    checked = Program.from_asm("ldxb %r0, [%r1+7]\nexit")
    unsound = replace(checked.facts, checked_accesses=frozenset())  # as if the verifier had proven it
    for facts, findings, faults in ((checked.facts, 0, 1), (unsound, 1, 0)):
        tally = Tally()
        with mock.patch(f"{__name__}.build", return_value=checked), mock.patch.object(checked, "facts", facts):
            judge(case, Maps(), tally)
        assert (len(tally.findings), tally.raw_memory_faults) == (findings, faults)
    case = make_case(1)
    tally = Tally()
    expected = Outcome(1, b"", None, [])
    job = Job(case, (0,), {0: expected})
    runner = JitRunner.__new__(JitRunner)
    runner.tally = tally
    runner._compare(job, [Outcome(2, b"", None, [])])
    runner._compare(job, [expected])
    assert tally.compared == 2 and [m[2].retval for m in tally.mismatches] == [2]


def test_a_difference_that_follows_the_addresses_is_no_finding():
    """A privileged program may store a map value pointer's low byte into the value: the parent's
    interpreter and a JIT child see their own maps' addresses there. In a fresh child the JIT and
    the reference agree, and unlike the parent's result: the difference followed the addresses.
    A program whose fresh child gives the parent's own result (so a JIT that differed did so only
    in the child that first ran it) is still a finding."""
    leak = [Insn(isa.ST | isa.MEM | isa.W, isa.FRAME_POINTER, 0, -4, 0), *map_fd(1, 0),
            Insn(isa.ALU64 | isa.MOV | isa.X, 2, isa.FRAME_POINTER), Insn(isa.ALU64 | isa.ADD | isa.K, 2, 0, 0, -4),
            Insn(isa.CALL_OP, 0, 0, 0, 1), Insn(isa.JMP | isa.JNE | isa.K, 0, 0, 1, 0), Insn(isa.EXIT_OP),
            Insn(isa.STX | isa.MEM | isa.B, 0, 0, 0, 0), Insn(isa.ALU64 | isa.MOV | isa.K, 0), Insn(isa.EXIT_OP)]
    case = Case(0, "hostile", "raw", isa.encode(leak), (bytes(16),), None, 7)
    maps = Maps()
    here = run_once(build(case, maps), maps, case, case.inputs[0], "reference")
    assert here.maps[0][0][1][0] == maps.maps[0].value_address(0) & 0xFF  # the address's low byte
    elsewhere = Outcome(here.retval, here.data_out, here.ctx_out, [[(b"\0" * 4, b"\xff" * 48)], *here.maps[1:]])
    constant = replace(case, code=isa.encode([Insn(isa.ALU64 | isa.MOV | isa.K, 0, 0, 0, 7), Insn(isa.EXIT_OP)]))
    same = run_once(build(constant, maps), maps, constant, constant.inputs[0], "reference")
    runner = JitRunner(Tally())
    try:
        assert runner.moved_by_addresses(Job(case, (0,), {0: elsewhere}), 0)
        assert not runner.moved_by_addresses(Job(constant, (0,), {0: same}), 0)
    finally:
        runner.finish()
