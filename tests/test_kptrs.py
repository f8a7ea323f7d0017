"""kptrs at run time (tests/progs/kptr_stash.c, kptr_rules.c, kptr_maps.c, host_objects.c,
host_refs.c): objects made by bpf_obj_new, stashed in a map's referenced kptr field with
bpf_kptr_xchg, counted by the object's allocator; released when their element is overwritten or
deleted (from a program or from Python) and when the map is freed; shown to Python as handles.
Host objects from user kfuncs: one object per host value while it has references, given back to
the host by its type's release function when the last one goes. Every engine gives the same
results, and threads exchanging objects while Python deletes elements neither leak nor free
twice (docs/semantics.md#kptrs)."""
from __future__ import annotations

import gc
import pathlib
import random
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import bpfjit
from bpfjit.errors import MapError
from bpfjit.runtime.kptrs import KptrFields, ObjectAllocator, ObjectError, ObjectHandle, kptr_slots
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import BPF_EXIST, MapSpec, create_map

from conftest import ENGINES

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
STASH = PROGS / "kptr_stash.o"
XDP_ABORTED, XDP_DROP, XDP_PASS = 0, 1, 2
PACKET = bytes(40)


def _stashed(obj) -> int:
    """How many objects the conns map holds, as Python sees them."""
    return sum(value["conn"] is not None for value in obj.maps["conns"].values())


@pytest.mark.parametrize("engine", ENGINES)
def test_track_counts_packets_in_an_object_kept_in_the_map(engine):
    obj = bpfjit.load(STASH)
    track = obj.programs["track"]
    obj.bss.key_in = 5
    for n, size in enumerate((40, 100, 60), start=1):
        assert track.test_run(bytes(size), engine=engine).retval == XDP_PASS
        assert obj.bss.packets_out == n
    obj.bss.key_in = 9
    track.test_run(bytes(50), engine=engine)
    assert obj.kptr_objects.live == 2  # one conn per key
    assert obj.programs["peek"].test_run(PACKET, engine=engine).retval == XDP_PASS
    assert obj.bss.bytes_out == 50
    obj.bss.key_in = 5
    obj.programs["peek"].test_run(PACKET, engine=engine)
    assert obj.bss.bytes_out == 40 + 100 + 60
    value = obj.maps["conns"][5]
    assert value["seen"] == 3 and isinstance(value["conn"], ObjectHandle) and value["conn"].live
    assert value["conn"].read() == {"packets": 3, "bytes": 200, "id": 5}
    obj.programs["forget"].test_run(PACKET, engine=engine)
    assert not value["conn"].live and value["conn"].read() is None


@pytest.mark.parametrize("engine", ENGINES)
def test_objects_are_freed_on_drop_and_replaced_on_swap(engine):
    obj = bpfjit.load(STASH)
    run = {name: obj.programs[name] for name in ("swap", "forget", "peek")}
    obj.bss.key_in = 3
    assert run["forget"].test_run(PACKET, engine=engine).retval == XDP_DROP  # no element yet
    run["swap"].test_run(PACKET, engine=engine)
    first = obj.maps["conns"][3]["conn"]
    run["swap"].test_run(PACKET, engine=engine)
    second = obj.maps["conns"][3]["conn"]
    assert obj.kptr_objects.live == 1 and obj.kptr_objects.allocated == 2 and obj.kptr_objects.freed == 1
    assert first.address != second.address or first == second  # the freed memory may come back
    assert run["forget"].test_run(PACKET, engine=engine).retval == XDP_PASS
    assert obj.kptr_objects.live == 0 and obj.maps["conns"][3]["conn"] is None
    assert run["peek"].test_run(PACKET, engine=engine).retval == XDP_DROP  # an empty slot reads NULL


