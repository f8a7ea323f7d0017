"""Lowering of the legacy packet loads (BPF_LD_ABS / BPF_LD_IND), as the interpreter runs them.

The semantics are the kernel's rewrite of these instructions (runtime/packet_loads.py): the skb
pointers come from the native context in r6, the offset is a signed 32-bit int, a load inside
``[data, data_end)`` is byte-swapped from network order, a header offset (``SKF_LL_OFF`` up to 0)
reads the header the context's runtime words place (inside ``[head, data_end)``), and any other
offset returns 0 from the current function. r1-r5 keep their values (the verifier makes them
unreadable).

The pointer loads go through the lowering's ``access``, so an unverified program's r6 and packet
read are checked against the run's regions like any other access; its header offsets stop the
run with BAD_READ, as the interpreter's do: its r6 need not be the context whose words it would
read.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from bpfjit import isa
from bpfjit.isa import Insn
from bpfjit.runtime.context import CTX_SKB_HEAD, CTX_SKB_MAC, CTX_SKB_NETWORK
from bpfjit.runtime.packet_loads import SKB_DATA, SKB_DATA_END, SKF_LL_OFF, SKF_NET_OFF
from bpfjit.runtime.status import FIELD_ACCESS_SIZE, Status

if TYPE_CHECKING:
    from .lower import _FunctionLowering


def lower_legacy_load(f: "_FunctionLowering", insn: Insn, index: int) -> None:
    size = isa.SIZE_BYTES[insn.size]
    data = f.value(f"load i64, ptr {f.access(6, SKB_DATA, 8, False, index)}, align 1")
    end = f.value(f"load i64, ptr {f.access(6, SKB_DATA_END, 8, False, index)}, align 1")
    if insn.mode == isa.ABS:
        offset = str(isa.s32(insn.imm))
    else:
        total = f.value(f"add i64 {f.reg(insn.src)}, {isa.s32(insn.imm)}")
        offset = f.value(f"sext i32 {f.value(f'trunc i64 {total} to i32')} to i64")
    # 0 <= offset <= headlen - size, in signed 64-bit arithmetic as the interpreter compares.
    last = f.value(f"sub i64 {f.value(f'sub i64 {end}, {data}')}, {size}")
    inside = f.value(f"and i1 {f.value(f'icmp sge i64 {offset}, 0')}, {f.value(f'icmp sle i64 {offset}, {last}')}")
    found, missed, header, failed, done = (f.unique(name) for name in
                                           ("ld_ok", "ld_miss", "ld_header", "ld_fail", "ld_done"))
    f.emit(f"br i1 {inside}, label %{found}, label %{missed}")
    f.lines.append(f"{missed}:")
    names_header = f.value(f"and i1 {f.value(f'icmp slt i64 {offset}, 0')}, "
                           f"{f.value(f'icmp sge i64 {offset}, {SKF_LL_OFF}')}")
    f.emit(f"br i1 {names_header}, label %{header}, label %{failed}")
    f.lines.append(f"{header}:")
    if f.sandboxed_memory:
        f.emit(f"store i64 {size}, ptr {f.env_field(FIELD_ACCESS_SIZE)}")
        f.fail(Status.BAD_READ, index, f.value(f"add i64 {data}, {offset}"))
    else:
        placed_ok = f.unique("ld_header_ok")
        placed, within = header_bytes(f, f.reg(6), data, end, offset, size)
        f.emit(f"br i1 {within}, label %{placed_ok}, label %{failed}")
        f.lines.append(f"{placed_ok}:")
        f.set_reg(0, network_order(f, f.value(f"inttoptr i64 {placed} to ptr"), size))
        f.branch(done)
    f.lines.append(f"{failed}:")
    f.leave("0")  # the kernel's hidden exit: return 0 from this function
    f.lines.append(f"{found}:")
    f.terminated = False
    address = f.value(f"add i64 {data}, {offset}")
    if f.sandboxed_memory:
        ok = f.value(f"call i1 @bpfjit_access_ok(ptr %env, i64 {address}, i64 {size}, i1 0)")
        f.guard(ok, address, size, False, index)
    f.set_reg(0, network_order(f, f.value(f"inttoptr i64 {address} to ptr"), size))
    f.label(done)


def header_bytes(f, context: str, data: str, end: str, offset: str, size: int) -> tuple[str, str]:
    """Where a header offset's bytes are (the mac or network header of the context, a verified
    program's r6, plus how far into it the offset goes), and whether they lie inside [head,
    data_end). Only f.value is used: the native interpreter (jit/native_interp_ir.py) emits the
    same instructions through its own builder."""
    in_network = f.value(f"icmp sge i64 {offset}, {SKF_NET_OFF}")
    word = f.value(f"select i1 {in_network}, i64 {CTX_SKB_NETWORK}, i64 {CTX_SKB_MAC}")
    into = f.value(f"sub i64 {offset}, {f.value(f'select i1 {in_network}, i64 {SKF_NET_OFF}, i64 {SKF_LL_OFF}')}")
    start, head = (f.value(f"load i64, ptr {f.value(f'inttoptr i64 {address} to ptr')}")
                   for address in (f.value(f"add i64 {context}, {at}") for at in (word, CTX_SKB_HEAD)))
    placed = f.value(f"add i64 {f.value(f'add i64 {data}, {start}')}, {into}")
    placed_end = f.value(f"add i64 {placed}, {size}")
    within = f.value(f"and i1 {f.value(f'icmp uge i64 {placed}, {head}')}, "
                     f"{f.value(f'icmp ule i64 {placed_end}, {end}')}")
    return placed, within


def network_order(f, pointer: str, size: int) -> str:
    """The size bytes at pointer read in network order, as an i64. Only f.value is used, as in
    header_bytes: the native interpreter loads through it too."""
    ty = f"i{8 * size}"
    loaded = f.value(f"load {ty}, ptr {pointer}, align 1")
    if size > 1:
        loaded = f.value(f"call {ty} @llvm.bswap.{ty}({ty} {loaded})")
    return f.value(f"zext {ty} {loaded} to i64")
