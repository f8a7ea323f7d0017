"""The verifier's entry point: a program and what it runs against in, a verdict out.

This module turns the runtime's view of a program (its environment: helpers and their
prototypes, the maps its ld_imm64 instructions name; its program type: the context layout) into
the verifier's view (:class:`~.check.ProgramSpec`, map descriptions), then runs the exploration.
"""
from __future__ import annotations

import gc
import time
from dataclasses import replace
from typing import Sequence

from bpfjit import isa
from bpfjit.errors import BPFError, VerifierError
from bpfjit.isa import Insn
from bpfjit.runtime import maps as runtime_maps
from bpfjit.runtime.context import PACKET, PACKET_END, PACKET_META, SOCK_COMMON_OR_NULL, ContextLayout, ProgramType
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.btf import Kind
from bpfjit.runtime.jump_tables import program_tables

from . import calls, legacy_packet
from .check import TOO_LARGE, ProgramSpec, Verdict, Verifier
from .facts import Facts
from .log import Rejected
from .scalar import Scalar
from .state import MapInfo, Reg, RegType, scalar
from .termination import Unproven

# The register a load of a pointer field of the context gives (the field's kind in runtime.context).
_POINTER_FIELDS = {PACKET: Reg(RegType.PTR_TO_PACKET, Scalar.const(0)),
                   PACKET_END: Reg(RegType.PTR_TO_PACKET_END, Scalar.const(0)),
                   PACKET_META: Reg(RegType.PTR_TO_PACKET_META, Scalar.const(0)),
                   SOCK_COMMON_OR_NULL: Reg(RegType.PTR_TO_SOCK_COMMON, Scalar.const(0), maybe_null=True)}
# Program types whose packet the program may not write (the kernel's may_access_direct_pkt_data).
_READ_ONLY_PACKET = {"socket"}


