"""Loading a clang-built object the way libbpf does: maps, global data, programs ready to run.

    obj = bpfjit.load("prog.o", rodata={"threshold": 10})
    obj.programs["xdp_prog"].test_run(packet)      # jitted; engine="reference" for the interpreter
    obj.maps["counts"][1]                           # dict-like maps, values typed by BTF
    obj.bss.hits                                    # global variables by name, typed by BTF
    obj.static_keys["debug"].enable()               # static keys declared with static_keys.h
    bpfjit.load("tests.o", programs=["accepted"])    # only these programs (libbpf's autoload)

Each global-data section (.data, .rodata, .bss, .data.*, .rodata.*, .bss.*) becomes a
single-element array map named after the section, as libbpf makes it. ``.rodata`` values can be
set at load and are frozen afterwards, so the JIT folds loads from them into constants.

As in libbpf, every program is loaded (checked and prepared) unless its section name starts with
``?`` (``SEC("?socket")``: not autoloaded); ``programs=[...]`` loads exactly the programs named,
so a program the checks reject does not stop the others.

CO-RE relocations (``.BTF.ext``) are applied when each program is linked, as libbpf applies them
between open and load: against the object's own types by default (every relocation keeps its
local answer), or against the BTF given with ``btf=`` (a raw BTF file such as
``/sys/kernel/btf/vmlinux``, or an ELF object's ``.BTF``). A relocation the target cannot satisfy
poisons its instruction (runtime/btf/core.py); ``obj.core_log`` says what each relocation did.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import functools
import os
from typing import Any, Callable, Iterator, Mapping, Sequence

from . import isa
from .btf import fix_datasecs
from .errors import BPFError, BTFError, MapError, ObjectError, VerifierError
from .errors import ProgramFlagsError
from .program import Program
from .program_flags import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS, flags_value
from .runtime import btf as btf_module
from .runtime.btf import core
from .runtime import elf
from .runtime.context import PROGRAM_TYPES, section_matches, program_type_for_section
from .runtime.environment import FUNC_TOKEN_BASE, ArrayLayout, Environment, HashLayout, func_token
from .runtime.map_types import MapType, map_type_name
from .runtime.maps import BPF_F_RDONLY_PROG, Map, MapSpec, create_map, map_from_handle
from .runtime.maps.create import supported
from .runtime.memory import Region
from .runtime.helpers import Helper, HelperFn, HelperRegistry, Prototype
from .runtime.jump_tables import create_table_map
from .runtime.kfuncs import object_helpers, register_kfunc  # noqa: F401 (bpfjit.register_kfunc)
from .runtime.kptrs import KptrFields, ObjectAllocator, ObjectHandle, kptr_slots
from .runtime.static_keys import StaticKey
from .runtime.kernel_helpers import HELPER_IDS
from .runtime.stdhelpers import standard_helpers
from .source_lines import SourceMap, annotate_log, source_map
from .verifier.insn_text import insn_text

# Helpers users registered with register_helper(): objects loaded afterwards can call them.
_user_helpers = HelperRegistry()
NOT_AUTOLOADED = "?"  # libbpf's section-name prefix of programs loaded only when asked for
# The sections whose libbpf definition carries a BPF_PROG_LOAD flag (section_defs: SEC_XDP_FRAGS,
# SEC_SLEEPABLE), among those bpfjit types (runtime/context.py; "name+" matches as there). libbpf
# names "xdp.frags", "xdp.frags/devmap" and "xdp.frags/cpumap"; the other sleepable ones
# (fentry.s, fexit.s, fmod_ret.s, lsm.s, iter.s, tp.s, struct_ops.s, ...) are of types bpfjit does
# not run.
SECTION_FLAGS: tuple[tuple[str, int], ...] = (
    ("xdp.frags+", BPF_F_XDP_HAS_FRAGS), ("uprobe.s+", BPF_F_SLEEPABLE), ("uretprobe.s+", BPF_F_SLEEPABLE),
    ("syscall", BPF_F_SLEEPABLE),
)


def section_flags(section: str) -> int:
    """The flags libbpf gives a program of this section at load (its libbpf_prepare_prog_load adds
    them to what bpf_program__set_flags set)."""
    name = section.removeprefix(NOT_AUTOLOADED)
    return next((flags for pattern, flags in SECTION_FLAGS if section_matches(pattern, name)), 0)


def is_elf(data: bytes) -> bool:
    """Whether data is an ELF file (what ``load`` takes) rather than raw bytecode or text."""
    return elf.is_elf(data)


def code_sections(data: bytes, name: str | None = None) -> list[elf.CodeSection]:
    """The executable sections of an ELF object's bytes, unlinked: what ``llvm-objdump -d`` lists.

    name: how messages refer to the object.
    """
    return elf.code_sections(data, name)


def register_helper(id_or_name: int | str, fn: HelperFn, prototype: Prototype | None = None) -> Helper:
    """Make fn(r1, r2, r3, r4, r5) -> r0 callable as helper `id_or_name` by objects loaded from now on.

    A name is a kernel helper name, with or without its ``bpf_`` prefix (``"get_current_pid_tgid"``);
    an id may be any helper number, including ones the kernel does not define. A registration
    replaces bpfjit's own implementation of that helper.
    """
    if isinstance(id_or_name, str):
        name = id_or_name.removeprefix("bpf_")
        if name not in HELPER_IDS:
            raise BPFError(f"unknown helper name {id_or_name!r}: register it by id instead")
        helper_id = HELPER_IDS[name]
    else:
        helper_id, name = int(id_or_name), getattr(fn, "__name__", f"helper_{id_or_name}")
    return _user_helpers.add(Helper(helper_id, name, fn, prototype or Prototype()))


def _value_bytes(m: Map) -> bytes:
    """The value of a single-element global-data map, its bpf_spin_lock word read as zero (the
    lock's state is no value: the kernel hides it from user space too)."""
    data = ctypes.string_at(m.value_address(0), m.value_size)
    lock = m.lock_offset
    return data if lock is None else data[:lock] + bytes(4) + data[lock + 4:]


def _write_value(m: Map, offset: int, data: bytes) -> None:
    """Write into a global-data map's value (natively: the loader may write frozen .rodata),
    around its bpf_spin_lock word, which only the lock helpers change (a program may hold it),
    and its kptr fields, which only bpf_kptr_xchg and the program's stores change."""
    if offset < 0 or offset + len(data) > m.value_size:
        raise BPFError(f"write of {len(data)} bytes at {offset} outside {m.name} ({m.value_size} bytes)")
    start, end = offset, offset + len(data)
    for low, high in [*((word, word + size) for word, size in m.kept_words()), (end, end)]:
        if high <= start:
            continue
        stop = min(low, end)
        if stop > start:
            ctypes.memmove(m.value_address(0) + start, data[start - offset:stop - offset], stop - start)
        start = max(start, high)
        if start >= end:
            break


@dataclasses.dataclass(frozen=True)
class FunctionHandle:
    """A BPF function of a loaded object, as a function-pointer global holds it: what reading one
    gives, and what assigning one takes (``obj.globals["hook"] = obj.functions["trace_len"]``)."""
    name: str
    number: int  # object-wide: programs see func_token(number)
    owner: "Object" = dataclasses.field(compare=False, repr=False)


class _DataPointers:
    """The pointer words of global data as Python values (the BTF codec's PointerCodec), for one
    value written or read: a section's (``obj.maps[".bss"][0]``) or one of its variables'
    (``obj.globals["hook"]``), ``base`` bytes into the section. A function-pointer slot reads as
    a FunctionHandle, or None for NULL, and takes only those, of a function whose prototype fits
    the slot's, as the verifier assumes of every write into it; a slot the object's data
    initialises never becomes NULL. A kptr field reads as an ObjectHandle, or None; only
    programs change it, so what a write gives for it (a handle, None or an int) is not stored."""

    def __init__(self, obj: "Object", m: Map, base: int, name: str, size: int):
        self.obj = obj
        self.map = m
        self.base = base
        self.name = name  # how C names the value: the variable, or the section for all of it
        self.size = size
        self.slots = obj._function_slots.get(m.name, {})

    def decode(self, offset: int, raw: int) -> Any:
        at = self.base + offset
        kptrs = self.map.kptrs
        if kptrs is not None and at in kptrs.offsets:
            return kptrs.handle(raw, self.obj.btf)
        if at not in self.slots:
            return raw
        if raw == 0:
            return None
        number = raw - FUNC_TOKEN_BASE
        functions = self.obj.elf.functions
        return FunctionHandle(functions[number].name, number, self.obj) if 0 <= number < len(functions) else raw

    def encode(self, offset: int, value: Any) -> Any:
        at = self.base + offset
        kptrs = self.map.kptrs
        if kptrs is not None and at in kptrs.offsets:
            if value is None or isinstance(value, (ObjectHandle, int)):
                return 0  # not written (_write_value keeps the field)
            raise BPFError(f"{self.name}: the kptr field at offset {at - self.base} holds an object only programs "
                           f"store (give an object handle or None), not {value!r}")
        slot = self.slots.get(at)
        if slot is None:
            return value
        if value is None:
            return 0
        if not isinstance(value, FunctionHandle):
            raise BPFError(f"{slot.name} is a function pointer: assign a function (obj.functions[name]) or "
                           f"None, not {value!r}")
        if value.owner is not self.obj or value.name not in self.obj.functions:
            raise BPFError(f"{slot.name}: {value.name} is not a function of {self.obj.name} a pointer may name")
        why = self.obj.prototype_mismatch(value.name, slot.name, slot.proto_id)
        if why is not None:
            raise BPFError(f"cannot assign {value.name} to {slot.name}: {why}")
        return func_token(value.number)

    def check_bytes(self, offset: int, size: int) -> None:
        start = self.base + offset
        covered = [slot.name for at, slot in self.slots.items() if start <= at < start + size]
        if covered:
            where = self.name if (offset, size) == (0, self.size) else ", ".join(covered)
            raise BPFError(f"{where} holds function pointers: assign functions (obj.functions[name]) or None, "
                           "not bytes")

    def value_bytes(self, type_id: int, value: Any) -> bytes:
        """The bytes of value (of type type_id, ``size`` bytes), checked: no slot the object's
        data initialises with a function is left NULL (given None, or left out of a dict)."""
        data = self.obj.btf.encode_value(type_id, value, self)
        for at in sorted(self.obj._initialised_slots.get(self.map.name, ())):
            if self.base <= at < self.base + self.size and not any(data[at - self.base:at - self.base + 8]):
                raise BPFError(f"{self.slots[at].name} is initialised with a function: it can name another one, "
                               "not None")
        return data


class _SectionValues:
    """A global-data section's value as its map shows it (``obj.maps[".bss"][0]``, the map's
    ValueCodec): typed as ``obj.globals`` types its variables, function pointers and kptrs
    included, so neither view can store what the other would refuse."""

    def __init__(self, obj: "Object", m: Map):
        self.obj = obj
        self.map = m

    def _pointers(self) -> _DataPointers:
        return _DataPointers(self.obj, self.map, 0, self.map.name, self.map.value_size)

    def decode(self, data: bytes) -> Any:
        return self.obj.btf.format_value(self.map.value_type_id, data, self._pointers())

    def encode(self, value: Any) -> bytes:
        try:
            return self._pointers().value_bytes(self.map.value_type_id, value)
        except BTFError as exc:
            raise MapError(f"map {self.map.name}: cannot encode value: {exc}", errno.EINVAL) from None


class Globals:
    """Global variables by name, read and written through their section's map, typed by BTF."""

    def __init__(self, obj: "Object", sections: list[str]):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_sections", sections)

    def _find(self, name: str) -> tuple[Map, int, int, int]:
        for section in self._sections:
            for var in self._obj._variables.get(section, ()):
                if var.name == name:
                    return self._obj.maps[section], var.offset, var.size, var.type_id
        raise KeyError(name)

    def __getitem__(self, name: str) -> Any:
        m, offset, size, type_id = self._find(name)
        data = _value_bytes(m)[offset:offset + size]
        return self._obj.btf.format_value(type_id, data, _DataPointers(self._obj, m, offset, name, size))

    def __setitem__(self, name: str, value: Any) -> None:
        m, offset, size, type_id = self._find(name)
        if m.frozen:
            raise BPFError(f"{name} is in {m.name}, which is frozen after load (set it with load(rodata=...))")
        data = _DataPointers(self._obj, m, offset, name, size).value_bytes(type_id, value)
        _write_value(m, offset, data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __iter__(self) -> Iterator[str]:
        return (var.name for section in self._sections for var in self._obj._variables.get(section, ()))

    def __contains__(self, name: object) -> bool:
        return name in list(self)

    def as_dict(self) -> dict[str, Any]:
        return {name: self[name] for name in self}


class Object:
    """A loaded BPF object: its programs, maps and global variables."""

    def __init__(self, path: str | os.PathLike, rodata: dict[str, Any] | None = None, ncpus: int = 1,
                 trace: Callable[[str], None] | None = None, programs: Sequence[str] | None = None,
                 verify: bool = True, log_level: int = 1, maps: Mapping[str, Mapping[str, int]] | None = None,
                 program_types: Mapping[str, str] | None = None,
                 btf: "str | os.PathLike | btf_module.BTF | None" = None,
                 program_flags: Mapping[str, int] | None = None):
        self.path = os.fspath(path)
        self.name = os.path.basename(self.path)
        self.trace_log: list[str] = []
        self._trace = trace
        self.elf = elf.read_object(path)
        if self.elf.btf is None:
            raise ObjectError(f"{self.name}: no .BTF section (build with clang -g)")
        self.btf = btf_module.parse_btf(self.elf.btf)
        self.license = self.elf.license
        self.ncpus = ncpus
        fix_datasecs(self.btf, self.elf)
        self._core_target = _core_target(btf)
        # libbpf's account of each CO-RE relocation applied ("prog 'f': relo #0: patched insn #3 ...").
        self.core_log: list[str] = []
        # Per program, its poisoned slots: the failed relocation each stands for (for the verifier's log).
        self._poisoned: dict[str, dict[int, str]] = {}
        self._core_results: dict[tuple[str, int], core.Resolution] = {}
        self._variables = {d.name: self._datasec_vars(d.name) for d in self.elf.data_sections}
        self.maps: dict[str, Map] = {}
        # Maps of a type bpfjit does not implement, by name: why each is missing. Only the programs
        # that use one are refused (self.refused); the rest of the object loads.
        self.unavailable_maps: dict[str, str] = {}
        # The objects programs make with bpf_obj_new and keep in kptr fields of map values.
        self.kptr_objects = ObjectAllocator()
        self._create_btf_maps(maps or {})
        self._create_data_maps(rodata or {})
        self._initialise_data_pointers()  # .rodata is frozen before the verifier sees it, as libbpf does
        # Each program's jump tables, a map each, as libbpf's (not among obj.maps, as not in libbpf's).
        self._jump_table_maps = {table.name: create_table_map(table) for table in self.elf.jump_tables}
        self.static_keys: dict[str, StaticKey] = {name: StaticKey(name) for name in self.elf.static_keys}
        self.helpers = standard_helpers(self._on_trace, ncpus)
        for helper in object_helpers(self.kptr_objects, self.btf):
            self.helpers.add(helper)
        if any(m.kptrs is not None for m in self.maps.values()):
            self._python_map_writes()
        for helper in _user_helpers:
            self.helpers.add(helper)
        self.programs: dict[str, Program] = _Programs()
        # Programs not loaded because they use an unavailable map, by name: why.
        self.refused: dict[str, str] = self.programs.refused
        by_number = {f.number: f for f in self.elf.functions}
        chosen = self._programs_to_load(programs)
        types = self._program_types(program_types or {})
        flags_set = self._program_flags(program_flags or {})
        for linked in self.elf.programs:
            if linked.name not in chosen:
                continue
            if linked.link_error is not None:
                raise linked.link_error
            linked = self._relocate_core(linked)
            missing = self._unavailable_maps_of(linked)
            if missing:
                reason = f"{self.name}: program {linked.name} uses {missing}"
                if programs is not None:  # asked for by name: its refusal is the load's error
                    raise MapError(reason, errno.EOPNOTSUPP)
                self.refused[linked.name] = reason
                continue
            tokens = {func_token(n): start for n, start in linked.function_tokens.items() if n in linked.address_taken}
            keys = {index: self.static_keys[name] for index, name in linked.static_sites}
            env = Environment(self.helpers, self._regions(), self._resolve, tokens, callx_reaches_helpers=False,
                              array_map=self._array_layout,
                              hash_map=self._hash_layout, frozen_bytes=self._frozen_bytes, static_keys=keys,
                              returns_int=self._returns_int(linked),
                              function_pointers=self._function_pointer_facts(linked), btf=self.btf)
            section_type = program_type_for_section(linked.section.removeprefix(NOT_AUTOLOADED)).name
            ptype = types.get(linked.name) or section_type
            # libbpf adds the section's flags at load unless bpf_program__set_type gave the program
            # another type (which, from libbpf 1.2, drops the section's definition).
            flags = flags_set.get(linked.name, 0) | (section_flags(linked.section) if ptype == section_type else 0)
            try:
                program = Program(list(linked.insns), env, linked.name, ptype, verify, log_level, flags)
            except VerifierError as error:
                raise self._located(error, linked) from None
            except ProgramFlagsError as error:
                raise ProgramFlagsError(f"{self.name}: {error.reason}", error.errno, error.flags,
                                        error.program) from None
            if program.verification is not None and log_level >= 2:  # level 1 loads stay cheap
                program.verification.log = annotate_log(program.verification.log, self.source_lines(linked.name))
            program.section = linked.section
            self.programs[linked.name] = program
        self._initialise_map_values(by_number)
        self.globals = Globals(self, [d.name for d in self.elf.data_sections])

    @functools.cached_property
    def functions(self) -> dict[str, FunctionHandle]:
        """The functions a function pointer may name (those whose address the object takes), by
        name: what a function-pointer global accepts (``obj.globals["hook"] = obj.functions["f"]``)."""
        taken = set().union(*(p.address_taken for p in self.elf.programs))
        return {f.name: FunctionHandle(f.name, f.number, self) for f in self.elf.functions if f.number in taken}

    @functools.cached_property
    def _prototypes(self) -> dict[str, int]:
        return btf_module.function_prototypes(self.btf)

    def prototype_mismatch(self, function: str, pointer: str, proto_id: int) -> str | None:
        """Why the function named so may not be stored in the function pointer named pointer (of
        prototype proto_id), in the kernel's words; None if it may."""
        if function not in self._prototypes:
            return f"{function}() has no BTF prototype"
        return btf_module.prototype_mismatch(self.btf, function, self._prototypes[function], pointer, proto_id)

    def _function_pointer_facts(self, linked: elf.LinkedProgram) -> btf_module.FunctionPointerFacts:
        """What the verifier needs to type a program's function pointers in global data: the name
        of each function a pointer may name, by start slot, and the slots the data initialises."""
        names = {start: self.elf.functions[number].name for number, start in linked.function_tokens.items()
                 if number in linked.address_taken}
        return btf_module.FunctionPointerFacts(names, {self.maps[section].handle: offsets for section, offsets
                                                       in self._initialised_slots.items()})

    def _programs_to_load(self, names: Sequence[str] | None) -> set[str]:
        """The programs to check and prepare: those named, or every one not marked ``?``."""
        if names is None:
            return {p.name for p in self.elf.programs if not p.section.startswith(NOT_AUTOLOADED)}
        if isinstance(names, str):
            raise BPFError(f"{self.name}: programs= takes a list of program names, not the string {names!r}")
        known = [p.name for p in self.elf.programs]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise BPFError(f"{self.name}: no program named {', '.join(map(repr, unknown))} "
                           f"(programs: {', '.join(known) or 'none'})")
        return set(names)

    def _program_types(self, types: Mapping[str, str]) -> dict[str, str]:
        """program_types={...}: a type for programs whose section does not say it (libbpf's
        bpf_program__set_type before load)."""
        known = [p.name for p in self.elf.programs]
        for name, type_name in types.items():
            if name not in known:
                raise BPFError(f"{self.name}: program_types names no program {name!r} (programs: {', '.join(known)})")
            if type_name not in PROGRAM_TYPES:
                raise BPFError(f"{self.name}: program {name!r}: unknown program type {type_name!r} "
                               f"(known: {', '.join(PROGRAM_TYPES)})")
        return dict(types)

    def _program_flags(self, flags: Mapping[str, int]) -> dict[str, int]:
        """program_flags={...}: BPF_PROG_LOAD flags by program name (libbpf's bpf_program__set_flags
        before load); the section's own are added at load, as libbpf adds them."""
        known = [p.name for p in self.elf.programs]
        for name in flags:
            if name not in known:
                raise BPFError(f"{self.name}: program_flags names no program {name!r} (programs: {', '.join(known)})")
        try:
            return {name: flags_value(value, name) for name, value in flags.items()}
        except BPFError as error:
            raise BPFError(f"{self.name}: {error}") from None

    @functools.cached_property
    def btf_ext(self) -> btf_module.BTFExt | None:
        """.BTF.ext (function and line info), parsed on first use: dumps and the verifier's
        messages read it, a plain load does not pay for it (as libbpf, which goes on without a
        .BTF.ext it cannot parse)."""
        return btf_module.parse_btf_ext(self.elf.btf_ext, self.btf) if self.elf.btf_ext else None

    def _returns_int(self, linked: elf.LinkedProgram) -> dict[int, bool] | None:
        """Per function start of a program that has legacy packet loads, whether its BTF
        prototype returns an int or an enum (the kernel's check_btf_func); None without
        func_info. Other programs do not need it, and do not pay for parsing .BTF.ext."""
        if not any(insn.cls == isa.LD and not insn.is_lddw for insn in linked.insns):
            return None
        try:
            ext = self.btf_ext
        except BTFError:
            return None
        if ext is None or not ext.func_info:
            return None
        records = {(section, info.insn_index): info.type_id for section, infos in ext.func_info.items()
                   for info in infos}
        found = {}
        for slot, origin in enumerate(linked.origins):
            if origin in records:
                proto = self.btf.resolved(self.btf.type(records[origin]).type)
                returned = proto.return_type if isinstance(proto, btf_module.FuncProto) else 0
                found[slot] = bool(returned) and self.btf.resolved(returned).kind in _INT_KINDS
        return found

    # --- source lines of verifier messages ------------------------------------------------------
    def source_lines(self, program: str) -> SourceMap | None:
        """The C line of each slot of a program as linked (its ``.text`` subprograms after it), from
        .BTF.ext; None without line info (no .BTF.ext, or one that does not parse: libbpf then
        loads the program without line info too)."""
        linked = next((p for p in self.elf.programs if p.name == program), None)
        if linked is None:
            raise KeyError(program)
        try:
            ext = self.btf_ext
        except BTFError:
            return None
        return source_map(linked.origins, ext.line_info) if ext is not None and ext.line_info else None

    def _located(self, error: VerifierError, linked: elf.LinkedProgram) -> VerifierError:
        """The rejection with what the object knows and the verifier does not: the rejected
        instruction's text, its C source line, and the source lines woven into the log."""
        lines = self.source_lines(linked.name)
        index = error.index
        line = lines[index] if lines is not None and 0 <= index < len(lines) else None
        insn = insn_text(linked.insns[index]) if 0 <= index < len(linked.insns) else ""
        log = annotate_log(error.log, lines)
        failed = self._poisoned.get(linked.name, {}).get(index)
        if failed is not None:  # a poisoned call: say which relocation failed, as libbpf rewrites the log
            insn = INVALID_CORE_INSN
            log = _core_log_fixup(log, index, failed)
        return VerifierError(index, error.message, log, str(line) if line else error.line, error.program, insn)

    # --- CO-RE ---------------------------------------------------------------------------------
    @functools.cached_property
    def _core_relocations(self) -> dict[tuple[str, int], list[tuple[int, btf_module.CoreRelo]]]:
        """The CO-RE relocations by the instruction they patch, (section, slot), each with its
        number among its section's (libbpf's "relo #N"). Without a target, a .BTF.ext that does
        not parse is ignored, as libbpf ignores it (the code keeps clang's local answers); with
        one, it is an error: the relocations asked for cannot be applied."""
        data = self.elf.btf_ext
        if not data or not btf_module.has_core_relos(data):
            return {}
        try:
            ext = self.btf_ext
        except BTFError as exc:
            if self._core_target is None:
                return {}
            raise BTFError(f"{self.name}: CO-RE relocations cannot be applied: {exc}") from None
        numbers: dict[str, int] = {}
        found: dict[tuple[str, int], list[tuple[int, btf_module.CoreRelo]]] = {}
        for relo in ext.core_relos:
            number = numbers[relo.section] = numbers.get(relo.section, -1) + 1
            if relo.insn_off_bytes % elf.INSN_SIZE:
                raise BTFError(f"{self.name}: {relo.section}: relo #{number}: insn offset {relo.insn_off_bytes} is "
                               "not on an instruction boundary")
            found.setdefault((relo.section, relo.insn_index), []).append((number, relo))
        return found

    def _relocate_core(self, linked: elf.LinkedProgram) -> elf.LinkedProgram:
        """The program with the CO-RE relocations of its instructions (its subprograms' too)
        applied, as libbpf's bpf_core_apply_relo_insn; BTFError naming the function and the
        relocation when a record does not fit its instruction or the local types."""
        relocations = self._core_relocations
        if not relocations:
            return linked
        insns = list(linked.insns)
        for index, origin in enumerate(linked.origins):
            for number, relo in relocations.get(origin, ()):
                function = self._function_at(*origin)
                where = f"{self.name}: prog '{function}': relo #{number}"
                try:
                    result = self._core_result(number, relo)
                    done = core.patch(insns, index, result)
                except BTFError as exc:
                    raise BTFError(f"{where}: {exc}") from None
                if done.poisoned:
                    self._poisoned.setdefault(linked.name, {})[index] = \
                        f"relo #{number}: {result.local_spec}: {result.why}"
                self.core_log.append(f"prog '{function}': relo #{number}: {result.local_spec}: {done.text}")
        return dataclasses.replace(linked, insns=tuple(insns))

    def _core_result(self, number: int, relo: btf_module.CoreRelo) -> core.Resolution:
        """A relocation resolved once, however many programs include its function."""
        key = (relo.section, number)
        if key not in self._core_results:
            self._core_results[key] = core.resolve(relo, self.btf, self._core_target)
        return self._core_results[key]

    def _function_at(self, section: str, slot: int) -> str:
        return next((f.name for f in self.elf.functions if f.section == section and f.start <= slot < f.end), section)

    # --- sections as attribute namespaces: obj.bss.counter, obj.data.x, obj.rodata.y -------------
    @property
    def bss(self) -> Globals:
        return Globals(self, [".bss"])

    @property
    def data(self) -> Globals:
        return Globals(self, [".data"])

    @property
    def rodata(self) -> Globals:
        return Globals(self, [".rodata"])

    def section(self, name: str) -> Globals:
        """The variables of one data section (e.g. ``.data.custom``)."""
        if name not in self._variables:
            raise KeyError(name)
        return Globals(self, [name])

    def _on_trace(self, message: str) -> None:
        self.trace_log.append(message)
        if self._trace is not None:
            self._trace(message)

    # --- BTF fix-ups ---------------------------------------------------------------------------
    def _datasec_vars(self, section: str) -> list:
        return self.btf.datasecs().get(section, [])

    # --- maps ----------------------------------------------------------------------------------
    def _spec(self, d: btf_module.MapDef, name: str) -> MapSpec:
        inner = self._spec(d.inner, f"{name}.inner") if d.inner is not None else None
        return MapSpec(name, d.type, d.key_size, d.value_size, d.max_entries, d.map_flags,
                       d.key_type_id, d.value_type_id, inner)

    def _lock_offset(self, type_id: int) -> int | None:
        return self.btf.find_special_fields(type_id).spin_lock if type_id else None

    def _attach_kptrs(self, m: Map, type_id: int) -> None:
        """Give a map the kptr fields its value type declares (MapError if the map may not
        have them, or the BTF is wrong for them)."""
        try:
            slots, members = kptr_slots(self.btf, type_id)
        except BTFError as exc:
            raise MapError(f"map {m.name}: {exc}", errno.EINVAL) from None
        if slots:
            m.attach_kptrs(KptrFields(slots, self.kptr_objects), members)

    def _python_map_writes(self) -> None:
        """Programs of an object whose maps hold kptrs update and delete elements through the
        Python helpers, which release the objects an overwritten or deleted value holds: the
        native map helpers (jit/native_maps.py) do not know kptr fields. A helper whose
        implementation is not the standard function object is never bound natively
        (jit/native_helpers.py), so a partial of the same function is enough."""
        for helper_id in (HELPER_IDS["map_update_elem"], HELPER_IDS["map_delete_elem"]):
            helper = self.helpers.get(helper_id)
            self.helpers.add(dataclasses.replace(helper, impl=functools.partial(helper.impl)))

    def _create_btf_maps(self, options: Mapping[str, Mapping[str, int]]) -> None:
        self._map_defs = {}
        if self.elf.map_symbols:
            size = max(off + size for off, size in self.elf.map_symbols.values())
            self._map_defs = {d.name: d for d in btf_module.map_definitions(self.btf, size)}
        unknown = sorted(set(options) - set(self._map_defs))
        if unknown:
            raise BPFError(f"{self.name}: maps= names no map {', '.join(map(repr, unknown))} "
                           f"(maps: {', '.join(self._map_defs) or 'none'})")
        for name in self.elf.map_names:
            if name in self._map_defs:
                d = self._map_defs[name]
                wanted = options.get(name, {})
                spec = _with_options(self._spec(d, name), wanted, self.name)
                if spec.map_type in MapType.__members__.values() and not supported(spec.map_type):
                    self.unavailable_maps[name] = (f"map {name}: map type {map_type_name(spec.map_type)} "
                                                   f"({int(spec.map_type)}) is not supported")
                    continue
                try:
                    created = create_map(spec, self.btf, self.ncpus, self._lock_offset(spec.value_type_id),
                                         wanted.get("map_extra", d.map_extra))
                    self._attach_kptrs(created, spec.value_type_id)
                except BPFError as error:
                    if spec.max_entries:
                        raise
                    raise BPFError(f"{error} (the object leaves the size to its loader: give it with maps="
                                   f"{{'{name}': {{'max_entries': N}}}}, or --set-map {name}.max_entries=N)") from None
                self.maps[name] = created
            elif name in self.elf.map_symbols:
                raise ObjectError(f"{self.name}: map '{name}' in .maps has no BTF definition (the .maps "
                                  "DATASEC does not list it: build with clang -g)")

    def _create_data_maps(self, rodata: dict[str, Any]) -> None:
        unknown = set(rodata)
        for d in self.elf.data_sections:
            type_id = self.btf.find(d.name, btf_module.Kind.DATASEC) or 0
            flags = BPF_F_RDONLY_PROG if d.kind == "rodata" else 0
            spec = MapSpec(d.name, MapType.ARRAY, 4, len(d.image), 1, flags, 0, type_id)
            m = create_map(spec, self.btf, 1, self._lock_offset(type_id))
            if d.kind != "rodata":  # .rodata is read-only for programs: kptrs cannot be there
                self._attach_kptrs(m, type_id)
            image = bytearray(d.image)
            for var in self._variables.get(d.name, ()):
                if d.kind == "rodata" and var.name in rodata:
                    image[var.offset:var.offset + var.size] = self.btf.encode_value(var.type_id, rodata[var.name])
                    unknown.discard(var.name)
            _write_value(m, 0, bytes(image))
            self.maps[d.name] = m
        if unknown:
            raise BPFError(f"{self.name}: rodata={{...}} names {', '.join(sorted(unknown))}, which "
                           "no read-only section holds")

    def _initialise_data_pointers(self) -> None:
        """Pointer words in global data (a function in a function-pointer slot must fit its
        prototype, as every later write must); then freeze .rodata, so that the verifier may take
        its loads as constants and refuse stores into it."""
        # Section -> offsets of its function-pointer slots that start out naming a function.
        self._initialised_slots: dict[str, frozenset[int]] = {}
        # Section -> its function-pointer slots by offset.
        self._function_slots: dict[str, dict[int, btf_module.FunctionPointer]] = {}
        for d in self.elf.data_sections:
            m = self.maps[d.name]
            slots = {slot.offset: slot for slot in btf_module.function_pointers(self.btf, m.value_type_id)} \
                if m.value_type_id else {}
            self._function_slots[d.name] = slots
            if m.value_type_id:  # the map view types the value as obj.globals does
                m.value_codec = _SectionValues(self, m)
            for offset, target in d.pointers:
                if target[0] == "func" and offset in slots:
                    name, slot = self.elf.functions[target[1]].name, slots[offset]
                    why = self.prototype_mismatch(name, slot.name, slot.proto_id)
                    if why is not None:
                        raise ObjectError(f"{self.name}: {d.name}: {slot.name} = {name}: {why}")
                _write_value(m, offset, self._pointer_value(target).to_bytes(8, "little"))
            self._initialised_slots[d.name] = frozenset(offset for offset, target in d.pointers
                                                        if target[0] == "func" and offset in slots)
        for d in self.elf.data_sections:
            if d.kind == "rodata":
                self.maps[d.name].freeze()

    def _initialise_map_values(self, by_number: dict[int, elf.Function]) -> None:
        """Prog-array and map-in-map initialisers (they name the programs just loaded)."""
        for offset, target in self.elf.map_relocations:
            outer = next((d for d in self._map_defs.values() if d.offset <= offset < d.offset + d.size), None)
            if outer is None:
                raise ObjectError(f"{self.name}: .rel.maps entry at {offset:#x} lies in no map")
            for name in (outer.name, target[1] if target[0] == "map" else None):
                if name in self.unavailable_maps:
                    raise ObjectError(f"{self.name}: .rel.maps entry at {offset:#x} needs "
                                      f"{self.unavailable_maps[name]}")
            slot, misaligned = divmod(offset - outer.offset - self.btf.size(outer.def_type_id), 8)
            kind = self.maps[outer.name].map_type
            wants = "func" if kind == MapType.PROG_ARRAY else (
                "map" if kind in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS) else None)
            if slot < 0 or misaligned or target[0] != wants:
                what = "program" if target[0] == "func" else "map"
                raise ObjectError(f"{self.name}: .rel.maps entry at {offset:#x} is not a {what} slot of "
                                  f"{outer.name} ({map_type_name(kind)})")
            if target[0] == "func":
                program = self.programs.get(by_number[target[1]].name)
                if program is not None:  # a program not loaded leaves its slot empty
                    self.maps[outer.name].set_program(slot, program)
            else:
                self.maps[outer.name].update_elem(slot, self.maps[target[1]])

    def _unavailable_maps_of(self, linked: elf.LinkedProgram) -> str:
        """What an ld_imm64 of the program names among the unavailable maps ("" if nothing)."""
        used = {self.elf.map_names[insn.imm] for insn in linked.insns
                if insn.is_lddw and insn.src in (isa.PSEUDO_MAP_IDX, isa.PSEUDO_MAP_IDX_VALUE)
                and 0 <= insn.imm < len(self.elf.map_names)}
        return ", ".join(self.unavailable_maps[name] for name in sorted(used) if name in self.unavailable_maps)

    def _pointer_value(self, target: tuple) -> int:
        if target[0] == "func":
            return func_token(target[1])
        if target[0] == "map":
            if target[1] in self.unavailable_maps:
                raise ObjectError(f"{self.name}: global data points at {self.unavailable_maps[target[1]]}")
            return self.maps[target[1]].handle
        _, section, addend = target
        return self.maps[section].value_address(0) + addend

    # --- what programs run against --------------------------------------------------------------
    def _regions(self) -> list[Region]:
        return [region for m in (*self.maps.values(), *self._jump_table_maps.values()) for region in m.regions()] \
            + [self.kptr_objects.region]

    def _resolve(self, insn, index: int) -> int:
        name = self.elf.map_names[insn.imm]
        m = self.maps.get(name) or self._jump_table_maps[name]
        if insn.src == isa.PSEUDO_MAP_IDX:  # the map itself
            return m.handle
        return m.value_address(0) + insn.next_imm  # PSEUDO_MAP_IDX_VALUE: into the value

    @staticmethod
    def _array_layout(handle: int) -> ArrayLayout | None:
        m = map_from_handle(handle)
        if m is None or m.map_type != MapType.ARRAY:
            return None
        return ArrayLayout(m.value_base, m.elem_stride, m.max_entries)

    @staticmethod
    def _hash_layout(handle: int) -> HashLayout | None:
        """Plain hash maps only: LRU lookups must also touch the element, per-cpu ones pick the
        cpu's value, and hash-of-maps lookups return the inner map."""
        m = map_from_handle(handle)
        if m is None or m.map_type != MapType.HASH:
            return None
        return HashLayout(m.chains.heads_address, m.chains.links_address, m.chains.nbuckets, m.key_base,
                          m.key_stride, m.key_size, m.value_base, m.elem_stride)

    def rodata_images(self) -> dict[str, bytes]:
        """The bytes of every read-only global-data section as loaded (after ``rodata=``): the
        initial values to give another loader, such as the kernel engine."""
        return {d.name: _value_bytes(self.maps[d.name]) for d in self.elf.data_sections if d.kind == "rodata"}

    def _frozen_bytes(self, address: int, size: int) -> bytes | None:
        for m in self.maps.values():
            if m.read_only_for_program and m.map_type == MapType.ARRAY and m.max_entries == 1:
                base = m.value_address(0)
                if base <= address and address + size <= base + m.value_size:
                    return _value_bytes(m)[address - base:address - base + size]
        return None


# What the verifier's log shows for a poisoned instruction, in libbpf's fix-up of the log.
INVALID_CORE_INSN = "<invalid CO-RE relocation>"


def _core_log_fixup(log: str, index: int, failed: str) -> str:
    """The verifier's log with a poisoned call's lines replaced, as libbpf's
    fixup_log_failed_core_relo does: the call becomes ``<invalid CO-RE relocation>`` and the
    error names the relocation that failed."""
    call = f"{index}: {insn_text(core.poisoned())}"
    error = f"invalid func unknown#{core.POISON_HELPER}"
    fixed = log.replace(call, f"{index}: {INVALID_CORE_INSN}").replace(
        error, f"failed to resolve CO-RE relocation {failed}")
    return fixed if fixed != log else f"{log.rstrip()}\nfailed to resolve CO-RE relocation {failed}\n".lstrip()


def _core_target(btf: "str | os.PathLike | btf_module.BTF | None") -> core.Target | None:
    """load(btf=...) as the CO-RE target: None (the object's own types), a parsed BTF, or a file."""
    if btf is None:
        return None
    if isinstance(btf, btf_module.BTF):
        return core.Target(btf)
    if not isinstance(btf, (str, os.PathLike)):
        raise BPFError(f"btf= takes a path to a BTF or ELF file, or a BTF, not {btf!r}")
    return core.target_file(btf)


_INT_KINDS = (btf_module.Kind.INT, btf_module.Kind.ENUM, btf_module.Kind.ENUM64)


class RefusedProgram(ObjectError, KeyError):
    """``obj.programs[name]`` of a program the load refused (it uses a map of a type bpfjit does not
    implement): a KeyError, as for any program not loaded, that says why."""

    def __str__(self) -> str:
        return str(self.args[0])


class _Programs(dict):
    """The loaded programs by name; looking up a refused one raises RefusedProgram with the reason."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: dict[str, str] = {}

    def __missing__(self, name: str) -> Program:
        if name in self.refused:
            raise RefusedProgram(f"{self.refused[name]}: the program was not loaded")
        raise KeyError(name)

# What a loader may set on a map before load, as libbpf's bpf_map__set_<attribute> between open and
# load. A key or value size unlike its BTF type's drops that type (libbpf creates such a map
# without it): the map's keys or values are then bytes. numa_node is taken and changes nothing
# (one NUMA node here).
MAP_OPTIONS = ("max_entries", "map_flags", "key_size", "value_size", "map_extra", "numa_node")
_U64_OPTIONS = ("map_extra",)


def _with_options(spec: MapSpec, options: Mapping[str, int], where: str) -> MapSpec:
    """The map's creation attributes with the loader's (map_extra and numa_node are not a spec's:
    the caller takes them from options)."""
    unknown = sorted(set(options) - set(MAP_OPTIONS))
    if unknown:
        raise BPFError(f"{where}: map {spec.name!r}: {', '.join(unknown)} cannot be set before load "
                       f"(settable: {', '.join(MAP_OPTIONS)})")
    for attribute, value in options.items():
        bits = 64 if attribute in _U64_OPTIONS else 32
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
            raise BPFError(f"{where}: map {spec.name!r}: {attribute} must be an unsigned {bits}-bit int, "
                           f"got {value!r}")
    sized = {name: options[name] for name in ("max_entries", "map_flags", "key_size", "value_size")
             if name in options}
    if sized.get("key_size", spec.key_size) != spec.key_size:
        sized["key_type_id"] = 0
    if sized.get("value_size", spec.value_size) != spec.value_size:
        sized["value_type_id"] = 0
    return dataclasses.replace(spec, **sized)


def program_names(path: str | os.PathLike) -> list[str]:
    """The names of an object's programs, in section order, without loading anything (those of
    ``?`` sections included: they load when named)."""
    return [p.name for p in elf.read_object(os.fspath(path)).programs]


def load(path: str | os.PathLike, rodata: dict[str, Any] | None = None, ncpus: int = 1,
         trace: Callable[[str], None] | None = None, programs: Sequence[str] | None = None,
         verify: bool = True, log_level: int = 1, maps: Mapping[str, Mapping[str, int]] | None = None,
         program_types: Mapping[str, str] | None = None,
         btf: "str | os.PathLike | btf_module.BTF | None" = None,
         program_flags: Mapping[str, int] | None = None) -> Object:
    """Load a BPF ELF object: create its maps and global data, link and check its programs.

    rodata: values for ``const volatile`` globals, set before .rodata is frozen.
    ncpus: slots of per-CPU maps (one per worker thread). trace: receives bpf_printk lines
    (they are also kept in ``obj.trace_log``).
    programs: the names of the programs to load (libbpf's autoload); ``obj.programs`` then holds
    only these. By default every program but those in ``?``-prefixed sections.
    verify: prove each program safe with the kernel verifier's rules first (the default; a
    rejection raises VerifierError with the kernel's message, the instruction, its C source line
    when the object has line info, and the log, where source lines show as the kernel's
    ``; <text> @ <file>:<line>``). ``verify=False`` runs the programs unverified, sandboxed: every
    memory access and helper pointer is checked at run time (jit/lower.py).
    log_level: 1 or 2, as the kernel's.
    maps: creation attributes to set before the maps are created, by map name, as libbpf's
    ``bpf_map__set_<attribute>`` do between open and load (``MAP_OPTIONS``: max_entries,
    map_flags, key_size, value_size, map_extra, numa_node):
    ``maps={"backends": {"max_entries": 4096}}`` (a map declared with ``max_entries`` 0 needs it).
    program_types: a program type by program name, for sections libbpf cannot type
    (``bpf_program__set_type``): ``program_types={"prog": "xdp"}``.
    program_flags: BPF_PROG_LOAD's prog_flags by program name (``bpf_program__set_flags``):
    ``program_flags={"prog": bpfjit.program_flags.BPF_F_XDP_HAS_FRAGS}``. As libbpf, the load adds the
    flags of the program's section (``SEC("xdp.frags")``: BPF_F_XDP_HAS_FRAGS; ``syscall``,
    ``uprobe.s``, ``uretprobe.s``: BPF_F_SLEEPABLE) unless program_types gives it another type;
    ``prog.flags`` is what the kernel would be given. Flags the kernel refuses raise
    ProgramFlagsError with EINVAL; those it takes but bpfjit does not honour, with EOPNOTSUPP
    (bpfjit.program_flags.check_program_flags has the table).
    btf: the types CO-RE relocations are resolved against (libbpf's ``btf_custom_path``): a raw BTF
    file (``"/sys/kernel/btf/vmlinux"``), an ELF file with a ``.BTF`` section (another object), or
    a parsed BTF; by default the object's own types, so every relocation keeps clang's local
    answer. A relocation the target cannot satisfy poisons its instruction, as libbpf does: the
    program is refused (``invalid func unknown#195896080``, the log naming the relocation) only
    if a path reaches it.
    """
    return Object(path, rodata, ncpus, trace, programs, verify, log_level, maps, program_types, btf, program_flags)
