"""The kernel engine's child process, seen from the parent: starting it, one exchange of JSON lines
with it, and ending it (bpfjit/kernel.py is the API on top; bpfjit/kernel_child.py the child).

Some kernels' verifiers oops on valid programs; an oops kills only the loading task, so every
kernel interaction happens in a child, and a child that dies, exits without a reply or runs past
its timeout becomes a KernelEngineError here, never this process's death. A child ends when
closed, when its object is collected, at interpreter exit, or by itself when this process dies
(EOF on its stdin); a forked copy of this process drops its pipes to the children at once.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref

from .errors import KernelEngineError

CHILD_MODULE = "bpfjit.kernel_child"  # what the child process runs (python -m)
# The child starts in the folder holding this bpfjit package: ``-m`` puts the working directory
# first on sys.path, and a caller's working directory holding another bpfjit would give the child
# another version of the exchange, which it would not answer.
CHILD_CWD = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def engine_error(reply: dict, note: str = "") -> KernelEngineError:
    """The KernelEngineError of a refusal the child reported, with its errno and logs."""
    exc = KernelEngineError(reply["message"] + note)
    exc.errno = reply.get("errno", 0)
    exc.verifier_log = reply.get("verifier_log", "")
    exc.libbpf_log = reply.get("libbpf_log", "")
    return exc


def _tainted() -> str | None:
    try:
        with open("/proc/sys/kernel/tainted") as f:
            return f.read().strip()
    except OSError:
        return None


def tail_lines(text: str, lines: int = 10) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


CLOSE_WAIT = 5  # seconds a child has to exit after EOF on its stdin, or after SIGKILL


def call_child(request: dict, timeout: float) -> tuple[dict, ChildProcess | None]:
    """Start a child on one request: its reply, and the child if it stays to serve map reads
    (``"serving"`` in the reply), else None (it has ended); or KernelEngineError."""
    child = ChildProcess()
    reply = None
    try:
        reply = child.ask(request, timeout)
    finally:
        if reply is None or not reply.get("serving"):
            child.close("it answered its one request")
    return reply, (child if reply.get("serving") else None)


class ChildProcess:
    """One child process and the exchange with it: a line of JSON out, a line of JSON back.

    The child ends (and is reaped) on :meth:`close`, when this object is garbage-collected, or at
    interpreter exit (a ``weakref.finalize``); and by itself when this process dies, since its
    stdin then reaches EOF. A forked copy of this process closes its copy of the child's stdin at
    once (so the fork cannot keep the child alive) and cannot talk to it.
    """

    def __init__(self):
        self.taint_before = _tainted()
        # stderr goes to a file, not a pipe: nobody drains a pipe while a child waits for requests
        self.stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", CHILD_MODULE],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                         cwd=CHILD_CWD)
        except OSError as exc:
            self.stderr.close()
            raise KernelEngineError(f"kernel engine failed: cannot start the child process: {exc}") from None
        os.set_blocking(self.proc.stdin.fileno(), False)  # requests are written as the pipe has room
        self.owner = os.getpid()
        self.gone: str | None = None  # why the child can no longer answer
        self.pending = bytearray()  # bytes of the reply being read
        self.lock = threading.Lock()
        self._end = weakref.finalize(self, _end_child, self.proc, self.stderr, self.owner)
        _LIVE_CHILDREN.add(self)

    def close(self, why: str) -> None:
        """End the child: EOF on its stdin (it closes the object and exits), SIGKILL after CLOSE_WAIT s.
        While another thread waits for a reply, only SIGKILL it: that thread then ends it."""
        if self.gone is None:
            self.gone = why
        if self.lock.acquire(blocking=False):
            try:
                self._end()
            finally:
                self.lock.release()
        elif self.proc.returncode is None:
            self.proc.kill()

    def ask(self, request: dict, timeout: float) -> dict:
        """Send one request and wait up to ``timeout`` s for its reply; KernelEngineError for a
        refused request (the child stays) or a dead, hung or interrupted child (it is then gone)."""
        with self.lock:
            if self.gone is not None:
                raise KernelEngineError(f"kernel engine: the child process is gone ({self.gone})")
            try:
                line = self._exchange(json.dumps(request).encode() + b"\n", timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                why = f"kernel engine failed: timed out after {timeout}s"
                if not self._ended(why):  # stuck in the kernel: leave it, say so
                    why += f"; the child (pid {self.proc.pid}) does not die"
                raise KernelEngineError(why) from None
            except BaseException:  # interrupted mid-reply: the exchange is out of step, end it
                self.proc.kill()
                self._ended("interrupted while it answered")
                raise
            if line is None and self.gone is not None:  # closed by another thread meanwhile
                self._end()
                raise KernelEngineError(f"kernel engine: the child process is gone ({self.gone})")
            note = self._taint_note()
            try:
                reply = json.loads(line) if line is not None else None
            except ValueError:
                reply = None
            if not isinstance(reply, dict) or "ok" not in reply:
                raise self._death(note)
            if not reply["ok"]:
                raise engine_error(reply, note)
            return reply

    def _ended(self, why: str) -> bool:
        self.gone = why
        return bool(self._end())

    def _exchange(self, payload: bytes, timeout: float) -> bytearray | None:
        """Write ``payload`` and read the next line: the line, or None at EOF (the child ended).
        Both happen as the pipes allow (a child that stops reading cannot block this one);
        subprocess.TimeoutExpired past ``timeout``."""
        deadline = time.monotonic() + timeout
        out_fd, in_fd = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        todo = memoryview(payload)
        scanned = 0
        with selectors.DefaultSelector() as selector:
            selector.register(out_fd, selectors.EVENT_READ)
            selector.register(in_fd, selectors.EVENT_WRITE)
            while True:
                end = self.pending.find(b"\n", scanned)
                if end >= 0:
                    line, self.pending = self.pending, self.pending[end + 1:]
                    del line[end:]  # no copy of a reply that may be gigabytes long
                    return line
                scanned = len(self.pending)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(CHILD_MODULE, timeout)
                for key, _ in selector.select(left):
                    if key.fd == out_fd:
                        chunk = os.read(out_fd, 1 << 20)
                        if not chunk:
                            return None
                        self.pending += chunk
                        continue
                    try:
                        todo = todo[os.write(in_fd, todo):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the child died: its EOF on stdout tells how
                        todo = todo[:0]
                    if not todo:
                        selector.unregister(in_fd)

    def _taint_note(self) -> str:
        taint_after = _tainted()
        if taint_after is not None and taint_after != self.taint_before:
            return f" (the kernel became tainted: {self.taint_before} -> {taint_after}; see dmesg)"
        return ""

    def _death(self, note: str) -> KernelEngineError:
        """The error for a child that ended (or spoke out of turn) without a reply, once it is reaped."""
        try:
            self.proc.wait(timeout=CLOSE_WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        size = os.fstat(self.stderr.fileno()).st_size
        stderr = os.pread(self.stderr.fileno(), 1 << 16, max(0, size - (1 << 16))).decode(errors="replace")
        detail = f"\n{tail_lines(stderr)}" if stderr.strip() else ""
        code = self.proc.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            why = f"kernel engine failed: child killed by {name}{note}"
        else:
            why = f"kernel engine failed: child exited with status {code} without a result{note}"
        self._ended(why)
        return KernelEngineError(why + detail)


def _end_child(proc: subprocess.Popen, stderr, owner: int) -> bool:
    """End a child (the finalizer of a ChildProcess: it must not refer to it): close its stdin,
    wait CLOSE_WAIT s for it to exit, else SIGKILL it and wait again. True when it has exited and
    been reaped. In a forked copy of the owner, only close this copy's pipes."""
    for stream in (proc.stdin, proc.stdout, stderr):
        try:
            stream.close()
        except OSError:
            pass
    if os.getpid() != owner:
        return False
    try:
        proc.wait(timeout=CLOSE_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(timeout=CLOSE_WAIT)
        except subprocess.TimeoutExpired:
            return False
    return True


_LIVE_CHILDREN: weakref.WeakSet[ChildProcess] = weakref.WeakSet()


def _forget_children_in_fork() -> None:
    """In a forked process: drop the children's pipes, so that the fork holds no child alive."""
    for child in list(_LIVE_CHILDREN):
        child.gone = child.gone or f"it belongs to process {child.owner}, not to this fork"
        child._end()


os.register_at_fork(after_in_child=_forget_children_in_fork)