def verify(insns: Sequence[Insn], facts: Facts, env: Environment, prog_type: ProgramType,
           log_level: int = 1) -> Verdict:
    """Prove the program safe, or raise VerifierError with the kernel's message and the log.

    log_level 1 writes the log of a rejection only (the path to the error); 2 the log of every
    instruction's state, accepted or not. The cycle collector waits until the end: the walk
    makes and drops states by the thousand, which would set it off to scan the whole heap again
    and again (4-7% of a verification here, more in a process holding much else)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _verify(insns, facts, env, prog_type, log_level)
    finally:
        if collecting:
            gc.enable()


def _verify(insns: Sequence[Insn], facts: Facts, env: Environment, prog_type: ProgramType,
            log_level: int) -> Verdict:
    started = time.perf_counter()
    raw = prog_type.layout is None
    tokens = tuple(env.callx_targets(facts.function_starts)) if env.function_tokens is not None else ()
    spec = ProgramSpec(None if raw else _ctx_fields(prog_type.layout),
                       packet_writable=prog_type.name not in _READ_ONLY_PACKET, widen_loops=raw,
                       callx_targets=tokens, kernel_type=prog_type.kernel_type, btf=env.btf)
    legacy_packet.check_subprograms(insns, facts, env.returns_int)
    targets = _PseudoTargets(env)
    if log_level != 1:
        return Verifier(insns, facts, spec, env.helpers, targets, log_level).run()
    if not raw:
        # First with loops widened (verifier/widen.py) and shown to end (verifier/termination.py):
        # a loop is then checked once instead of trip by trip. A widened state holds every state
        # the kernel's walk would reach, so what this accepts the walk accepts too (but for its
        # size limits); what it cannot show is decided by the walk, with the kernel's messages.
        fast = replace(spec, widen_loops=True, prove_termination=True)
        try:
            return Verifier(insns, facts, fast, env.helpers, targets, 0).run()
        except (VerifierError, Unproven):
            pass
    # As libbpf does: verify without a log (a log of every instruction costs as much as the
    # checks), and only for a rejection verify again to write the path that led to it; but for
    # one at the instruction limit, whose path is a million instructions long and took this
    # process most of a minute to walk: its log is the message alone.
    try:
        verdict = Verifier(insns, facts, spec, env.helpers, targets, 0).run()
    except VerifierError as rejection:
        if rejection.message.startswith(TOO_LARGE):
            rejection.log = rejection.message
            raise
        verdict = Verifier(insns, facts, spec, env.helpers, targets, log_level).run()
    verdict.stats.seconds = time.perf_counter() - started  # the attempts before count too
    return verdict


def inputs(insns: Sequence[Insn], env: Environment, prog_type: ProgramType) -> str:
    """Everything a verdict depends on besides the verifier's own code, as text: the program,
    its type, the helpers it may call with their prototypes, what each pseudo ld_imm64 names
    (maps as the verifier sees them, frozen values included) and the functions callx may reach.
    Equal inputs give equal verdicts, so a verdict may be cached under a hash of this."""
    parts = [prog_type.name, isa.encode(insns).hex()]
    parts += [f"helper {h.id} {h.proto.ret} {','.join(h.proto.args)} {h.proto.struct}"
              for h in sorted(env.helpers, key=lambda h: h.id)]
    targets = _PseudoTargets(env)
    for index, insn in enumerate(insns):
        if insn.is_lddw and insn.src and not isa.is_filler(insns, index):
            try:
                target = targets(insn, index)
            except (Rejected, BPFError) as exc:
                target = ("error", str(exc))
            parts.append(f"{index} {_target_text(target)}")
    if env.function_tokens is not None:
        parts.append(f"callx {sorted(env.function_tokens.values())} {env.callx_reaches_helpers}")
    if env.returns_int is not None:
        parts.append(f"returns_int {sorted(env.returns_int.items())}")
    if env.btf is not None:  # bpf_obj_new's types are the program's structs
        parts.append(f"btf {_struct_sizes(env.btf)}")
    tables = program_tables(insns, env.ld_imm64_value)
    if tables:
        parts.append(f"jump tables {tables}")
    return "\n".join(parts)


def _struct_sizes(btf) -> list[tuple[int, str, int]]:
    """(type id, name, size) of every struct of a BTF: what the verifier reads of it."""
    return [(type_id, t.name, t.size) for type_id, t in enumerate(btf.types) if t is not None and t.kind == Kind.STRUCT]


def _target_text(target: tuple) -> str:
    def info_text(info: MapInfo | None) -> str:
        if info is None:
            return "-"
        frozen = info.frozen_read(0, info.value_size) if info.frozen_read is not None else None
        return (f"{info.map_type}/{info.key_size}/{info.value_size}/{info.max_entries}/{info.read_only}/"
                f"{info.write_only}/"
                f"{info.lock_offset}/{frozen.hex() if frozen is not None else '-'}/{info_text(info.inner)}/"
                f"{info.func_slots}/{info.kptrs}")
    kind, *rest = target
    if kind in ("map", "map_value"):
        return f"{kind} {info_text(rest[0])} {rest[1:]}"
    return f"{kind} {rest}"


def _ctx_fields(layout: ContextLayout):
    def field(off: int, size: int, write: bool) -> Reg | None:
        found = layout.field_at(off, size, write)
        if found is None:
            return None
        if found.pointer:
            return _POINTER_FIELDS[found.pointer]
        return scalar(Scalar.from_load(size, False))
    return field


class _PseudoTargets:
    """What each pseudo ld_imm64 names: a map, a place in a map's value, a function."""

    def __init__(self, env: Environment):
        self.env = env
        self.infos: dict[int, MapInfo] = {}
        self.targets: dict[int, tuple] = {}  # by slot: every path (and the log) asks again

    def __call__(self, insn: Insn, index: int) -> tuple:
        if index not in self.targets:
            self.targets[index] = self._resolve(insn, index)
        return self.targets[index]

    def _resolve(self, insn: Insn, index: int) -> tuple:
        value = self.env.ld_imm64_value(insn, index)
        if insn.src == isa.PSEUDO_FUNC:
            return ("func", index + 1 + insn.imm)
        if insn.src in (isa.PSEUDO_MAP_FD, isa.PSEUDO_MAP_IDX):
            found = runtime_maps.map_from_handle(value)
            if found is None:
                raise Rejected(f"fd {insn.imm} is not pointing to valid bpf_map")
            return ("map", self.info(found))
        if insn.src in (isa.PSEUDO_MAP_VALUE, isa.PSEUDO_MAP_IDX_VALUE):
            # The instruction's second imm is the offset into the value: the map is the one whose
            # value starts that far before the address (an address past a value's end may be
            # where another map's value starts). The kernel takes the offset as a u32 below the
            # value size.
            offset = insn.next_imm & isa.MASK32
            for candidate in runtime_maps.live_maps():
                if _value_base(candidate) == value - insn.next_imm:
                    if offset >= candidate.value_size:
                        raise Rejected(f"invalid access to map value pointer, value_size={candidate.value_size} "
                                       f"off={offset}")
                    return ("map_value", self.info(candidate), offset)
            raise Rejected(f"invalid access to map value pointer, value_size=0 off={offset}")
        raise Rejected(f"unsupported pseudo source {insn.src} of ld_imm64")

    def info(self, found: "runtime_maps.Map") -> MapInfo:
        if found.handle not in self.infos:
            self.infos[found.handle] = _describe(found, self.env)
        return self.infos[found.handle]


def _value_base(candidate: "runtime_maps.Map") -> int | None:
    """Where the one value of a single-element array map (global data, a jump table) starts."""
    if candidate.map_type not in (runtime_maps.MapType.ARRAY, runtime_maps.MapType.INSN_ARRAY) \
            or candidate.max_entries != 1:
        return None
    return candidate.value_address(0)


def _describe(found: "runtime_maps.Map", env: Environment) -> MapInfo:
    inner = found.spec.inner
    inner_info = None
    if inner is not None:
        inner_info = MapInfo(inner.name, int(inner.map_type), inner.key_size, inner.value_size, inner.max_entries,
                             False)
    frozen_read = None
    if found.read_only_for_program and _value_base(found) is not None:
        base = _value_base(found)
        frozen_read = lambda off, size: env.frozen_bytes(base + off, size)  # noqa: E731
    return MapInfo(found.name, found.map_type, found.key_size, found.value_size, found.max_entries,
                   bool(found.map_flags & runtime_maps.BPF_F_RDONLY_PROG), found.lock_offset, inner_info, frozen_read,
                   found.handle, bool(found.map_flags & runtime_maps.BPF_F_WRONLY_PROG),
                   calls.function_slots(found, env.function_pointers),
                   found.kptrs.slots if found.kptrs is not None else ())
