"""The opt-in kernel engine: run a BPF object's program in the Linux kernel with BPF_PROG_TEST_RUN.

This is the reference the userspace engines are compared against. It needs root (or CAP_BPF plus
CAP_NET_ADMIN/CAP_PERFMON) and libbpf (Debian package ``libbpf1``, which provides ``libbpf.so.1``).

Every kernel interaction happens in a **child process** (``python -m bpfjit.kernel_child``;
bpfjit/kernel_process.py starts it and talks to it, this module holds the API): each request
goes to the child as one line of JSON on stdin and its reply comes back as one line of JSON on
stdout. Some kernels' verifiers oops on valid programs; an
oops kills only the loading task, so the child dies and this process reports
``KernelEngineError("kernel engine failed: ...")`` instead of dying itself. A child killed by a
signal, a child that exits without a result and a child that runs past its timeout are all
reported that way. Programs are only ever loaded and test-run: nothing is attached to anything.

Maps are read back lazily. Unless the caller names the maps it wants up front (``read_maps``), the
child stays alive after the runs, holding the loaded object, and ``KernelResult.maps`` (a
:class:`KernelMaps`) asks it for one map's entries when the caller first looks at that map. Reading
every entry of every map after each run cost minutes and gigabytes on an object with a 2^25-entry
array whose entries nobody looked at. The child ends (closing the object, so the kernel frees
the program and its maps) when the result is closed (``close()``, or ``with``), when the last
reference to its maps goes, at interpreter exit, or when this process dies (its stdin reaches
EOF); an object with no map to read keeps no child.

API::

    kernel_available() -> (bool, reason)        # can a trivial socket filter be loaded? (cached)
    kernel_test_run(object_path, program, data=b"", ctx=None, repeat=1, rodata=None,
                    map_updates=None, timeout=60, data_size_out=None, ctx_size_out=None) -> KernelResult
    kernel_test_runs(object_path, program, runs, ...) -> KernelRuns   # several runs on one load

How the object is loaded (in the child, through ctypes on ``libbpf.so.1``):

- ``bpf_object__open_file``; the whole object is loaded (a prog array may hold its other
  programs), and if the kernel rejects any program, the requested one is loaded alone (from a
  ``?`` section too, as ``bpfjit.load(programs=[name])`` loads it); program types and flags are
  set with ``bpf_program__set_type`` and ``bpf_program__set_flags``; ``rodata``
  initial values are set with ``bpf_map__set_initial_value``; then
  ``bpf_object__load`` (maps created, global data populated and ``.rodata`` frozen, as libbpf does).
- ``map_updates`` are written with ``bpf_map_update_elem(BPF_ANY)`` after the load, before the run.
- ``bpf_prog_test_run_opts`` runs the program ``repeat`` times on ``data`` (and ``ctx``), once per
  requested run, in order, on the same maps (as an attached program sees packet after packet).
- Then the maps named in ``read_maps`` are read back with ``bpf_map_get_next_key`` +
  ``bpf_map_lookup_elem``; with ``read_maps=None`` each map is read that way when first asked for.

A program the verifier rejects raises :class:`~bpfjit.errors.KernelEngineError` whose message ends
with the last lines of the verifier log (and of libbpf's own messages); the full log is in the
exception's ``verifier_log`` attribute.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Sequence

from .errors import KernelEngineError
from .kernel_process import ChildProcess, call_child, engine_error

__all__ = ["KernelMaps", "KernelResult", "KernelRun", "KernelRuns", "MapInfo", "kernel_available", "kernel_test_run",
           "kernel_test_runs", "split_per_cpu", "LIBBPF_SONAME"]

LIBBPF_SONAME = "libbpf.so.1"
ABORT_HOOK = "BPFJIT_KERNEL_CHILD_ABORT"  # test hook: the child calls os.abort() on its request
HANG_HOOK = "BPFJIT_KERNEL_CHILD_HANG"    # test hook: the child sleeps instead of working ("read": of reading a map)
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


Entries = list[tuple[bytes, bytes]]


class KernelMaps(Mapping):
    """A result's maps: libbpf's map name -> its entries after the runs, each map read from the
    kernel the first time it is asked for.

    Its keys are known without the kernel (every map of the object, or the ``read_maps`` ones), so
    ``in``, ``len()``, iteration and ``sorted()`` read nothing; ``maps[name]`` (and ``get``,
    ``values()``, ``items()``, ``==``) has the child read that map on first access and keeps the
    entries. Reading every entry of every map after the runs cost minutes and gigabytes for a
    2^25-entry array no caller looked at; most callers look at one or two small maps, or none.

    The unread maps live in the child process, which holds the loaded object; :meth:`close` ends
    it (and the kernel frees the program and its maps). Dropping the last reference, interpreter
    exit and reading the last unread map end it too, so a caller need not close, but one that keeps
    many results alive keeps as many children (and loaded objects) unless it closes them or passes
    ``read_maps``. Asking for an unread map after the end raises KernelEngineError saying why the
    child is gone; the maps read before stay readable. A copy (``copy.deepcopy``, ``pickle``,
    ``dataclasses.asdict``) is a plain dict of every map, read then: the child cannot be copied.
    """

    def __init__(self, entries: dict[str, Entries], names: Sequence[str] | None = None,
                 child: ChildProcess | None = None, timeout: float = 60):
        self._entries = dict(entries)
        self._names = tuple(entries if names is None else names)
        self._known = frozenset(self._names)
        self._child = child
        self._timeout = timeout  # for each map read, as for the runs
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Entries:
        entries = self._entries.get(name)
        if entries is not None:
            return entries
        if name not in self._known:
            raise KeyError(name)
        with self._lock:  # one read per map, whichever thread asks first
            if name not in self._entries:
                self._entries[name] = self._read(name)
            if self._child is not None and len(self._entries) == len(self._names):
                self.close()  # nothing left in the child: free the object now
        return self._entries[name]

    def _read(self, name: str) -> Entries:
        child = self._child
        if child is None or child.gone is not None:
            why = "none was kept" if child is None else child.gone
            raise KernelEngineError(f"kernel engine: map {name!r} cannot be read: the child process that held "
                                    f"the loaded object is gone ({why}); read maps before closing the "
                                    f"result, or name them in read_maps")
        reply = child.ask({"op": "read_map", "name": name}, self._timeout)
        return [(bytes.fromhex(key), bytes.fromhex(value)) for key, value in reply["entries"]]

    def __contains__(self, name: object) -> bool:  # Mapping's would read the map
        return name in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    @property
    def read(self) -> tuple[str, ...]:
        """The maps whose entries are here (read back from the child, or known to be empty)."""
        return tuple(name for name in self._names if name in self._entries)

    @property
    def child_pid(self) -> int | None:
        """The pid of the child holding the unread maps; None once it has ended (or if none was kept)."""
        child = self._child
        return None if child is None or child.gone is not None else child.proc.pid

    def close(self) -> None:
        """End the child (the kernel frees the object); unread maps can no longer be read."""
        if self._child is not None:
            self._child.close("the result was closed" if len(self._entries) < len(self._names)
                              else "every map was read")

    def __reduce__(self):
        return dict, (dict(self.items()),)

    def __repr__(self) -> str:
        unread = [name for name in self._names if name not in self._entries]
        read = {name: self._entries[name] for name in self._names if name in self._entries}
        return f"KernelMaps({read!r}" + (f", unread={unread!r})" if unread else ")")


class _HoldsMaps:
    """close() and ``with`` for a result whose ``maps`` may be a KernelMaps with a child behind it."""

    maps: Mapping[str, Entries]

    def close(self) -> None:
        """End the child process that holds the maps not read yet (see :class:`KernelMaps`)."""
        if isinstance(self.maps, KernelMaps):
            self.maps.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class KernelResult(_HoldsMaps):
    """The outcome of one BPF_PROG_TEST_RUN.

    retval: r0 of the last run, as the kernel reports it (a u32).
    data_out: the packet after the run (empty when no data was given).
    ctx_out: the context after the run when ``ctx`` was given, else None.
    duration_ns: the kernel's mean time per run in ns (0 for program types that do not time runs).
    maps: every map of the object (or those ``read_maps`` names) by libbpf's name
        (``bpf_map__name``; global-data maps are called e.g. ``"kernel_c.bss"``, see :meth:`map`)
        -> its entries after the run as ``(key bytes, value bytes)`` in ``bpf_map_get_next_key`` order;
        a :class:`KernelMaps`, which reads a map from the kernel when it is first asked for (see
        :meth:`close`). Global-data maps
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
    maps: Mapping[str, Entries] = field(default_factory=dict)
    map_info: dict[str, MapInfo] = field(default_factory=dict)
    possible_cpus: int = 1
    prog_type: int = 0
    errno: int = 0
    data_size_out: int = 0
    ctx_size_out: int | None = None
    syscall_ns: int = 0

    def map(self, name: str) -> Entries:
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
class KernelRuns(_HoldsMaps):
    """Several test runs of one program on one load: each run's result, or the error the kernel
    (or the child's own input checks) gave for it; then the maps after the last run."""

    results: list[KernelResult | KernelEngineError]
    maps: Mapping[str, Entries]  # a KernelMaps, as KernelResult.maps
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
            reply, _ = call_child({"op": "probe"}, timeout)
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
                    read_maps: Sequence[str] | None = None,
                    program_flags: dict[str, int] | None = None) -> KernelResult:
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
    timeout: seconds before the child is killed ("kernel engine failed: timed out"); the load and
        runs have this long, and so has each later read of one map.
    map_options: creation attributes set before the load, as ``bpfjit.load(maps=...)`` takes them
        (``bpf_map__set_max_entries`` / ``bpf_map__set_map_flags``).
    program_types: enum bpf_prog_type names (without BPF_PROG_TYPE_) by program name, set before
        the load (``bpf_program__set_type``).
    program_flags: BPF_PROG_LOAD's prog_flags by program name, set before the load
        (``bpf_program__set_flags``, after the types); libbpf adds the section's own at load
        (``SEC("xdp.frags")``: BPF_F_XDP_HAS_FRAGS, ``syscall``/``uprobe.s``: BPF_F_SLEEPABLE), as
        ``bpfjit.load(program_flags=...)`` does. libbpf before 1.2 adds them even to a program
        ``program_types`` gave another type; bpfjit follows libbpf 1.2 on, which does not.
    data_size_out / ctx_size_out: the sizes of the output buffers handed to the kernel, as
        ``Program.test_run`` takes them (None: buffers larger than any output; ctx_size_out
        without ctx passes a ctx_out buffer alone; ctx_size_out 0 a ctx_out of no size).
    read_maps: the maps (names or suffixes) read back at once after the runs, and the only ones
        ``KernelResult.maps`` holds; the child then ends with the call. None: every map, each read
        when first asked for (see :class:`KernelMaps`), from a child that lives on until the
        result is closed or dropped. Reading back a large map takes the child a long time (an
        array of 2^25 entries: minutes), so only ask for it when you need it.

    Raises KernelEngineError for everything that goes wrong (bad request, libbpf missing, not
    permitted, verifier rejection with the verifier's words, failed run, dead child).
    """
    runs = kernel_test_runs(object_path, program, [KernelRun(data, ctx, repeat, data_size_out, ctx_size_out)],
                            rodata, map_updates, timeout, map_options, program_types, read_maps, program_flags)
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
                     read_maps: Sequence[str] | None = None,
                     program_flags: dict[str, int] | None = None) -> KernelRuns:
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
        "program_flags": dict(program_flags or {}),
        "read_maps": [] if read_maps is None else list(read_maps),
        "serve": read_maps is None,  # the child stays, holding the object, while maps are unread
    }
    reply, child = call_child(request, timeout)
    res = reply["result"]
    map_info = {name: MapInfo(**info) for name, info in res["map_info"].items()}
    read = {name: [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in entries] for name, entries in res["maps"].items()}
    if read_maps is None:  # every map is listed; those that cannot be iterated have no entries to read
        read.update({name: [] for name, info in map_info.items() if not info.iterable and name not in read})
        maps = KernelMaps(read, list(map_info), child, timeout)
    else:
        maps = KernelMaps(read)
    return KernelRuns(
        results=[_run_result(run) for run in res["runs"]],
        maps=maps,
        map_info=map_info,
        possible_cpus=res["possible_cpus"],
        prog_type=res["prog_type"],
    )


def _run_result(run: dict) -> KernelResult | KernelEngineError:
    """One run of the child's reply: its result, or the error it ended in."""
    if not run["ok"]:
        return engine_error(run)
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
