"""Legacy packet loads (BPF_LD_ABS / BPF_LD_IND) at run time: what every engine computes.

``r0 = ntohN(*(uN *)(skb->data + off))`` with ``off = imm`` (ABS) or ``src + imm`` (IND). The
kernel never runs these instructions as such: the verifier rewrites each one into a call of
``bpf_skb_load_helper_{8,16,32}_no_cache(skb, off)`` (``bpf_gen_ld_abs``) followed by a hidden
``if r0 < 0: return 0``. The engines follow that rewrite, so its details hold here too:

* the offset is computed in 64 bits and handed over as a C ``int``: its low 32 bits, signed;
* a non-negative offset reads the linear data, ``[skb->data, skb->data + headlen)``, which is the
  packet the program sees (``data``/``data_end`` of the native context);
* negative offsets from ``SKF_LL_OFF`` up name the link-layer and network headers
  (``SKF_LL_OFF + k``: k bytes into the mac header, ``SKF_NET_OFF + k``: into the network header;
  ``bpf_internal_load_pointer_neg_helper``): a verified program reads them where the skb's
  runtime words (runtime/context.py ``CTX_SKB_MAC``, ``CTX_SKB_NETWORK``) put those headers, if
  the bytes lie inside ``[head, data_end)``, and else the load fails. An unverified program's r6
  may be anything, not the context whose words say where its headers are: its header loads stop
  the run as an invalid read. Below ``SKF_LL_OFF`` the kernel's load fails;
* a failed load returns 0 from the *current* function (the hidden exit), not from the program:
  in a subprogram the caller goes on with r0 = 0 (the 6.12.y verifier explores that return).
"""
from __future__ import annotations

from bpfjit import isa
from bpfjit.isa import Insn

from .context import CTX_SKB_MAC, CTX_SKB_NETWORK, SK_BUFF

# Where the native __sk_buff keeps the packet pointers (every skb program type has the same slots).
SKB_DATA = SK_BUFF.field("data").native_offset
SKB_DATA_END = SK_BUFF.field("data_end").native_offset
# The offsets that name the headers (include/uapi/linux/filter.h): the mac header from SKF_LL_OFF,
# the network header from SKF_NET_OFF, up to 0.
SKF_LL_OFF = -0x200000
SKF_NET_OFF = -0x100000


def is_legacy_load(insn: Insn) -> bool:
    """Whether insn is BPF_LD_ABS or BPF_LD_IND (the decoder admits only W/H/B sizes of them)."""
    return insn.cls == isa.LD and insn.mode in (isa.ABS, isa.IND)


def offset_of(insn: Insn, src_value: int) -> int:
    """The offset the kernel's load helper receives: imm, or src + imm, as a signed 32-bit int."""
    total = insn.imm if insn.mode == isa.ABS else src_value + insn.imm
    return isa.sign_extend(total & isa.MASK32, 32)


def names_header(offset: int) -> bool:
    """Whether a negative offset names the link-layer or network header."""
    return SKF_LL_OFF <= offset < 0


def header_place(offset: int) -> tuple[int, int]:
    """For an offset that names a header: the skb runtime word that holds where the header
    starts (a signed offset from data), and how many bytes into the header the load starts."""
    if offset >= SKF_NET_OFF:
        return CTX_SKB_NETWORK, offset - SKF_NET_OFF
    return CTX_SKB_MAC, offset - SKF_LL_OFF