@pytest.mark.parametrize("engine", ENGINES)
def test_a_program_overwriting_or_deleting_an_element_releases_its_object(engine):
    obj = bpfjit.load(STASH)
    for key in (1, 2):
        obj.bss.key_in = key
        obj.programs["swap"].test_run(PACKET, engine=engine)
    obj.bss.key_in = 1
    assert obj.programs["reset"].test_run(PACKET, engine=engine).retval == XDP_PASS
    assert obj.kptr_objects.live == 1 and obj.maps["conns"][1] == {"seen": 0, "conn": None}
    obj.bss.key_in = 2
    assert obj.programs["remove"].test_run(PACKET, engine=engine).retval == XDP_PASS
    assert obj.kptr_objects.live == 0 and 2 not in obj.maps["conns"]


def _stash(m, allocator: ObjectAllocator, key: int) -> None:
    """Put a new object into the conn field of key's value on every cpu, as bpf_kptr_xchg does."""
    if not m.indexed:
        m.update_elem(key, {"seen": key, "conn": None})
    for cpu in range(2 if m.percpu else 1):
        address = m.lookup(key.to_bytes(4, "little"), cpu)
        assert allocator.exchange(address + 8, allocator.allocate(24, 0)) == 0


@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.LRU_HASH, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH,
                                      MapType.ARRAY, MapType.PERCPU_ARRAY])
def test_every_map_type_that_holds_kptrs_releases_them(map_type):
    """Objects put into the fields of a map of each type (as bpf_kptr_xchg puts them) are
    released by an overwrite, a delete (an array's values are only overwritten), an LRU
    eviction and the map's end."""
    btf = bpfjit.load(STASH, programs=[]).btf
    value_type, key_type = btf.find("slot"), btf.find("__u32")
    allocator = ObjectAllocator(arena_bytes=4096)
    m = create_map(MapSpec("m", map_type, 4, 16, 2, 0, key_type, value_type), btf, ncpus=2)
    slots, members = kptr_slots(btf, value_type)
    m.attach_kptrs(KptrFields(slots, allocator), members)

    per_value = 2 if m.percpu else 1
    _stash(m, allocator, 0)
    _stash(m, allocator, 1)
    assert allocator.live == 2 * per_value
    m.update_elem(0, {"seen": 9, "conn": None})
    assert allocator.live == per_value
    if m.indexed:
        m.clear()
    else:
        del m[1]
    assert allocator.live == 0
    _stash(m, allocator, 0)
    _stash(m, allocator, 1)
    if map_type in (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH):
        m.update_elem(5, {"seen": 5, "conn": None})  # full: the least recently used element goes
        assert allocator.live == per_value
    del m
    gc.collect()
    assert allocator.live == 0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("program, map_name", [("stash_percpu_array", "percpu_array"), ("stash_lru", "lru"),
                                               ("stash_percpu_hash", "percpu_hash")])
def test_bpf_kptr_xchg_on_per_cpu_and_lru_maps(engine, program, map_name):
    """Each run exchanges a new conn into the slot of the cpu it runs on (cpu 0) and drops the one
    it took out; the other cpu's slot stays empty; Python's overwrite or delete releases the last."""
    obj = bpfjit.load(PROGS / "kptr_maps.o", ncpus=2)
    m, allocator = obj.maps[map_name], obj.kptr_objects
    obj.bss.key_in = 1
    previous = []
    for conn_id in (1, 2, 3):
        obj.bss.id_in = conn_id
        assert obj.programs[program].test_run(PACKET, engine=engine).retval == XDP_PASS
        previous.append(obj.bss.prev_out)
    assert previous == [0, 1, 2]
    assert allocator.live == 1 and allocator.freed == 2
    cpus = m[1] if m.percpu else [m[1]]
    assert cpus[0]["conn"].read() == {"packets": 0, "id": 3}
    assert [value["conn"] for value in cpus[1:]] == [None] * (len(cpus) - 1)
    if m.indexed:
        m[1] = [{"conn": None}] * 2
    else:
        del m[1]
    assert allocator.live == 0


