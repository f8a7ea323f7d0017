"""Lowering of the legacy packet loads (BPF_LD_ABS / BPF_LD_IND), as the interpreter runs them.

The semantics are the kernel's rewrite of these instructions (runtime/packet_loads.py): the skb
pointers come from the native context in r6, the offset is a signed 32-bit int, a load inside
``[data, data_end)`` is byte-swapped from network order, any other offset returns 0 from the
current function, except the header offsets (``SKF_LL_OFF`` up to 0), which stop the run with
BAD_READ as the interpreter does. r1-r5 keep their values (the verifier makes them unreadable).

The pointer loads go through the lowering's ``access``, so an unverified program's r6 and packet
read are checked against the run's regions like any other access.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from bpfjit import isa
from bpfjit.isa import Insn
from bpfjit.runtime.packet_loads import SKB_DATA, SKB_DATA_END, SKF_LL_OFF
from bpfjit.runtime.status import FIELD_ACCESS_SIZE, Status

if TYPE_CHECKING:
    from .lower import _FunctionLowering


def lower_legacy_load(f: "_FunctionLowering", insn: Insn, index: int) -> None:
    size = isa.SIZE_BYTES[insn.size]
    bits = 8 * size
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
    found, missed, header, failed = (f.unique(name) for name in ("ld_ok", "ld_miss", "ld_header", "ld_fail"))
    f.emit(f"br i1 {inside}, label %{found}, label %{missed}")
    f.lines.append(f"{missed}:")
    names_header = f.value(f"and i1 {f.value(f'icmp slt i64 {offset}, 0')}, "
                           f"{f.value(f'icmp sge i64 {offset}, {SKF_LL_OFF}')}")
    f.emit(f"br i1 {names_header}, label %{header}, label %{failed}")
    f.lines.append(f"{header}:")
    f.emit(f"store i64 {size}, ptr {f.env_field(FIELD_ACCESS_SIZE)}")
    f.fail(Status.BAD_READ, index, f.value(f"add i64 {data}, {offset}"))
    f.lines.append(f"{failed}:")
    f.leave("0")  # the kernel's hidden exit: return 0 from this function
    f.lines.append(f"{found}:")
    f.terminated = False
    address = f.value(f"add i64 {data}, {offset}")
    if f.sandboxed_memory:
        ok = f.value(f"call i1 @bpfjit_access_ok(ptr %env, i64 {address}, i64 {size}, i1 0)")
        f.guard(ok, address, size, False, index)
    ty = f"i{bits}"
    loaded = f.value(f"load {ty}, ptr {f.value(f'inttoptr i64 {address} to ptr')}, align 1")
    if bits > 8:
        loaded = f.value(f"call {ty} @llvm.bswap.{ty}({ty} {loaded})")
    f.set_reg(0, f.value(f"zext {ty} {loaded} to i64"))
