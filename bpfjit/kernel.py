"""The opt-in kernel engine: run a BPF object's program in the Linux kernel with BPF_PROG_TEST_RUN.

This is the reference the userspace engines are compared against. It needs root (or CAP_BPF plus
CAP_NET_ADMIN/CAP_PERFMON) and libbpf (Debian package ``libbpf1``, which provides ``libbpf.so.1``).

Every kernel interaction happens in a **child process** (``python -m bpfjit.kernel_child``; this
module is the parent side): the request goes to the child as JSON on stdin and the result comes back
as JSON on stdout. Some kernels' verifiers oops on valid programs; an oops kills only the loading
task, so the child dies and this process reports ``KernelEngineError("kernel engine failed: ...")``
instead of dying itself. A child killed by a signal, a child that exits without a result and a
child that runs past its timeout are all reported that way. Programs are only ever loaded and
test-run: nothing is attached to anything.

API::

    kernel_available() -> (bool, reason)        # can a trivial socket filter be loaded? (cached)
    kernel_test_run(object_path, program, data=b"", ctx=None, repeat=1, rodata=None,
                    map_updates=None, timeout=60, data_size_out=None, ctx_size_out=None) -> KernelResult
    kernel_test_runs(object_path, program, runs, ...) -> KernelRuns   # several runs on one load

How the object is loaded (in the child, through ctypes on ``libbpf.so.1``):

- ``bpf_object__open_file``; the whole object is loaded (a prog array may hold its other
  programs), and if the kernel rejects any program, the requested one is loaded alone; ``rodata``
  initial values are set with ``bpf_map__set_initial_value``; then
  ``bpf_object__load`` (maps created, global data populated and ``.rodata`` frozen, as libbpf does).
- ``map_updates`` are written with ``bpf_map_update_elem(BPF_ANY)`` after the load, before the run.
- ``bpf_prog_test_run_opts`` runs the program ``repeat`` times on ``data`` (and ``ctx``), once per
  requested run, in order, on the same maps (as an attached program sees packet after packet).
- Then every map of the object is read back with ``bpf_map_get_next_key`` + ``bpf_map_lookup_elem``.

A program the verifier rejects raises :class:`~bpfjit.errors.KernelEngineError` whose message ends
with the last lines of the verifier log (and of libbpf's own messages); the full log is in the
exception's ``verifier_log`` attribute.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field, replace
from typing import Sequence

from .errors import KernelEngineError

__all__ = ["KernelResult", "KernelRun", "KernelRuns", "MapInfo", "kernel_available", "kernel_test_run",
           "kernel_test_runs", "split_per_cpu", "LIBBPF_SONAME"]

LIBBPF_SONAME = "libbpf.so.1"
CHILD_MODULE = "bpfjit.kernel_child"  # what the child process runs (python -m)
ABORT_HOOK = "BPFJIT_KERNEL_CHILD_ABORT"  # test hook: the child calls os.abort() on its request
HANG_HOOK = "BPFJIT_KERNEL_CHILD_HANG"    # test hook: the child sleeps instead of working
LOG_TAIL_LINES = 20

# enum bpf_map_type values (uapi linux/bpf.h)
MAP_HASH, MAP_ARRAY, MAP_PROG_ARRAY, MAP_PERF_EVENT_ARRAY = 1, 2, 3, 4
MAP_PERCPU_HASH, MAP_PERCPU_ARRAY = 5, 6
MAP_LRU_HASH, MAP_LRU_PERCPU_HASH, MAP_LPM_TRIE = 9, 10, 11
MAP_ARRAY_OF_MAPS, MAP_HASH_OF_MAPS = 12, 13
MAP_RINGBUF = 27


@dataclass(frozen=True)
class MapInfo:
    """What libbpf says about one map of the loaded object."""

    type: int
    key_size: int
    value_size: int
    max_entries: int
    iterable: bool  # False: the entries were not read (ring buffers, program arrays, ...)


@dataclass(frozen=True)
class KernelResult:
    """The outcome of one BPF_PROG_TEST_RUN.

    retval: r0 of the last run, as the kernel reports it (a u32).
    data_out: the packet after the run (empty when no data was given).
    ctx_out: the context after the run when ``ctx`` was given, else None.
    duration_ns: the kernel's mean time per run in ns (0 for program types that do not time runs).
    maps: every map of the object (or those ``read_maps`` names) by libbpf's name
        (``bpf_map__name``; global-data maps are called e.g. ``"kernel_c.bss"``, see :meth:`map`)
        -> its entries after the run as ``(key bytes, value bytes)`` in ``bpf_map_get_next_key`` order. Global-data maps
        (.data/.rodata/.bss/.kconfig) have one entry: key ``b"\\0\\0\\0\\0"``, value = the section.
        **Per-CPU maps**: the value is the raw bytes the kernel returns for all possible CPUs,
        concatenated: ``possible_cpus`` slots of ``round_up(value_size, 8)`` bytes each (split it
        with :func:`split_per_cpu`). Maps that cannot be iterated (ring buffers, program arrays,
        perf event arrays, ...) are listed with an empty list and ``map_info[name].iterable`` False.
    map_info: type, key/value size, max_entries of every map.
    possible_cpus: ``libbpf_num_possible_cpus()``.
    prog_type: the program's ``enum bpf_prog_type``.
    errno: ``errno.ENOSPC`` when ``data_size_out`` or ``ctx_size_out`` cut an output short (the
        kernel still reports retval and the full sizes), else 0.
    data_size_out / ctx_size_out: the full sizes the kernel reported (ctx_size_out None when no
        ctx was copied out).
    syscall_ns: the wall time of the ``bpf_prog_test_run_opts`` call, measured in the child.
    """

    retval: int
    data_out: bytes
    ctx_out: bytes | None
    duration_ns: int
    maps: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    map_info: dict[str, MapInfo] = field(default_factory=dict)
    possible_cpus: int = 1
    prog_type: int = 0
    errno: int = 0
    data_size_out: int = 0
    ctx_size_out: int | None = None
    syscall_ns: int = 0

    def map(self, name: str) -> list[tuple[bytes, bytes]]:
        """The entries of a map by its exact name, or by a suffix such as ``".bss"``/``"counters"``."""
        if name in self.maps:
            return self.maps[name]
        found = [key for key in self.maps if key.endswith(name)]
        if len(found) != 1:
            unread = [key for key in self.map_info if key not in self.maps and (key == name or key.endswith(name))]
            if not found and unread:
                raise KeyError(f"{name!r}: map {unread[0]!r} was not read back after the run: name it in read_maps "
                               f"(the kernel engine reads back only the maps asked for)")
            raise KeyError(f"{name!r}: {'ambiguous' if found else 'no such map'} (maps: {sorted(self.map_info)})")
        return self.maps[found[0]]


@dataclass(frozen=True)
class KernelRun:
    """The input of one BPF_PROG_TEST_RUN (see :func:`kernel_test_run` for each field)."""

    data: bytes = b""
    ctx: bytes | None = None
    repeat: int = 1
    data_size_out: int | None = None
    ctx_size_out: int | None = None


@dataclass(frozen=True)
class KernelRuns:
    """Several test runs of one program on one load: each run's result, or the error the kernel
    (or the child's own input checks) gave for it; then the maps after the last run."""

    results: list[KernelResult | KernelEngineError]
    maps: dict[str, list[tuple[bytes, bytes]]]
    map_info: dict[str, MapInfo]
    possible_cpus: int
    prog_type: int


def split_per_cpu(value: bytes, value_size: int, possible_cpus: int) -> list[bytes]:
    """One per-CPU map value (as in KernelResult.maps) split into the values of each CPU."""
    stride = (value_size + 7) & ~7
    if len(value) != stride * possible_cpus:
        raise ValueError(f"per-cpu value of {len(value)} bytes is not {possible_cpus} x {stride}")
    return [value[cpu * stride:cpu * stride + value_size] for cpu in range(possible_cpus)]


# --- starting the child and reading its reply ---------------------------------------------------

_AVAILABLE: tuple[bool, str] | None = None


def kernel_available(timeout: float = 30) -> tuple[bool, str]:
    """Whether this process may load BPF programs: (True, detail) or (False, why not).

    Checked once per process, in a child that loads ``r0 = 0; exit`` as a socket filter with
    ``bpf_prog_load`` (and closes it at once).
    """
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            reply = _call_child({"op": "probe"}, timeout)
            _AVAILABLE = (True, reply.get("detail", "ok"))
        except KernelEngineError as exc:
            _AVAILABLE = (False, str(exc))
    return _AVAILABLE


def kernel_test_run(object_path, program: str | None = None, data: bytes = b"",
                    ctx: bytes | None = None, repeat: int = 1,
                    rodata: dict[str, bytes] | None = None,
                    map_updates: dict[str, list[tuple[bytes, bytes]]] | None = None,
                    timeout: float = 60, map_options: dict[str, dict[str, int]] | None = None,
                    program_types: dict[str, str] | None = None,
                    data_size_out: int | None = None, ctx_size_out: int | None = None,
                    read_maps: Sequence[str] | None = None) -> KernelResult:
    """Load ``program`` of the object at ``object_path`` into the kernel and test-run it.

    program: a program's name (``bpf_program__name``, i.e. its function) or its section name;
        None when the object has exactly one program.
    data: the packet (``data_in``); XDP and skb programs need at least 14 bytes (ETH_HLEN).
    ctx: the context input; ``KernelResult.ctx_out`` then holds the context after the run. For
        XDP it is ``struct xdp_md`` (six u32): data = metadata length (a multiple of 4, at most
        32: the first bytes of ``data`` become metadata), data_end = end of the linear part
        (<= len(data); on Linux 6.18 the bytes after it go to a fragment, which is how a program
        can be shown a frame shorter than ETH_HLEN), the other fields zero.
    repeat: how many times the kernel runs the program (maps and globals see every run).
    rodata: initial values set before the load (``bpf_map__set_initial_value``) for global-data maps,
        keyed by map name or section (``".rodata"``, ``".data"``, ``".rodata.cfg"``); shorter values
        are zero-padded to the section size.
    map_updates: entries written after the load and before the run: map name (or suffix) ->
        [(key, value)]; per-CPU values must hold every CPU's slot (see KernelResult).
    timeout: seconds before the child is killed ("kernel engine failed: timed out").
    map_options: creation attributes set before the load, as ``bpfjit.load(maps=...)`` takes them
        (``bpf_map__set_max_entries`` / ``bpf_map__set_map_flags``).
    program_types: enum bpf_prog_type names (without BPF_PROG_TYPE_) by program name, set before
        the load (``bpf_program__set_type``).
    data_size_out / ctx_size_out: the sizes of the output buffers handed to the kernel, as
        ``Program.test_run`` takes them (None: buffers larger than any output; ctx_size_out
        without ctx passes a ctx_out buffer alone; ctx_size_out 0 a ctx_out of no size).
    read_maps: the maps (names or suffixes) whose entries ``KernelResult.maps`` holds after the
        runs; None: every map's. Reading back a large map takes the child a long time (an array
        of 2^25 entries: minutes), so a caller that needs none passes ().

    Raises KernelEngineError for everything that goes wrong (bad request, libbpf missing, not
    permitted, verifier rejection with the verifier's words, failed run, dead child).
    """
    runs = kernel_test_runs(object_path, program, [KernelRun(data, ctx, repeat, data_size_out, ctx_size_out)],
                            rodata, map_updates, timeout, map_options, program_types, read_maps)
    result = runs.results[0]
    if isinstance(result, KernelEngineError):
        raise result
    return replace(result, maps=runs.maps, map_info=runs.map_info, possible_cpus=runs.possible_cpus,
                   prog_type=runs.prog_type)


def kernel_test_runs(object_path, program: str | None, runs: Sequence[KernelRun],
                     rodata: dict[str, bytes] | None = None,
                     map_updates: dict[str, list[tuple[bytes, bytes]]] | None = None,
                     timeout: float = 60, map_options: dict[str, dict[str, int]] | None = None,
                     program_types: dict[str, str] | None = None,
                     read_maps: Sequence[str] | None = None) -> KernelRuns:
    """Load the object once and test-run ``program`` on each run's input in turn (map state carries
    from run to run, as for packets reaching an attached program); the arguments are those of
    :func:`kernel_test_run`. A run the kernel refuses is a KernelEngineError in its slot, and the
    runs after it still happen; a failed load or a dead child raises."""
    path = os.fspath(object_path)
    if not os.path.isfile(path):
        raise KernelEngineError(f"{path}: no such object file")
    for run in runs:
        if not isinstance(run.repeat, int) or run.repeat < 0:
            raise KernelEngineError(f"repeat must be a non-negative int, not {run.repeat!r}")
    request = {
        "op": "test_run",
        "object": os.path.abspath(path),
        "program": program,
        "runs": [{"data": bytes(run.data).hex(), "ctx": None if run.ctx is None else bytes(run.ctx).hex(),
                  "repeat": run.repeat, "data_size_out": run.data_size_out, "ctx_size_out": run.ctx_size_out}
                 for run in runs],
        "rodata": {name: bytes(value).hex() for name, value in (rodata or {}).items()},
        "map_updates": {name: [[bytes(k).hex(), bytes(v).hex()] for k, v in entries]
                        for name, entries in (map_updates or {}).items()},
        "map_options": {name: dict(options) for name, options in (map_options or {}).items()},
        "program_types": dict(program_types or {}),
        "read_maps": None if read_maps is None else list(read_maps),
    }
    res = _call_child(request, timeout)["result"]
    return KernelRuns(
        results=[_run_result(run) for run in res["runs"]],
        maps={name: [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in entries]
              for name, entries in res["maps"].items()},
        map_info={name: MapInfo(**info) for name, info in res["map_info"].items()},
        possible_cpus=res["possible_cpus"],
        prog_type=res["prog_type"],
    )


def _run_result(run: dict) -> KernelResult | KernelEngineError:
    """One run of the child's reply: its result, or the error it ended in."""
    if not run["ok"]:
        return _engine_error(run)
    return KernelResult(
        retval=run["retval"],
        data_out=bytes.fromhex(run["data_out"]),
        ctx_out=None if run["ctx_out"] is None else bytes.fromhex(run["ctx_out"]),
        duration_ns=run["duration_ns"],
        errno=run["errno"],
        data_size_out=run["data_size_out"],
        ctx_size_out=run["ctx_size_out"],
        syscall_ns=run["syscall_ns"],
    )


def _engine_error(reply: dict, note: str = "") -> KernelEngineError:
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


def _call_child(request: dict, timeout: float) -> dict:
    """Run the child on one request; its JSON reply, or KernelEngineError."""
    taint_before = _tainted()
    try:
        child = subprocess.Popen([sys.executable, "-m", CHILD_MODULE],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise KernelEngineError(f"kernel engine failed: cannot start the child process: {exc}") from None
    try:
        out, err = child.communicate(json.dumps(request).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        try:
            child.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # stuck in the kernel: leave it, say so
            raise KernelEngineError(f"kernel engine failed: timed out after {timeout}s; the child "
                                    f"(pid {child.pid}) does not die") from None
        raise KernelEngineError(f"kernel engine failed: timed out after {timeout}s") from None
    stderr = err.decode(errors="replace")
    code = child.returncode
    note = ""
    taint_after = _tainted()
    if taint_after is not None and taint_after != taint_before:
        note = f" (the kernel became tainted: {taint_before} -> {taint_after}; see dmesg)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        detail = f"\n{tail_lines(stderr)}" if stderr.strip() else ""
        raise KernelEngineError(f"kernel engine failed: child killed by {name}{note}{detail}")
    try:
        reply = json.loads(out.decode())
        if not isinstance(reply, dict) or "ok" not in reply:
            raise ValueError("not a reply")
    except ValueError:
        detail = f"\n{tail_lines(stderr)}" if stderr.strip() else ""
        raise KernelEngineError(f"kernel engine failed: child exited with status {code} "
                                f"without a result{note}{detail}") from None
    if not reply["ok"]:
        raise _engine_error(reply, note)
    return reply