def test_a_new_object_is_zeroed_even_when_its_memory_was_used_before():
    obj = bpfjit.load(STASH)
    obj.bss.key_in = 1
    obj.programs["track"].test_run(bytes(200))
    obj.programs["forget"].test_run(PACKET)
    obj.programs["track"].test_run(bytes(30))  # gets the freed object's memory back
    obj.programs["peek"].test_run(PACKET)
    assert obj.bss.packets_out == 1 and obj.bss.bytes_out == 30


def test_python_delete_overwrite_and_clear_release_the_objects():
    obj = bpfjit.load(STASH)
    conns, swap = obj.maps["conns"], obj.programs["swap"]
    for key in range(4):
        obj.bss.key_in = key
        swap.test_run(PACKET)
    assert obj.kptr_objects.live == 4
    del conns[0]
    assert obj.kptr_objects.live == 3
    conns[1] = {"seen": 7, "conn": None}  # an overwrite releases the object, keeps the key
    assert obj.kptr_objects.live == 2 and conns[1] == {"seen": 7, "conn": None}
    conns[2] = {"seen": 1, "conn": conns[3]["conn"]}  # Python cannot put an object in a field
    assert conns[2]["conn"] is None and obj.kptr_objects.live == 1
    conns.clear()
    assert obj.kptr_objects.live == 0 and len(conns) == 0


def test_objects_are_released_when_the_map_is_freed():
    obj = bpfjit.load(STASH)
    for key in range(5):
        obj.bss.key_in = key
        obj.programs["swap"].test_run(PACKET)
    allocator = obj.kptr_objects
    assert allocator.live == 5
    del obj
    gc.collect()
    assert allocator.live == 0 and allocator.freed == allocator.allocated == 5


@pytest.mark.parametrize("engine", ENGINES)
def test_an_exchange_into_a_deleted_element_releases_the_object(engine):
    """A program that looked an element up before Python deleted it still holds its value:
    the object it exchanges in is released at once instead of leaking in a free slot."""
    obj = bpfjit.load(STASH)
    obj.bss.key_in = 2
    obj.programs["swap"].test_run(PACKET, engine=engine)
    conns = obj.maps["conns"]
    field = conns.lookup(bytes([2, 0, 0, 0])) + 8  # the element's conn, where the program holds it
    del conns[2]
    allocator = obj.kptr_objects
    stray = allocator.allocate(24, 0)
    assert allocator.exchange(field, stray) == 0
    assert allocator.live == 0
    obj.programs["swap"].test_run(PACKET, engine=engine)  # the slot is reused: an ordinary element again
    assert allocator.live == 1 and _stashed(obj) == 1


def test_the_allocator_refuses_a_double_free_and_counts_what_it_hands_out():
    allocator = ObjectAllocator(arena_bytes=64)
    first = allocator.allocate(20, 1)
    second = allocator.allocate(16, 1)
    assert first and second and second - first == 32  # 20 bytes take two 16-byte units
    assert allocator.allocate(40, 1) == 0  # the arena is full: NULL, as bpf_obj_new under pressure
    allocator.acquire(first)
    allocator.release(first)
    assert allocator.live == 2
    allocator.release(first)
    with pytest.raises(ObjectError, match="release of 0x[0-9a-f]+, which is no live object"):
        allocator.release(first)
    assert allocator.live == 1 and allocator.allocated == 2 and allocator.freed == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_an_object_in_global_data(engine):
    obj = bpfjit.load(PROGS / "kptr_rules.o", programs=["fine_global_stash"])
    stash = obj.programs["fine_global_stash"]
    assert [stash.test_run(PACKET, engine=engine).retval for _ in range(3)] == [1, 2, 2]
    assert obj.kptr_objects.live == 1
    obj.globals["global_conn"] = 0  # Python writes leave the field alone
    assert obj.kptr_objects.live == 1 and obj.globals["global_conn"] != 0


# Host objects: the tasks of a made-up host application, handed to programs by user kfuncs.
TASKS = {7: {"pid": 7, "uid": 1000, "comm": b"sshd".ljust(16, b"\0")},
         8: {"pid": 8, "uid": 0, "comm": b"init".ljust(16, b"\0")}}
