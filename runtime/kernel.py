"""The opt-in kernel engine: run a BPF object's program in the Linux kernel with BPF_PROG_TEST_RUN.

This is the reference the userspace engines are compared against. It needs root (or CAP_BPF plus
CAP_NET_ADMIN/CAP_PERFMON) and libbpf (Debian package ``libbpf1``, which provides ``libbpf.so.1``).

Every kernel interaction happens in a **child process** (``python -m bpfjit.runtime.kernel``): the
request goes to the child as JSON on stdin and the result comes back as JSON on stdout. Some kernels'
verifiers oops on valid programs; an oops kills only the loading task, so the child dies and this
process reports ``KernelEngineError("kernel engine failed: ...")`` instead of dying itself. A child
killed by a signal, a child that exits without a result and a child that runs past its timeout are
all reported that way. Programs are only ever loaded and test-run: nothing is attached to anything.

API::

    kernel_available() -> (bool, reason)        # can a trivial socket filter be loaded? (cached)
    kernel_test_run(object_path, program, data=b"", ctx=None, repeat=1, rodata=None,
                    map_updates=None, timeout=60) -> KernelResult

How the object is loaded (in the child, through ctypes on ``libbpf.so.1``):

- ``bpf_object__open_file``; the whole object is loaded (a prog array may hold its other
  programs), and if the kernel rejects any program, the requested one is loaded alone; ``rodata`` initial values are set with ``bpf_map__set_initial_value``; then
  ``bpf_object__load`` (maps created, global data populated and ``.rodata`` frozen, as libbpf does).
- ``map_updates`` are written with ``bpf_map_update_elem(BPF_ANY)`` after the load, before the run.
- ``bpf_prog_test_run_opts`` runs the program ``repeat`` times on ``data`` (and ``ctx``).
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
from dataclasses import dataclass, field

from bpfjit.errors import KernelEngineError

__all__ = ["KernelResult", "MapInfo", "kernel_available", "kernel_test_run", "split_per_cpu",
           "LIBBPF_SONAME"]

LIBBPF_SONAME = "libbpf.so.1"
ETH_HLEN = 14
ABORT_HOOK = "BPFJIT_KERNEL_CHILD_ABORT"  # test hook: the child calls os.abort() on its request
HANG_HOOK = "BPFJIT_KERNEL_CHILD_HANG"    # test hook: the child sleeps instead of working
LOG_TAIL_LINES = 20

# enum bpf_map_type values (uapi linux/bpf.h)
MAP_HASH, MAP_ARRAY, MAP_PROG_ARRAY, MAP_PERF_EVENT_ARRAY = 1, 2, 3, 4
MAP_PERCPU_HASH, MAP_PERCPU_ARRAY = 5, 6
MAP_LRU_HASH, MAP_LRU_PERCPU_HASH, MAP_LPM_TRIE = 9, 10, 11
MAP_ARRAY_OF_MAPS, MAP_HASH_OF_MAPS = 12, 13
MAP_RINGBUF = 27
ITERABLE_MAP_TYPES = frozenset({MAP_HASH, MAP_ARRAY, MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_HASH,
                                MAP_LRU_PERCPU_HASH, MAP_LPM_TRIE, MAP_ARRAY_OF_MAPS, MAP_HASH_OF_MAPS})
PERCPU_MAP_TYPES = frozenset({MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_PERCPU_HASH})

# enum bpf_prog_type values used for test-run rules
PROG_SOCKET_FILTER, PROG_SCHED_CLS, PROG_SCHED_ACT, PROG_XDP, PROG_CGROUP_SKB = 1, 3, 4, 6, 8
PROG_LWT_IN, PROG_LWT_OUT, PROG_LWT_XMIT, PROG_RAW_TRACEPOINT, PROG_LWT_SEG6LOCAL = 10, 11, 12, 17, 19
PROG_SYSCALL = 31
PACKET_PROG_TYPES = frozenset({PROG_SOCKET_FILTER, PROG_SCHED_CLS, PROG_SCHED_ACT, PROG_XDP,
                               PROG_CGROUP_SKB, PROG_LWT_IN, PROG_LWT_OUT, PROG_LWT_XMIT,
                               PROG_LWT_SEG6LOCAL})
CTX_ONLY_PROG_TYPES = frozenset({PROG_RAW_TRACEPOINT, PROG_SYSCALL})  # no data, repeat must be 0


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
    maps: every map of the object by libbpf's name (``bpf_map__name``; global-data maps are called
        e.g. ``"kernel_c.bss"``, see :meth:`map`) -> its entries after the run as
        ``(key bytes, value bytes)`` in ``bpf_map_get_next_key`` order. Global-data maps
        (.data/.rodata/.bss/.kconfig) have one entry: key ``b"\\0\\0\\0\\0"``, value = the section.
        **Per-CPU maps**: the value is the raw bytes the kernel returns for all possible CPUs,
        concatenated: ``possible_cpus`` slots of ``round_up(value_size, 8)`` bytes each (split it
        with :func:`split_per_cpu`). Maps that cannot be iterated (ring buffers, program arrays,
        perf event arrays, ...) are listed with an empty list and ``map_info[name].iterable`` False.
    map_info: type, key/value size, max_entries of every map.
    possible_cpus: ``libbpf_num_possible_cpus()``.
    prog_type: the program's ``enum bpf_prog_type``.
    """

    retval: int
    data_out: bytes
    ctx_out: bytes | None
    duration_ns: int
    maps: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    map_info: dict[str, MapInfo] = field(default_factory=dict)
    possible_cpus: int = 1
    prog_type: int = 0

    def map(self, name: str) -> list[tuple[bytes, bytes]]:
        """The entries of a map by its exact name, or by a suffix such as ``".bss"``/``"counters"``."""
        if name in self.maps:
            return self.maps[name]
        found = [key for key in self.maps if key.endswith(name)]
        if len(found) != 1:
            raise KeyError(f"{name!r}: {'ambiguous' if found else 'no such map'} (maps: {sorted(self.maps)})")
        return self.maps[found[0]]


