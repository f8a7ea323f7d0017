"""The kernel engine's child side: requests on stdin, libbpf through ctypes, replies on stdout.

Runs only as ``python -m bpfjit.kernel_child``, started by :mod:`bpfjit.kernel` (the parent side,
which documents the protocol), so that a kernel oops or a crash in libbpf kills this process and
not the caller. Each request and each reply is one line of JSON. The first request is a probe or
a test run; after a test run asked to ``serve``, the child keeps the loaded object and answers
``read_map`` requests (one map's entries each) until its stdin ends, then closes the object and
exits: the parent reads each map only when its caller asks for it.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

from .kernel import (
    ABORT_HOOK,
    HANG_HOOK,
    LIBBPF_SONAME,
    LOG_TAIL_LINES,
    MAP_ARRAY,
    MAP_ARRAY_OF_MAPS,
    MAP_HASH,
    MAP_HASH_OF_MAPS,
    MAP_LPM_TRIE,
    MAP_LRU_HASH,
    MAP_LRU_PERCPU_HASH,
    MAP_PERCPU_ARRAY,
    MAP_PERCPU_HASH,
)
from .kernel_process import tail_lines

ETH_HLEN = 14
ENOSPC = 28
ITERABLE_MAP_TYPES = frozenset({MAP_HASH, MAP_ARRAY, MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_HASH,
                                MAP_LRU_PERCPU_HASH, MAP_LPM_TRIE, MAP_ARRAY_OF_MAPS, MAP_HASH_OF_MAPS})
PERCPU_MAP_TYPES = frozenset({MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_PERCPU_HASH})

# enum bpf_prog_type values (uapi), by name without BPF_PROG_TYPE_: for test-run rules and for
# program types set before load (bpf_program__set_type)
PROG_TYPES = {"SOCKET_FILTER": 1, "KPROBE": 2, "SCHED_CLS": 3, "SCHED_ACT": 4, "TRACEPOINT": 5, "XDP": 6,
              "PERF_EVENT": 7, "CGROUP_SKB": 8, "LWT_IN": 10, "LWT_OUT": 11, "LWT_XMIT": 12, "SK_SKB": 14,
              "RAW_TRACEPOINT": 17, "LWT_SEG6LOCAL": 19, "SYSCALL": 31}
PROG_SOCKET_FILTER, PROG_SCHED_CLS, PROG_SCHED_ACT, PROG_XDP, PROG_CGROUP_SKB = (
    PROG_TYPES[n] for n in ("SOCKET_FILTER", "SCHED_CLS", "SCHED_ACT", "XDP", "CGROUP_SKB"))
PROG_LWT_IN, PROG_LWT_OUT, PROG_LWT_XMIT, PROG_RAW_TRACEPOINT, PROG_LWT_SEG6LOCAL = (
    PROG_TYPES[n] for n in ("LWT_IN", "LWT_OUT", "LWT_XMIT", "RAW_TRACEPOINT", "LWT_SEG6LOCAL"))
PROG_SYSCALL = PROG_TYPES["SYSCALL"]
PACKET_PROG_TYPES = frozenset({PROG_SOCKET_FILTER, PROG_SCHED_CLS, PROG_SCHED_ACT, PROG_XDP,
                               PROG_CGROUP_SKB, PROG_LWT_IN, PROG_LWT_OUT, PROG_LWT_XMIT,
                               PROG_LWT_SEG6LOCAL})
CTX_ONLY_PROG_TYPES = frozenset({PROG_RAW_TRACEPOINT, PROG_SYSCALL})  # no data, repeat must be 0


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
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when this ends
    # (it kills a child it stops waiting for), and a serving child would lose its maps.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = sys.stdin.buffer
    child = None
    try:
        request = json.loads(requests.readline())
        if not isinstance(request, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        reply = {"ok": False, "message": f"kernel engine: bad request: {exc}"}
    else:
        if os.environ.get(ABORT_HOOK) == "1":
            os.abort()
        if os.environ.get(HANG_HOOK) == "1":
            time.sleep(3600)
        try:
            child = _Child()
            if request.get("op") == "probe":
                reply = {"ok": True, "detail": child.probe()}
            elif request.get("op") == "test_run":
                reply = {"ok": True, "result": child.test_run(request), "serving": child.obj is not None}
            else:
                raise _ChildError(f"kernel engine: unknown request {request.get('op')!r}")
        except _ChildError as exc:
            reply = _error_reply(exc)
    try:
        _send(channel, reply)
        if child is not None and child.obj is not None:
            child.serve(requests, channel)
    except BrokenPipeError:  # the parent is gone: nobody to answer, not even at exit's flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), channel.fileno())
    finally:
        if child is not None:
            child.close()
    return 0


def _send(channel, reply: dict) -> None:
    channel.write(json.dumps(reply))
    channel.write("\n")
    channel.flush()


def _error_reply(exc: _ChildError) -> dict:
    return {"ok": False, "message": str(exc), "errno": exc.errno, "verifier_log": exc.verifier_log,
            "libbpf_log": exc.libbpf_log}


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
        self.obj = None  # the object kept loaded to serve read_map requests, its maps by name, their info
        self.maps: dict = {}
        self.info: dict = {}
        P, INT, U32, SZ, S = ct.c_void_p, ct.c_int, ct.c_uint32, ct.c_size_t, ct.c_char_p
        for name, res, args in [
            ("bpf_object__open_file", P, [S, P]),
            ("bpf_object__load", INT, [P]),
            ("bpf_object__close", None, [P]),
            ("bpf_object__next_program", P, [P, P]),
            ("bpf_object__next_map", P, [P, P]),
            ("bpf_program__name", S, [P]),
            ("bpf_program__section_name", S, [P]),
            ("bpf_program__fd", INT, [P]),
            ("bpf_program__type", INT, [P]),
            ("bpf_program__set_autoload", INT, [P, ct.c_bool]),
            ("bpf_program__set_type", INT, [P, INT]),
            ("bpf_program__set_flags", INT, [P, U32]),
            ("bpf_program__set_log_buf", INT, [P, P, SZ]),
            ("bpf_map__name", S, [P]),
            ("bpf_map__fd", INT, [P]),
            ("bpf_map__type", INT, [P]),
            ("bpf_map__key_size", U32, [P]),
            ("bpf_map__value_size", U32, [P]),
            ("bpf_map__max_entries", U32, [P]),
            ("bpf_map__initial_value", P, [P, ct.POINTER(SZ)]),
            ("bpf_map__set_initial_value", INT, [P, P, SZ]),
            ("bpf_map__set_max_entries", INT, [P, U32]),
            ("bpf_map__set_map_flags", INT, [P, U32]),
            ("bpf_map__set_key_size", INT, [P, U32]),
            ("bpf_map__set_value_size", INT, [P, U32]),
            ("bpf_map__set_map_extra", INT, [P, ct.c_uint64]),
            ("bpf_map__set_numa_node", INT, [P, U32]),
            ("bpf_map_get_next_key", INT, [INT, P, P]),
            ("bpf_map_lookup_elem", INT, [INT, P, P]),
            ("bpf_map_update_elem", INT, [INT, P, P, ct.c_uint64]),
            ("bpf_prog_load", INT, [INT, S, S, P, SZ, P]),
            ("bpf_prog_test_run_opts", INT, [INT, P]),
            ("libbpf_num_possible_cpus", INT, []),
            ("libbpf_prog_type_by_name", INT, [S, ct.POINTER(INT), ct.POINTER(INT)]),
            ("libbpf_set_print", P, [P]),
            ("libbpf_strerror", INT, [INT, S, SZ]),
        ]:
            try:
                fn = getattr(lib, name)
            except AttributeError:
                raise _ChildError(f"kernel engine: {LIBBPF_SONAME} has no {name} (too old?)") from None
            fn.restype, fn.argtypes = res, args
        self.libc.vsnprintf.restype = INT
        self.libc.vsnprintf.argtypes = [P, SZ, S, P]
        self.libc.close.argtypes = [INT]

        # libbpf's messages go into self.messages (warnings and info; debug output is dropped).
        buf = ct.create_string_buffer(1 << 16)
        proto = ct.CFUNCTYPE(INT, INT, S, P)

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
                        ("ctx_size_out", U32), ("retval", U32), ("repeat", INT), ("duration", U32),
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
            msg += f"\nverifier log (last {LOG_TAIL_LINES} lines):\n{tail_lines(verifier_log, LOG_TAIL_LINES)}"
        else:
            # libbpf prints the verifier log itself when it owns the buffer; drop the noise before it.
            logged = libbpf_log
            start = logged.rfind("-- BEGIN PROG LOAD LOG --")
            if start >= 0:
                verifier_log = logged[start:]
            if logged.strip():
                msg += f"\nlibbpf log (last {LOG_TAIL_LINES} lines):\n{tail_lines(logged, LOG_TAIL_LINES)}"
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
        """Load the object, apply the map updates, do the runs, read back the ``read_maps``; with
        ``serve``, keep the object (in self.obj) if any other map has entries to read later."""
        obj, prog, maps = self._load_or_load_alone(req)
        try:
            fd = self.lib.bpf_program__fd(prog)
            prog_type = self.lib.bpf_program__type(prog)
            name = self.lib.bpf_program__name(prog).decode()
            runs = [self._run_or_error(fd, prog_type, name, run) for run in req["runs"]]
            info = self._map_info(maps)
            wanted = {self._find_map(maps, wanted) for wanted in req["read_maps"]}
            entries = {name: self._read_map(name, mp, info[name]) for name, mp in maps.items() if mp in wanted}
            result = {"runs": runs, "maps": entries, "map_info": info, "possible_cpus": self._cpus(),
                      "prog_type": prog_type}
            if req.get("serve") and any(i["iterable"] and n not in entries for n, i in info.items()):
                self.obj, self.maps, self.info = obj, maps, info
            return result
        finally:
            if self.obj is None:
                self.lib.bpf_object__close(obj)

    def serve(self, requests, channel) -> None:
        """Answer ``read_map`` requests, one line each, until stdin ends (the parent closed the
        result, dropped it, or died)."""
        for line in requests:
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or request.get("op") != "read_map":
                    raise _ChildError(f"kernel engine: unknown request {line[:80]!r} (a child serving maps "
                                      "takes read_map)")
                name = request.get("name")
                mp = self.maps.get(name) if isinstance(name, str) else None
                if mp is None:
                    raise _ChildError(f"kernel engine: map {name!r}: no such map (maps: {sorted(self.maps)})")
                if os.environ.get(HANG_HOOK) == "read":
                    time.sleep(3600)
                reply = {"ok": True, "entries": self._read_map(name, mp, self.info[name])}
            except ValueError as exc:
                reply = {"ok": False, "message": f"kernel engine: bad request: {exc}"}
            except _ChildError as exc:
                reply = _error_reply(exc)
            _send(channel, reply)

    def close(self) -> None:
        if self.obj is not None:
            self.lib.bpf_object__close(self.obj)
            self.obj, self.maps, self.info = None, {}, {}

    def _load_or_load_alone(self, req: dict):
        """The whole object loaded (prog arrays may hold its other programs) with the map updates
        written; if the kernel rejects that, the requested program alone."""
        try:
            return self._load(req, load_all=True)
        except _ChildError:
            return self._load(req, load_all=False)

    def _load(self, req: dict, load_all: bool):
        """(object, program, maps by name) after the load and the map updates."""
        ct, lib = self.ct, self.lib
        path = req["object"]
        obj = lib.bpf_object__open_file(path.encode(), None)
        if not obj:
            raise self._fail(f"libbpf cannot open {path}", ct.get_errno())
        try:
            self._set_program_types(obj, req.get("program_types", {}))
            self._set_program_flags(obj, req.get("program_flags", {}))
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
            for wanted, options in req.get("map_options", {}).items():
                mp = self._find_map(maps, wanted)
                for attribute, value in options.items():
                    ret = getattr(lib, f"bpf_map__set_{attribute}")(mp, value)
                    if ret:
                        raise self._fail(f"setting {attribute} of map {wanted!r}", self._errno(ret))
            ret = lib.bpf_object__load(obj)
            lib.bpf_program__set_log_buf(prog, None, 0)  # the 16 MiB log buffer goes with this call
            if ret:
                raise self._fail(f"loading program {name!r} of {path}", self._errno(ret),
                                 log.value.decode(errors="replace"))
            for wanted, entries in req["map_updates"].items():
                mp = self._find_map(maps, wanted)
                for khex, vhex in entries:
                    self._update(mp, wanted, bytes.fromhex(khex), bytes.fromhex(vhex))
            return obj, prog, maps
        except BaseException:
            lib.bpf_object__close(obj)
            raise

    def _set_program_types(self, obj, types: dict) -> None:
        """Program types named before load, for sections libbpf cannot type."""
        lib = self.lib
        prog = lib.bpf_object__next_program(obj, None)
        while prog:
            kernel_type = types.get(lib.bpf_program__name(prog).decode())
            if kernel_type is not None:
                ret = lib.bpf_program__set_type(prog, PROG_TYPES[kernel_type])
                if ret:
                    raise self._fail(f"setting the type of {lib.bpf_program__name(prog).decode()!r}", self._errno(ret))
            prog = lib.bpf_object__next_program(obj, prog)

    def _set_program_flags(self, obj, flags: dict) -> None:
        """BPF_PROG_LOAD flags named before load (libbpf adds the section's own at load)."""
        lib = self.lib
        names = []
        prog = lib.bpf_object__next_program(obj, None)
        while prog:
            name = lib.bpf_program__name(prog).decode()
            names.append(name)
            if name in flags:
                ret = lib.bpf_program__set_flags(prog, flags[name])
                if ret:
                    raise self._fail(f"setting the flags of {name!r}", self._errno(ret))
            prog = lib.bpf_object__next_program(obj, prog)
        unknown = sorted(set(flags) - set(names))
        if unknown:
            raise _ChildError(f"kernel engine: program_flags names no program {', '.join(map(repr, unknown))} "
                              f"(programs: {', '.join(names)})")

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
        lib.bpf_program__set_autoload(chosen[0], True)  # a "?" section's too: it was asked for
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

    def _map_info(self, maps: dict) -> dict:
        """Every map's attributes; ``iterable``: whether it has entries to read."""
        lib = self.lib
        info = {}
        for name, mp in maps.items():
            mtype = lib.bpf_map__type(mp)
            ksize = lib.bpf_map__key_size(mp)
            info[name] = {"type": mtype, "key_size": ksize, "value_size": lib.bpf_map__value_size(mp),
                          "max_entries": lib.bpf_map__max_entries(mp),
                          "iterable": mtype in ITERABLE_MAP_TYPES and ksize > 0 and lib.bpf_map__fd(mp) >= 0}
        return info

    def _read_map(self, name: str, mp, info: dict) -> list:
        """One map's entries, [key hex, value hex] in bpf_map_get_next_key order."""
        ct, lib = self.ct, self.lib
        entries: list = []
        if not info["iterable"]:
            return entries
        fd, ksize, full = lib.bpf_map__fd(mp), info["key_size"], self._value_size(mp)
        key, nxt = ct.create_string_buffer(ksize), ct.create_string_buffer(ksize)
        value = ct.create_string_buffer(max(full, 1))
        ret = lib.bpf_map_get_next_key(fd, None, nxt)
        while ret == 0:
            ct.memmove(key, nxt, ksize)
            got = lib.bpf_map_lookup_elem(fd, key, value)
            if got == 0:
                entries.append([key.raw.hex(), value.raw[:full].hex()])
            elif self._errno(got) != 2:  # ENOENT: deleted meanwhile (cannot happen here)
                raise self._fail(f"reading map {name!r}", self._errno(got))
            ret = lib.bpf_map_get_next_key(fd, key, nxt)
        if self._errno(ret) != 2:  # ENOENT marks the end
            raise self._fail(f"iterating map {name!r}", self._errno(ret))
        return entries

    def _run_or_error(self, fd: int, prog_type: int, name: str, run: dict) -> dict:
        """One run's reply: its result, or the error it ended in (the next runs still happen)."""
        try:
            return {"ok": True, **self._run(fd, prog_type, name, run)}
        except _ChildError as exc:
            return {"ok": False, "message": str(exc), "errno": exc.errno}

    def _run(self, fd: int, prog_type: int, name: str, run: dict) -> dict:
        ct, lib = self.ct, self.lib
        data = bytes.fromhex(run["data"])
        ctx = None if run["ctx"] is None else bytes.fromhex(run["ctx"])
        repeat = run["repeat"]
        data_size_out, ctx_size_out = run["data_size_out"], run["ctx_size_out"]
        if prog_type in PACKET_PROG_TYPES and len(data) < ETH_HLEN:
            kind = "XDP" if prog_type == PROG_XDP else "packet"
            raise _ChildError(f"kernel engine: {kind} test runs need at least {ETH_HLEN} bytes of "
                              f"data (ETH_HLEN), got {len(data)}; to show an XDP program a shorter "
                              f"frame, pass ctx (struct xdp_md) with data_end < len(data): the "
                              f"rest goes to a fragment (EINVAL)", 22)
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
            keep.append(din)
            opts.data_in, opts.data_size_in = ct.cast(din, ct.c_void_p), len(data)
        if data or data_size_out is not None:
            # No size asked: a buffer larger than any packet a program can make of this one.
            out = ct.create_string_buffer(data_size_out or len(data) + 65536)
            keep.append(out)
            opts.data_out, opts.data_size_out = ct.cast(out, ct.c_void_p), data_size_out or len(out)
        cin = cout = None
        if ctx is not None:
            cin = ct.create_string_buffer(ctx, max(len(ctx), 1))
            opts.ctx_in, opts.ctx_size_in = ct.cast(cin, ct.c_void_p), len(ctx)
        if ctx_size_out is not None or (ctx is not None and not ctx_only):
            size = max(len(ctx or b""), 4096) if ctx_size_out is None else ctx_size_out
            cout = ct.create_string_buffer(max(size, 1))  # size 0: a ctx_out the kernel refuses
            opts.ctx_out, opts.ctx_size_out = ct.cast(cout, ct.c_void_p), size
        data_buffer, ctx_buffer = opts.data_size_out, opts.ctx_size_out
        started = time.perf_counter_ns()
        ret = lib.bpf_prog_test_run_opts(fd, ct.byref(opts))
        syscall_ns = time.perf_counter_ns() - started
        err = self._errno(ret) if ret else 0
        data_cut = out is not None and opts.data_size_out > data_buffer
        ctx_cut = cout is not None and opts.ctx_size_out > ctx_buffer
        if err and not (err == ENOSPC and (data_cut or ctx_cut)):
            hint = ""
            if err == 22:  # EINVAL
                hint = (" (the kernel refused the input: wrong data/ctx size, non-zero ctx fields it "
                        "does not accept, or a program type without test-run support)")
            raise self._fail(f"BPF_PROG_TEST_RUN of {name!r}{hint}", err)
        if ctx_only and ctx is not None:
            ctx_out = cin.raw[:len(ctx)].hex()
        elif cout is None or data_cut:  # data cut short: the kernel copies no ctx
            ctx_out = None
        else:
            ctx_out = cout.raw[:min(opts.ctx_size_out, ctx_buffer)].hex()
        return {"retval": opts.retval,
                "data_out": out.raw[:min(opts.data_size_out, data_buffer)].hex() if out is not None else "",
                "ctx_out": ctx_out,
                "duration_ns": opts.duration,
                "errno": err,
                "data_size_out": opts.data_size_out if out is not None else 0,
                "ctx_size_out": None if ctx_out is None else (len(ctx) if ctx_only else opts.ctx_size_out),
                "syscall_ns": syscall_ns}

if __name__ == "__main__":
    sys.exit(_child_main())