# What the release function of struct task_info saw: each object's fields, and the host's value.
RELEASED: list = []
bpfjit.register_kfunc("host_task_acquire", lambda pid: TASKS.get(pid), acquire=True, ret_type="task_info")
bpfjit.register_kfunc("host_task_release", lambda task: RELEASED.append((task.read(), task.host)), release=True,
                      ret_type="task_info")
HOST_REFS = PROGS / "host_refs.o"


@pytest.fixture
def released() -> list:
    """RELEASED, emptied once the objects earlier tests left to the collector are gone (their
    maps give their tasks back when they are freed)."""
    gc.collect()
    RELEASED.clear()
    return RELEASED


def _fields(pid: int) -> dict:
    """A task's fields as an object's handle reads them (chars as a list of numbers)."""
    task = TASKS[pid]
    return {**task, "comm": list(task["comm"])}


def _released_pids() -> list[int]:
    """The pids of the tasks given back so far, checking each was given back whole: its object
    still readable, and the host's own value with it."""
    for fields, host in RELEASED:
        assert fields == _fields(fields["pid"]) and host is TASKS[fields["pid"]]
    return [fields["pid"] for fields, _ in RELEASED]


def _run(obj, program: str, engine: str, key: int = 0, pid: int = 7, delete: bool = False) -> int:
    """Run one of host_refs.c's programs on key_in = key, pid_in = pid, delete_in = delete: its
    return value."""
    obj.bss.key_in, obj.bss.pid_in, obj.bss.delete_in = key, pid, int(delete)
    return obj.programs[program].test_run(PACKET, engine=engine).retval


@pytest.mark.parametrize("engine", ENGINES)
def test_host_objects_from_user_kfuncs_are_read_stashed_and_released(engine, released):
    obj = bpfjit.load(PROGS / "host_objects.o")
    remember, tasks = obj.programs["remember"], obj.maps["tasks"]
    results = []
    for pid in (7, 8, 9, 7):
        obj.bss.pid_in = pid
        results.append((remember.test_run(PACKET, engine=engine).retval, obj.bss.uid_out))
    assert results == [(XDP_PASS, 1000), (XDP_PASS, 0), (XDP_DROP, 0), (XDP_PASS, 1000)]
    # The tasks of pids 7 and 8, one each in the map. The second 7 acquired the object the map
    # held: the exchange gave it back and the program's release left the map's reference.
    assert obj.kptr_objects.live == 2 and released == []
    assert tasks[8]["task"].read() == _fields(8) and tasks[8]["task"].host is TASKS[8]
    del tasks[8]
    assert obj.kptr_objects.live == 1 and _released_pids() == [8]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_release_function_gives_a_host_object_back_when_its_last_reference_goes(engine, released):
    obj = bpfjit.load(HOST_REFS)
    tasks, allocator = obj.maps["tasks"], obj.kptr_objects
    _run(obj, "stash", engine, key=0, pid=7)
    assert _run(obj, "stash", engine, key=0, pid=8) == XDP_PASS  # the exchange gave 7 back, the program released it
    assert _released_pids() == [7]
    _run(obj, "stash", engine, key=1, pid=7)
    del tasks[1]  # deleted from Python
    assert _released_pids() == [7, 7]
    tasks[0] = {"task": None}  # overwritten from Python: task 8's element
    assert _released_pids() == [7, 7, 8]
    _run(obj, "stash", engine, key=0, pid=7)
    assert _run(obj, "empty", engine, key=0) == XDP_PASS  # overwritten by a program
    assert _released_pids() == [7, 7, 8, 7]
    _run(obj, "stash", engine, key=0, pid=8)
    assert _run(obj, "empty", engine, key=0, delete=True) == XDP_PASS  # deleted by a program
    assert _released_pids() == [7, 7, 8, 7, 8]
    _run(obj, "stash", engine, key=0, pid=7)
    _run(obj, "stash", engine, key=1, pid=8)
    assert allocator.live == 2 and len(released) == 5
    del obj, tasks
    gc.collect()  # the map is freed
    assert sorted(_released_pids()[5:]) == [7, 8]
    assert allocator.live == 0 and allocator.freed == allocator.allocated == 7