def split_per_cpu(value: bytes, value_size: int, possible_cpus: int) -> list[bytes]:
    """One per-CPU map value (as in KernelResult.maps) split into the values of each CPU."""
    stride = (value_size + 7) & ~7
    if len(value) != stride * possible_cpus:
        raise ValueError(f"per-cpu value of {len(value)} bytes is not {possible_cpus} x {stride}")
    return [value[cpu * stride:cpu * stride + value_size] for cpu in range(possible_cpus)]


# --- parent side ---------------------------------------------------------------------------------

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
                    timeout: float = 60) -> KernelResult:
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

    Raises KernelEngineError for everything that goes wrong (bad request, libbpf missing, not
    permitted, verifier rejection with the verifier's words, failed run, dead child).
    """
    path = os.fspath(object_path)
    if not os.path.isfile(path):
        raise KernelEngineError(f"{path}: no such object file")
    if not isinstance(repeat, int) or repeat < 0:
        raise KernelEngineError(f"repeat must be a non-negative int, not {repeat!r}")
    request = {
        "op": "test_run",
        "object": os.path.abspath(path),
        "program": program,
        "data": bytes(data).hex(),
        "ctx": None if ctx is None else bytes(ctx).hex(),
        "repeat": repeat,
        "rodata": {name: bytes(value).hex() for name, value in (rodata or {}).items()},
        "map_updates": {name: [[bytes(k).hex(), bytes(v).hex()] for k, v in entries]
                        for name, entries in (map_updates or {}).items()},
    }
    reply = _call_child(request, timeout)
    res = reply["result"]
    return KernelResult(
        retval=res["retval"],
        data_out=bytes.fromhex(res["data_out"]),
        ctx_out=None if res["ctx_out"] is None else bytes.fromhex(res["ctx_out"]),
        duration_ns=res["duration_ns"],
        maps={name: [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in entries]
              for name, entries in res["maps"].items()},
        map_info={name: MapInfo(**info) for name, info in res["map_info"].items()},
        possible_cpus=res["possible_cpus"],
        prog_type=res["prog_type"],
    )


def _tainted() -> str | None:
    try:
        with open("/proc/sys/kernel/tainted") as f:
            return f.read().strip()
    except OSError:
        return None


def _tail(text: str, lines: int = 10) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _call_child(request: dict, timeout: float) -> dict:
    """Run the child on one request; its JSON reply, or KernelEngineError."""
    taint_before = _tainted()
    try:
        child = subprocess.Popen([sys.executable, "-m", "bpfjit.runtime.kernel"],
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
        detail = f"\n{_tail(stderr)}" if stderr.strip() else ""
        raise KernelEngineError(f"kernel engine failed: child killed by {name}{note}{detail}")
    try:
        reply = json.loads(out.decode())
        if not isinstance(reply, dict) or "ok" not in reply:
            raise ValueError("not a reply")
    except ValueError:
        detail = f"\n{_tail(stderr)}" if stderr.strip() else ""
        raise KernelEngineError(f"kernel engine failed: child exited with status {code} "
                                f"without a result{note}{detail}") from None
    if not reply["ok"]:
        exc = KernelEngineError(reply["message"] + note)
        exc.errno = reply.get("errno", 0)
        exc.verifier_log = reply.get("verifier_log", "")
        exc.libbpf_log = reply.get("libbpf_log", "")
        raise exc
    return reply


# --- child side: everything below runs only in `python -m bpfjit.runtime.kernel` ------------------

class _ChildError(Exception):
    def __init__(self, message: str, errno: int = 0, verifier_log: str = "", libbpf_log: str = ""):
        super().__init__(message)
        self.errno = errno
        self.verifier_log = verifier_log
        self.libbpf_log = libbpf_log


def _child_main() -> int:
    # Keep the JSON channel clean: whatever C code prints to fd 1 goes to stderr instead.
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        request = json.loads(sys.stdin.read())
        if not isinstance(request, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        reply = {"ok": False, "message": f"kernel engine: bad request: {exc}"}
    else:
        if os.environ.get(ABORT_HOOK) == "1":
            os.abort()
        if os.environ.get(HANG_HOOK) == "1":
            import time
            time.sleep(3600)
        try:
            child = _Child()
            if request.get("op") == "probe":
                reply = {"ok": True, "detail": child.probe()}
            elif request.get("op") == "test_run":
                reply = {"ok": True, "result": child.test_run(request)}
            else:
                raise _ChildError(f"kernel engine: unknown request {request.get('op')!r}")
        except _ChildError as exc:
            reply = {"ok": False, "message": str(exc), "errno": exc.errno,
                     "verifier_log": exc.verifier_log, "libbpf_log": exc.libbpf_log}
    channel.write(json.dumps(reply))
    channel.flush()
    return 0


class _Child:
    """libbpf through ctypes; one instance per child process."""

    def __init__(self):
        import ctypes
        self.ct = ct = ctypes
        try:
            self.lib = lib = ct.CDLL(LIBBPF_SONAME, use_errno=True)
        except OSError as exc:
            raise _ChildError(f"kernel engine: cannot load {LIBBPF_SONAME} ({exc}); "
                              "install it with `apt-get install libbpf1`") from None
        self.libc = ct.CDLL(None, use_errno=True)
        self.messages: list[str] = []
        P, I, U32, SZ, S = ct.c_void_p, ct.c_int, ct.c_uint32, ct.c_size_t, ct.c_char_p
        for name, res, args in [
            ("bpf_object__open_file", P, [S, P]),
            ("bpf_object__load", I, [P]),
            ("bpf_object__close", None, [P]),
            ("bpf_object__next_program", P, [P, P]),
            ("bpf_object__next_map", P, [P, P]),
            ("bpf_program__name", S, [P]),
            ("bpf_program__section_name", S, [P]),
            ("bpf_program__fd", I, [P]),
            ("bpf_program__type", I, [P]),
            ("bpf_program__set_autoload", I, [P, ct.c_bool]),
            ("bpf_program__set_log_buf", I, [P, P, SZ]),
            ("bpf_map__name", S, [P]),
            ("bpf_map__fd", I, [P]),
            ("bpf_map__type", I, [P]),
            ("bpf_map__key_size", U32, [P]),
            ("bpf_map__value_size", U32, [P]),
            ("bpf_map__max_entries", U32, [P]),
            ("bpf_map__initial_value", P, [P, ct.POINTER(SZ)]),
            ("bpf_map__set_initial_value", I, [P, P, SZ]),
            ("bpf_map_get_next_key", I, [I, P, P]),
            ("bpf_map_lookup_elem", I, [I, P, P]),
            ("bpf_map_update_elem", I, [I, P, P, ct.c_uint64]),
            ("bpf_prog_load", I, [I, S, S, P, SZ, P]),
            ("bpf_prog_test_run_opts", I, [I, P]),
            ("libbpf_num_possible_cpus", I, []),
            ("libbpf_prog_type_by_name", I, [S, ct.POINTER(I), ct.POINTER(I)]),
            ("libbpf_set_print", P, [P]),
            ("libbpf_strerror", I, [I, S, SZ]),
        ]:
            try:
                fn = getattr(lib, name)
            except AttributeError:
                raise _ChildError(f"kernel engine: {LIBBPF_SONAME} has no {name} (too old?)") from None
            fn.restype, fn.argtypes = res, args
        self.libc.vsnprintf.restype = I
        self.libc.vsnprintf.argtypes = [P, SZ, S, P]
        self.libc.close.argtypes = [I]

        # libbpf's messages go into self.messages (warnings and info; debug output is dropped).
        buf = ct.create_string_buffer(1 << 16)
        proto = ct.CFUNCTYPE(I, I, S, P)

        def printer(level, fmt, args):
            if level <= 1:
                self.libc.vsnprintf(buf, len(buf), fmt, args)
                self.messages.append(buf.value.decode(errors="replace"))
            return 0

        self._printer = proto(printer)  # keep the callback alive
        lib.libbpf_set_print(ct.cast(self._printer, P))

        class TestRunOpts(ct.Structure):  # struct bpf_test_run_opts, /usr/include/bpf/bpf.h
            _fields_ = [("sz", SZ), ("data_in", P), ("data_out", P), ("data_size_in", U32),
                        ("data_size_out", U32), ("ctx_in", P), ("ctx_out", P), ("ctx_size_in", U32),
                        ("ctx_size_out", U32), ("retval", U32), ("repeat", I), ("duration", U32),
                        ("flags", U32), ("cpu", U32), ("batch_size", U32)]

        self.TestRunOpts = TestRunOpts

    # -- helpers --

    def _libbpf_log(self) -> str:
        return "".join(self.messages)

    def _fail(self, what: str, err: int, verifier_log: str = "") -> _ChildError:
        """A _ChildError for a failed libbpf/kernel call, with the logs' last lines."""
        import errno as errno_names
        err = abs(err)
        if err >= 4000:  # libbpf's own codes (LIBBPF_ERRNO__*)
            text = self.ct.create_string_buffer(256)
            self.lib.libbpf_strerror(err, text, len(text))
            reason = f"libbpf error {err}: {text.value.decode(errors='replace')}"
        elif err:
            reason = f"{errno_names.errorcode.get(err, err)}: {os.strerror(err)}"
        else:
            reason = "failed"
        if verifier_log.strip():
            reason = f"the kernel verifier rejected it ({reason})"
        msg = f"kernel engine: {what}: {reason}"
        if err == 1:  # EPERM
            msg += (f" (not permitted, euid {os.geteuid()}: loading BPF programs needs root with "
                    "CAP_SYS_ADMIN, or CAP_BPF plus CAP_PERFMON/CAP_NET_ADMIN, and no lockdown/LSM "
                    "veto)")
        libbpf_log = self._libbpf_log()
        if verifier_log.strip():
            msg += f"\nverifier log (last {LOG_TAIL_LINES} lines):\n{_tail(verifier_log, LOG_TAIL_LINES)}"
        else:
            # libbpf prints the verifier log itself when it owns the buffer; drop the noise before it.
            logged = libbpf_log
            start = logged.rfind("-- BEGIN PROG LOAD LOG --")
            if start >= 0:
                verifier_log = logged[start:]
            if logged.strip():
                msg += f"\nlibbpf log (last {LOG_TAIL_LINES} lines):\n{_tail(logged, LOG_TAIL_LINES)}"
        return _ChildError(msg, err, verifier_log, libbpf_log)

    def _errno(self, ret: int) -> int:
        return -ret if ret < 0 else self.ct.get_errno()

    # -- requests --

    def probe(self) -> str:
        ct = self.ct
        insns = (ct.c_uint64 * 2)(0x00000000000000b7, 0x0000000000000095)  # r0 = 0; exit
        fd = self.lib.bpf_prog_load(PROG_SOCKET_FILTER, b"bpfjit_probe", b"GPL",
                                    ct.cast(insns, ct.c_void_p), 2, None)
        if fd < 0:
            raise self._fail("loading a trivial socket filter", self._errno(fd))
        self.libc.close(fd)
        return f"{LIBBPF_SONAME} loaded a trivial socket filter (euid {os.geteuid()})"

    def test_run(self, req: dict) -> dict:
        """Load the whole object (prog arrays may hold its other programs) and run one program;
        if the kernel rejects the whole, load the requested program alone and try again."""
        try:
            return self._test_run(req, load_all=True)
        except _ChildError:
            return self._test_run(req, load_all=False)

    def _test_run(self, req: dict, load_all: bool) -> dict:
        ct, lib = self.ct, self.lib
        path = req["object"]
        obj = lib.bpf_object__open_file(path.encode(), None)
        if not obj:
            raise self._fail(f"libbpf cannot open {path}", ct.get_errno())
        try:
            prog = self._select_program(obj, req["program"], load_all)
            name = lib.bpf_program__name(prog).decode()
            log = ct.create_string_buffer(1 << 24)
            lib.bpf_program__set_log_buf(prog, ct.cast(log, ct.c_void_p), len(log))
            keep = []  # initial-value buffers must outlive the load
            maps = self._maps(obj)
            for wanted, hexval in req["rodata"].items():
                mp = self._find_map(maps, wanted)
                value = bytes.fromhex(hexval)
                size = ct.c_size_t(0)
                if not lib.bpf_map__initial_value(mp, ct.byref(size)):
                    raise _ChildError(f"kernel engine: map {wanted!r} has no initial value "
                                      "(not a global-data map)")
                if len(value) > size.value:
                    raise _ChildError(f"kernel engine: {len(value)} bytes for {wanted!r}, "
                                      f"whose section holds {size.value}")
                value = value.ljust(size.value, b"\0")
                cbuf = ct.create_string_buffer(value, len(value))
                keep.append(cbuf)
                ret = lib.bpf_map__set_initial_value(mp, ct.cast(cbuf, ct.c_void_p), len(value))
                if ret:
                    raise self._fail(f"setting the initial value of {wanted!r}", self._errno(ret))
            ret = lib.bpf_object__load(obj)
            if ret:
                raise self._fail(f"loading program {name!r} of {path}", self._errno(ret),
                                 log.value.decode(errors="replace"))
            fd = lib.bpf_program__fd(prog)
            prog_type = lib.bpf_program__type(prog)
            for wanted, entries in req["map_updates"].items():
                mp = self._find_map(maps, wanted)
                for khex, vhex in entries:
                    self._update(mp, wanted, bytes.fromhex(khex), bytes.fromhex(vhex))
            result = self._run(fd, prog_type, name, req)
            result["maps"], result["map_info"] = self._read_maps(maps)
            return result
        finally:
            lib.bpf_object__close(obj)

    def _select_program(self, obj, wanted: str | None, load_all: bool):
        lib = self.lib
        progs = []
        prog = lib.bpf_object__next_program(obj, None)
        while prog:
            progs.append(prog)
            prog = lib.bpf_object__next_program(obj, prog)
        names = [(lib.bpf_program__name(p).decode(), lib.bpf_program__section_name(p).decode())
                 for p in progs]
        listing = ", ".join(f"{n} (SEC {s!r})" for n, s in names) or "none"
        if wanted is None:
            if len(progs) != 1:
                raise _ChildError(f"kernel engine: the object has {len(progs)} programs, name one: {listing}")
            return progs[0]
        chosen = [p for p, (n, _) in zip(progs, names) if n == wanted]
        if not chosen:
            chosen = [p for p, (_, s) in zip(progs, names) if s == wanted]
        if len(chosen) != 1:
            why = "several programs match" if chosen else "no such program"
            raise _ChildError(f"kernel engine: {wanted!r}: {why}; programs: {listing}")
        for p in progs:
            if p != chosen[0] and not load_all:
                lib.bpf_program__set_autoload(p, False)
        return chosen[0]

    def _maps(self, obj) -> dict:
        lib = self.lib
        maps = {}
        mp = lib.bpf_object__next_map(obj, None)
        while mp:
            maps[lib.bpf_map__name(mp).decode()] = mp
            mp = lib.bpf_object__next_map(obj, mp)
        return maps

    @staticmethod
    def _find_map(maps: dict, wanted: str):
        if wanted in maps:
            return maps[wanted]
        found = [m for n, m in maps.items() if n.endswith(wanted)]
        if len(found) != 1:
            why = "ambiguous" if found else "no such map"
            raise _ChildError(f"kernel engine: map {wanted!r}: {why} (maps: {sorted(maps)})")
        return found[0]

    def _value_size(self, mp) -> int:
        size = self.lib.bpf_map__value_size(mp)
        if self.lib.bpf_map__type(mp) in PERCPU_MAP_TYPES:
            return ((size + 7) & ~7) * self._cpus()
        return size

    def _cpus(self) -> int:
        n = self.lib.libbpf_num_possible_cpus()
        if n <= 0:
            raise self._fail("libbpf_num_possible_cpus", self._errno(n))
        return n

    def _update(self, mp, name: str, key: bytes, value: bytes) -> None:
        ct, lib = self.ct, self.lib
        ksize, vsize = lib.bpf_map__key_size(mp), self._value_size(mp)
        if len(key) != ksize or len(value) != vsize:
            raise _ChildError(f"kernel engine: map {name!r} takes {ksize}-byte keys and {vsize}-byte "
                              f"values, not {len(key)} and {len(value)}")
        kbuf = ct.create_string_buffer(key, max(ksize, 1))
        vbuf = ct.create_string_buffer(value, max(vsize, 1))
        ret = lib.bpf_map_update_elem(lib.bpf_map__fd(mp), kbuf, vbuf, 0)
        if ret:
            raise self._fail(f"updating map {name!r}", self._errno(ret))

    def _read_maps(self, maps: dict) -> tuple[dict, dict]:
        ct, lib = self.ct, self.lib
        entries, info = {}, {}
        for name, mp in maps.items():
            mtype = lib.bpf_map__type(mp)
            ksize, vsize = lib.bpf_map__key_size(mp), lib.bpf_map__value_size(mp)
            iterable = mtype in ITERABLE_MAP_TYPES and ksize > 0
            info[name] = {"type": mtype, "key_size": ksize, "value_size": vsize,
                          "max_entries": lib.bpf_map__max_entries(mp), "iterable": iterable}
            entries[name] = []
            if not iterable:
                continue
            fd = lib.bpf_map__fd(mp)
            if fd < 0:
                info[name]["iterable"] = False
                continue
            full = self._value_size(mp)
            key, nxt = ct.create_string_buffer(ksize), ct.create_string_buffer(ksize)
            value = ct.create_string_buffer(max(full, 1))
            ret = lib.bpf_map_get_next_key(fd, None, nxt)
            while ret == 0:
                ct.memmove(key, nxt, ksize)
                got = lib.bpf_map_lookup_elem(fd, key, value)
                if got == 0:
                    entries[name].append([key.raw.hex(), value.raw[:full].hex()])
                elif self._errno(got) != 2:  # ENOENT: deleted meanwhile (cannot happen here)
                    raise self._fail(f"reading map {name!r}", self._errno(got))
                ret = lib.bpf_map_get_next_key(fd, key, nxt)
            if self._errno(ret) != 2:  # ENOENT marks the end
                raise self._fail(f"iterating map {name!r}", self._errno(ret))
        return entries, info

    def _run(self, fd: int, prog_type: int, name: str, req: dict) -> dict:
        ct, lib = self.ct, self.lib
        data = bytes.fromhex(req["data"])
        ctx = None if req["ctx"] is None else bytes.fromhex(req["ctx"])
        repeat = req["repeat"]
        if prog_type in PACKET_PROG_TYPES and len(data) < ETH_HLEN:
            kind = "XDP" if prog_type == PROG_XDP else "packet"
            raise _ChildError(f"kernel engine: {kind} test runs need at least {ETH_HLEN} bytes of "
                              f"data (ETH_HLEN), got {len(data)}; to show an XDP program a shorter "
                              f"frame, pass ctx (struct xdp_md) with data_end < len(data): the "
                              f"rest goes to a fragment")
        ctx_only = prog_type in CTX_ONLY_PROG_TYPES
        if ctx_only:
            if data:
                raise _ChildError("kernel engine: this program type takes no data, only ctx")
            if repeat > 1:
                raise _ChildError("kernel engine: this program type runs once (repeat must be 1)")
            repeat = 0
        opts = self.TestRunOpts()
        opts.sz = ct.sizeof(opts)
        opts.repeat = repeat
        keep = []
        out = None
        if data:
            din = ct.create_string_buffer(data, len(data))
            out = ct.create_string_buffer(len(data) + 65536)
            keep += [din, out]
            opts.data_in, opts.data_size_in = ct.cast(din, ct.c_void_p), len(data)
            opts.data_out, opts.data_size_out = ct.cast(out, ct.c_void_p), len(out)
        cin = cout = None
        if ctx is not None:
            cin = ct.create_string_buffer(ctx, max(len(ctx), 1))
            opts.ctx_in, opts.ctx_size_in = ct.cast(cin, ct.c_void_p), len(ctx)
            if not ctx_only:
                cout = ct.create_string_buffer(max(len(ctx), 4096))
                opts.ctx_out, opts.ctx_size_out = ct.cast(cout, ct.c_void_p), len(cout)
        ret = lib.bpf_prog_test_run_opts(fd, ct.byref(opts))
        if ret:
            err = self._errno(ret)
            hint = ""
            if err == 22:  # EINVAL
                hint = (" (the kernel refused the input: wrong data/ctx size, non-zero ctx fields it "
                        "does not accept, or a program type without test-run support)")
            raise self._fail(f"BPF_PROG_TEST_RUN of {name!r}{hint}", err)
        if ctx is None:
            ctx_out = None
        elif ctx_only:
            ctx_out = cin.raw[:len(ctx)].hex()
        else:
            ctx_out = cout.raw[:opts.ctx_size_out].hex()
        return {"retval": opts.retval,
                "data_out": out.raw[:opts.data_size_out].hex() if out is not None else "",
                "ctx_out": ctx_out,
                "duration_ns": opts.duration,
                "possible_cpus": self._cpus(),
                "prog_type": prog_type}

if __name__ == "__main__":
    sys.exit(_child_main())