@pytest.mark.parametrize("engine", ENGINES)
def test_one_host_object_is_one_object_however_often_it_is_acquired(engine, released):
    obj = bpfjit.load(HOST_REFS)
    tasks, allocator = obj.maps["tasks"], obj.kptr_objects
    assert _run(obj, "twice", engine, pid=7) == XDP_PASS
    assert (obj.bss.same_out, obj.bss.uid_out) == (1, 1000)  # one pointer, readable after one release
    assert _released_pids() == [7] and allocator.allocated == 1  # given back once, at the second release
    _run(obj, "stash", engine, key=0, pid=7)
    _run(obj, "stash", engine, key=1, pid=7)
    first, second = tasks[0]["task"], tasks[1]["task"]
    assert first.address == second.address and allocator.live == 1 and first.host is TASKS[7]
    _run(obj, "twice", engine, pid=7)  # two more references for a while: the map keeps two
    del tasks[0]
    assert _released_pids() == [7] and second.live
    del tasks[1]
    assert _released_pids() == [7, 7] and not second.live
    assert allocator.allocated == allocator.freed == 2


def test_threads_acquiring_one_host_object_give_it_back_once_per_object(released):
    """Eight threads acquire the two tasks, stash them and drop them; however their acquires and
    releases interleave, every object the allocator made is given back exactly once."""
    obj = bpfjit.load(HOST_REFS)
    allocator = obj.kptr_objects
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                name = rng.choice(("stash", "twice", "empty"))
                obj.bss.key_in, obj.bss.pid_in = rng.randrange(4), rng.choice((7, 8))
                obj.bss.delete_in = rng.randrange(2)
                obj.programs[name].test_run(PACKET, repeat=4, engine="jit")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    for program in obj.programs.values():
        program.prepare("jit")
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in workers:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in workers:
        t.join()
    assert not errors, errors[0]
    obj.maps["tasks"].clear()
    assert allocator.live == 0 and allocator.allocated == allocator.freed == len(released) > 0
    assert set(_released_pids()) <= {7, 8}


def test_a_release_function_runs_with_no_allocator_lock_held():
    """The host's code may use the allocator (here: allocate) from its release function."""
    allocator = ObjectAllocator(arena_bytes=4096)
    host, seen = {"pid": 1}, []
    address = allocator.adopt(host, 1, lambda: bytes(16), lambda a: seen.append(allocator.allocate(16, 2)))
    assert allocator.adopt(host, 1, lambda: bytes(16), None) == address  # the same object, one more reference
    done = threading.Thread(target=lambda: (allocator.release(address), allocator.release(address)))
    done.start()
    done.join(timeout=10)
    assert not done.is_alive() and len(seen) == 1 and seen[0] != 0
    assert allocator.get(address) is None and allocator.live == 1  # what the release function allocated


@pytest.mark.parametrize("program, message", [
    ("leak", "Unreleased reference id=2 alloc_insn=2"),
    ("scribble", "only read is supported"),
])
def test_host_objects_follow_the_reference_rules(program, message):
    with pytest.raises(bpfjit.VerifierError) as caught:
        bpfjit.load(PROGS / "host_objects.o", programs=[program])
    assert caught.value.message == message


def test_a_host_object_of_the_wrong_shape_fails_the_run_cleanly():
    TASKS[9] = {"pid": 9, "uid": 1, "comm": b"short"}
    try:
        obj = bpfjit.load(PROGS / "host_objects.o")
        obj.bss.pid_in = 9
        with pytest.raises(bpfjit.BPFRuntimeError, match=r"helper \d+ \(host_task_acquire\) failed: .*char\[16\]"):
            obj.programs["remember"].test_run(PACKET, engine="reference")
    finally:
        del TASKS[9]


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="bpf_obj_new_impl", fn=lambda a, b: 0), "bpf_obj_new_impl is one of bpfjit's own kfuncs"),
    (dict(name="both", fn=lambda a: 0, acquire=True, release=True), "both cannot both acquire and release"),
    (dict(name="nothing", fn=lambda a: 0, acquire=True), r"nothing acquires: give the struct it returns"),
    (dict(name="many", fn=lambda a, b, c, d, e, f: 0), "many takes 6 arguments"),
    (dict(name="not a name", fn=lambda: 0), "'not a name' is not a C identifier"),
    (dict(name="unbound", fn=lambda a: 0, release=True), "unbound releases: give the struct it releases"),
    (dict(name="wide_release", fn=lambda a, b: 0, release=True, ret_type="task_info"),
     "wide_release takes 2 arguments: a kfunc takes at most 5, a release kfunc the object alone"),
    (dict(name="second_release", fn=lambda a: 0, release=True, ret_type="task_info"),
     "struct task_info already has a release kfunc, host_task_release"),
])
def test_register_kfunc_refuses_what_no_program_could_call(kwargs, message):
    with pytest.raises(bpfjit.BPFError, match=f"^register_kfunc: {message}"):
        bpfjit.register_kfunc(**kwargs)


def _churn(engine: str, seconds: float, threads: int) -> None:
    """threads threads run churn (stash or drop objects under 16 keys) while the main thread
    deletes, overwrites and reads elements; then the allocator's count must be what the map
    holds, and 0 once the map is freed."""
    allocator = _churn_object(engine, seconds, threads)
    gc.collect()
    assert allocator.live == 0


def _churn_object(engine: str, seconds: float, threads: int) -> ObjectAllocator:
    """The run of _churn, up to freeing the object: its allocator."""
    obj = bpfjit.load(STASH)
    churn, conns, allocator = obj.programs["churn"], obj.maps["conns"], obj.kptr_objects
    churn.prepare(engine)
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                packet = bytes([rng.randrange(16), rng.randrange(4)]) + bytes(38)
                # XDP_ABORTED: Python deleted the slot between the program's insert and lookup
                assert churn.test_run(packet, repeat=4, engine=engine).retval in (XDP_ABORTED, XDP_DROP, XDP_PASS)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    rng = random.Random(99)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not errors:
        key = rng.randrange(16)
        try:
            if rng.random() < 0.5:
                conns.delete_elem(key)
            else:
                conns.update_elem(key, {"seen": 1, "conn": None}, BPF_EXIST)
        except MapError:
            pass  # no such element (now)
        for value in conns.values():
            assert value["conn"] is None or isinstance(value["conn"], ObjectHandle)
    stop.set()
    for t in workers:
        t.join()
    assert not errors, errors[0]
    assert allocator.live == _stashed(obj)
    assert allocator.allocated == allocator.freed + allocator.live
    for key in conns.keys()[::2]:
        del conns[key]
    assert allocator.live == _stashed(obj)
    return allocator


def test_a_map_a_collection_frees_while_its_thread_holds_the_kptr_locks_gives_its_objects_back():
    """A garbage collection may run at any allocation, also while its thread writes a kptr
    field: a map with kptrs it frees empties its values in that thread, under the locks it holds
    (a CI run hung on this once). In a child process, so that a hang fails the test (its timeout)
    instead of stopping the run."""
    script = textwrap.dedent(f"""
        import gc
        import bpfjit
        from bpfjit.runtime.kptrs import FIELD_LOCK
        obj = bpfjit.load({str(STASH)!r})
        obj.programs["track"].test_run(bytes(40), engine="reference")
        allocator = obj.kptr_objects
        assert allocator.live == 1, allocator.live
        obj.cycle = obj  # only a collection frees it now
        del obj
        with FIELD_LOCK, allocator._lock:
            gc.collect()
        print(allocator.live)
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (child.returncode, child.stdout.strip()) == (0, "0"), child.stderr


def test_threads_exchange_objects_while_python_deletes():
    _churn("jit", seconds=1.0, threads=8)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_threads_exchange_objects_while_python_deletes_long(engine):
    _churn(engine, seconds=4.0, threads=8)
