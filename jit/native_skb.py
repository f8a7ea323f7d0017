"""LLVM IR of the native skb helpers that resize the packet, read its headers or keep its tunnel:
``bpf_skb_adjust_room``, ``bpf_skb_change_head``, ``bpf_skb_change_tail``, ``bpf_skb_vlan_push``,
``bpf_skb_vlan_pop``, ``bpf_skb_load_bytes_relative`` and ``bpf_skb_set_tunnel_key`` /
``bpf_skb_get_tunnel_key``.

runtime/skb_helpers.py stays the reference (the interpreter calls it), and these take its path
exactly when it succeeds: every check it makes is made here first, before anything changes, and
a call that any check refuses goes to the Python helper whole, which makes the same checks again
and returns the kernel's error. So the two cannot differ on a refusal, and a refusal (a program's
bug, not its per-packet path) costs what it did. The same goes for a packet that needs more room
than its storage has: only Python allocates a bigger one (SkbBuffer._make_room).

The sk_buff's state is in the native context's runtime words (runtime/context.py ``CTX_SKB_*``:
the storage's bounds, the mac and network headers as signed offsets from data, the
encapsulation, the tunnel key in SKB_TUNNEL_INFO's layout), which runtime/run_memory.py
``SkbBuffer`` reads and writes too. A move ends as
``SkbBuffer.moved`` ends one: data_meta = data, ``len`` follows, and so does the packet's entry
in the run's region table. skb->protocol and the VLAN fields are the native __sk_buff's u32
fields, holding what the program reads (a __be16 protocol as its bytes in memory), so the
EtherTypes are compared in that form.

The functions live in the helper module of jit/native_maps.py and use the small functions of
jit/native_packet.py (``ctx_u64``, ``set_ctx_u64``, ``publish``, ``s32``, ``skb_len``).
"""
from __future__ import annotations

from bpfjit.isa import MASK32, MASK64, s64
from bpfjit.runtime import skb_helpers as skb
from bpfjit.runtime.context import (CTX_KIND_SKB, CTX_SKB_ENCAP, CTX_SKB_END, CTX_SKB_HEAD, CTX_SKB_HEADROOM,
                                    CTX_SKB_MAC, CTX_SKB_NETWORK, CTX_SKB_TRANSPORT, CTX_SKB_TUNNEL, ETH_HLEN, SK_BUFF,
                                    SKB_TRANSPORT_UNSET, SKB_TUNNEL_INFO)
from bpfjit.runtime.kernel_helpers import HELPER_IDS
from bpfjit.runtime.run_memory import NET_SKB_PAD, SKB_MAX_LEN

from .native_maps import PYTHON_PREFIX, twins
from .native_packet import field_offsets, packet_helper

#: The Python helpers these hand every call they would not make succeed, by helper id.
PYTHON_FALLBACKS = {HELPER_IDS[impl.__name__]: impl for impl in (
    skb.skb_adjust_room, skb.skb_change_head, skb.skb_change_tail, skb.skb_vlan_push, skb.skb_vlan_pop,
    skb.skb_load_bytes_relative, skb.skb_set_tunnel_key, skb.skb_get_tunnel_key)}

_DATA, _END, _META, _LEN, _PROTOCOL, _GSO_SIZE, _VLAN_PRESENT, _VLAN_TCI, _VLAN_PROTO = (
    SK_BUFF.field(name).native_offset for name in ("data", "data_end", "data_meta", "len", "protocol", "gso_size",
                                                   "vlan_present", "vlan_tci", "vlan_proto"))


def _i64(value: int) -> int:
    """A 64-bit mask as an LLVM i64 literal (signed)."""
    return s64(value & MASK64)


def _chain(op: str, result: str, conditions: tuple[str, ...]) -> str:
    """IR lines setting i1 %result to the and / or (`op`) of the i1 %conditions."""
    lines, last = [], conditions[0]
    for position, condition in enumerate(conditions[1:], start=1):
        name = result if position == len(conditions) - 1 else f"{result}.{position}"
        lines.append(f"  %{name} = {op} i1 %{last}, %{condition}")
        last = name
    return "\n".join(lines)


def _all(result: str, *conditions: str) -> str:
    return _chain("and", result, conditions)


def _any(result: str, *conditions: str) -> str:
    return _chain("or", result, conditions)


_KEY = field_offsets(skb.BPF_TUNNEL_KEY, "id", "remote", "tos", "ttl", "ext", "label", "local")
_INFO = field_offsets(SKB_TUNNEL_INFO, "id", "tos", "ttl", "flags", "label", "remote", "local", "ipv6")
_TUNNEL_SET = CTX_SKB_TUNNEL  # the u64 that says a key was set; the key follows it
_TUNNEL_INFO = CTX_SKB_TUNNEL + 8
_IPV4_ADDRESS, _ADDRESS = 4, 16

# EtherTypes as the u32 protocol fields hold them, which the helpers compare them in.
_IP, _IPV6, _VLAN_Q, _VLAN_AD = map(skb.swap16, (skb.ETH_P_IP, skb.ETH_P_IPV6, skb.ETH_P_8021Q, skb.ETH_P_8021AD))
_MAC_ADDRESSES = 2 * 6  # what a VLAN tag is inserted after

_DECLARATIONS = "declare i16 @llvm.bswap.i16(i16)\n" + "".join(
    f"declare i64 @{PYTHON_PREFIX}{impl.__name__}(i64, i64, i64, i64, i64)\n" for impl in PYTHON_FALLBACKS.values())

# Loads and stores of the narrow fields at %c + %off (unaligned: also a tunnel key's fields),
# widened to and from i64.
_ACCESSORS = "".join(f"""
define internal i64 @ctx_u{bits}(i64 %c, i64 %off) alwaysinline {{
  %a = add i64 %c, %off
  %p = inttoptr i64 %a to ptr
  %v = load i{bits}, ptr %p, align 1
  %r = zext i{bits} %v to i64
  ret i64 %r
}}

define internal void @set_ctx_u{bits}(i64 %c, i64 %off, i64 %v) alwaysinline {{
  %a = add i64 %c, %off
  %p = inttoptr i64 %a to ptr
  %t = trunc i64 %v to i{bits}
  store i{bits} %t, ptr %p, align 1
  ret void
}}
""" for bits in (8, 16, 32))

# The sk_buff's fields and its moves, over a context %c (an i64 address).
_COMMON = f"""
{_ACCESSORS}
; SkbBuffer.moved: the packet is now [%data, %end).
define internal void @skb_moved(i64 %c, i64 %data, i64 %end) alwaysinline {{
  call void @set_ctx_u64(i64 %c, i64 {_DATA}, i64 %data)
  call void @set_ctx_u64(i64 %c, i64 {_END}, i64 %end)
  call void @set_ctx_u64(i64 %c, i64 {_META}, i64 %data)
  %len = sub i64 %end, %data
  call void @set_ctx_u32(i64 %c, i64 {_LEN}, i64 %len)
  call void @publish(i64 %c, i64 %data, i64 %end)
  ret void
}}

define internal void @move(i64 %to, i64 %from, i64 %size) alwaysinline {{
  %t = inttoptr i64 %to to ptr
  %f = inttoptr i64 %from to ptr
  call void @llvm.memmove.p0.p0.i64(ptr %t, ptr %f, i64 %size, i1 false)
  ret void
}}

define internal void @zero(i64 %at, i64 %size) alwaysinline {{
  %p = inttoptr i64 %at to ptr
  call void @llvm.memset.p0.i64(ptr %p, i8 0, i64 %size, i1 false)
  ret void
}}

; Whether a protocol field's value is a VLAN tag's EtherType (802.1Q or 802.1ad).
define internal i1 @is_vlan(i64 %p) alwaysinline {{
  %q = icmp eq i64 %p, {_VLAN_Q}
  %ad = icmp eq i64 %p, {_VLAN_AD}
  %r = or i1 %q, %ad
  ret i1 %r
}}

; skb_helpers._match_protocol: skb->protocol follows the new outer L3 header a flag names.
define internal void @match_protocol(i64 %c, i1 %to_ipv6, i1 %to_ipv4) alwaysinline {{
  %p = call i64 @ctx_u32(i64 %c, i64 {_PROTOCOL})
  %is4 = icmp eq i64 %p, {_IP}
  %is6 = icmp eq i64 %p, {_IPV6}
  %become6 = and i1 %is4, %to_ipv6
  %become4 = and i1 %is6, %to_ipv4
  %p1 = select i1 %become6, i64 {_IPV6}, i64 %p
  %p2 = select i1 %become4, i64 {_IP}, i64 %p1
  call void @set_ctx_u32(i64 %c, i64 {_PROTOCOL}, i64 %p2)
  ret void
}}

; skb_helpers._pop_packet_tag once its checks passed (mac header at data, 18 bytes or more): the
; tag after the MAC addresses leaves the packet, skb->protocol becomes what it carried (the
; EtherType; for a length field, 802.3 raw or 802.2 by the next two bytes); its TCI. The wire form
; of an EtherType of 0x600 or more has a low byte of 6 or more.
define internal i64 @pop_tag(i64 %c) alwaysinline {{
  %data = call i64 @ctx_u64(i64 %c, i64 {_DATA})
  %end = call i64 @ctx_u64(i64 %c, i64 {_END})
  %tci_at = add i64 %data, {ETH_HLEN}
  %tci_p = inttoptr i64 %tci_at to ptr
  %tci_be = load i16, ptr %tci_p, align 1
  %tci16 = call i16 @llvm.bswap.i16(i16 %tci_be)
  %tci = zext i16 %tci16 to i64
  %inner_wire = call i64 @ctx_u16(i64 %data, i64 {ETH_HLEN + 2})
  %inner_high = and i64 %inner_wire, 255
  %ethertype = icmp uge i64 %inner_high, {skb.ETH_P_802_3_MIN >> 8}
  %after = call i64 @ctx_u16(i64 %data, i64 {ETH_HLEN + skb.VLAN_HLEN})
  %raw = icmp eq i64 %after, 65535
  %llc = select i1 %raw, i64 {skb.swap16(skb.ETH_P_802_3)}, i64 {skb.swap16(skb.ETH_P_802_2)}
  %inner = select i1 %ethertype, i64 %inner_wire, i64 %llc
  %new = add i64 %data, {skb.VLAN_HLEN}
  call void @move(i64 %new, i64 %data, i64 {_MAC_ADDRESSES})
  call void @skb_moved(i64 %c, i64 %new, i64 %end)
  call void @headers_move(i64 %c, i64 {-skb.VLAN_HLEN}, i1 false)
  %network = call i64 @ctx_u64(i64 %c, i64 {CTX_SKB_NETWORK})
  %network1 = sub i64 %network, {skb.VLAN_HLEN}
  %in_mac = icmp slt i64 %network1, {ETH_HLEN}
  %network2 = select i1 %in_mac, i64 {ETH_HLEN}, i64 %network1
  call void @set_ctx_u64(i64 %c, i64 {CTX_SKB_NETWORK}, i64 %network2)
  call void @set_ctx_u32(i64 %c, i64 {_PROTOCOL}, i64 %inner)
  ret i64 %tci
}}

; SkbBuffer._headers_move: data moved back by %n bytes (forward, if negative); the kernel's
; headroom follows, and a set transport header stays in place, so further from data, unless
; %with_network and it is where the network header is (bpf_skb_net_hdr_push / _pop move it along).
define internal void @headers_move(i64 %c, i64 %n, i1 %with_network) alwaysinline {{
  %room = call i64 @ctx_u64(i64 %c, i64 {CTX_SKB_HEADROOM})
  %room1 = sub i64 %room, %n
  call void @set_ctx_u64(i64 %c, i64 {CTX_SKB_HEADROOM}, i64 %room1)
  %t = call i64 @ctx_u64(i64 %c, i64 {CTX_SKB_TRANSPORT})
  %net = call i64 @ctx_u64(i64 %c, i64 {CTX_SKB_NETWORK})
  %set = icmp ne i64 %t, {SKB_TRANSPORT_UNSET}
  %at_network = icmp eq i64 %t, %net
  %stays = and i1 %with_network, %at_network
  %goes = xor i1 %stays, true
  %moves = and i1 %set, %goes
  %t1 = add i64 %t, %n
  %t2 = select i1 %moves, i64 %t1, i64 %t
  call void @set_ctx_u64(i64 %c, i64 {CTX_SKB_TRANSPORT}, i64 %t2)
  ret void
}}

; SkbBuffer.cow_head: the kernel's headroom grows by whole NET_SKB_PADs when a push needs more;
; after adjust_room's (%sets_transport), an unset transport header is set 1 byte before the old head.
define internal void @cow_head(i64 %c, i64 %needed, i1 %sets_transport) alwaysinline {{
entry:
  %room = call i64 @ctx_u64(i64 %c, i64 {CTX_SKB_HEADROOM})
  %short = icmp ugt i64 %needed, %room
  br i1 %short, label %expand, label %done
expand:
  %t = call i64 @ctx_u64(i64 %c, i64 {CTX_SKB_TRANSPORT})
  %unset = icmp eq i64 %t, {SKB_TRANSPORT_UNSET}
  %becomes_set = and i1 %unset, %sets_transport
  %before_head = sub i64 -1, %room
  %t1 = select i1 %becomes_set, i64 %before_head, i64 %t
  call void @set_ctx_u64(i64 %c, i64 {CTX_SKB_TRANSPORT}, i64 %t1)
  %lack = sub i64 %needed, %room
  %lack_up = add i64 %lack, {NET_SKB_PAD - 1}
  %added = and i64 %lack_up, {-NET_SKB_PAD}
  %room1 = add i64 %room, %added
  call void @set_ctx_u64(i64 %c, i64 {CTX_SKB_HEADROOM}, i64 %room1)
  br label %done
done:
  ret void
}}

define internal void @set_vlan_tag(i64 %c, i64 %present, i64 %proto, i64 %tci) alwaysinline {{
  call void @set_ctx_u32(i64 %c, i64 {_VLAN_PRESENT}, i64 %present)
  call void @set_ctx_u32(i64 %c, i64 {_VLAN_PROTO}, i64 %proto)
  call void @set_ctx_u32(i64 %c, i64 {_VLAN_TCI}, i64 %tci)
  ret void
}}
"""

# The state every resizing helper starts from.
_STATE = f"""
  %data = call i64 @ctx_u64(i64 %r1, i64 {_DATA})
  %end = call i64 @ctx_u64(i64 %r1, i64 {_END})
  %len = sub i64 %end, %data
  %head = call i64 @ctx_u64(i64 %r1, i64 {CTX_SKB_HEAD})
  %headroom = sub i64 %data, %head
  %mac = call i64 @ctx_u64(i64 %r1, i64 {CTX_SKB_MAC})
  %network = call i64 @ctx_u64(i64 %r1, i64 {CTX_SKB_NETWORK})
  %proto = call i64 @ctx_u32(i64 %r1, i64 {_PROTOCOL})
  %transport = call i64 @ctx_u64(i64 %r1, i64 {CTX_SKB_TRANSPORT})
"""

_ENCAP_L3 = skb.ROOM_ENCAP_L3
_DECAP_L3 = skb.ROOM_DECAP_L3

_ADJUST_ROOM = packet_helper("skb_adjust_room", CTX_KIND_SKB, _STATE + f"""
  %unknown = and i64 %r4, {_i64(~skb.ROOM_FLAGS)}
  %flags_ok = icmp eq i64 %unknown, 0
  %diff = call i64 @s32(i64 %r2)
  %shrinks = icmp slt i64 %diff, 0
  %minus = sub i64 0, %diff
  %size = select i1 %shrinks, i64 %minus, i64 %diff
  %size_ok = icmp ule i64 %size, {skb.ROOM_DIFF_MAX}
  %mode = and i64 %r3, {MASK32}
  %mode_ok = icmp ule i64 %mode, {skb.ADJ_ROOM_MAC}
  %is4 = icmp eq i64 %proto, {_IP}
  %is6 = icmp eq i64 %proto, {_IPV6}
  %proto_ok = or i1 %is4, %is6
  %gso = call i64 @ctx_u32(i64 %r1, i64 {_GSO_SIZE})
  %not_gso = icmp eq i64 %gso, 0
  %base = select i1 %is4, i64 {skb.IPV4_HLEN}, i64 {skb.IPV6_HLEN}
  %at_net = icmp eq i64 %mode, {skb.ADJ_ROOM_NET}
  %past_l3 = select i1 %at_net, i64 %base, i64 0
  %mac_len = sub i64 %network, %mac
  %offset = add i64 %mac_len, %past_l3
  %offset_ok = icmp sge i64 %offset, 0
{_all("common_ok", "flags_ok", "size_ok", "mode_ok", "proto_ok", "not_gso", "offset_ok")}
  br i1 %common_ok, label %which, label %python
which:
  br i1 %shrinks, label %shrink, label %grow
grow:
  %decaps = and i64 %r4, {_DECAP_L3}
  %no_decap = icmp eq i64 %decaps, 0
  %grown = add i64 %len, %size
  %fits = icmp ule i64 %grown, {SKB_MAX_LEN}
  %room = icmp uge i64 %headroom, %size
  %encap = and i64 %r4, {_ENCAP_L3}
  %encaps = icmp ne i64 %encap, 0
  %both_l3 = icmp eq i64 %encap, {_ENCAP_L3}
  %gre = and i64 %r4, {skb.ROOM_ENCAP_L4_GRE}
  %udp = and i64 %r4, {skb.ROOM_ENCAP_L4_UDP}
  %has_gre = icmp ne i64 %gre, 0
  %has_udp = icmp ne i64 %udp, 0
  %both_l4 = and i1 %has_gre, %has_udp
  %inner_mac = lshr i64 %r4, {skb.ROOM_ENCAP_L2_SHIFT}
  %eth = and i64 %r4, {skb.ROOM_ENCAP_L2_ETH}
  %has_eth = icmp ne i64 %eth, 0
  %short_mac = icmp ult i64 %inner_mac, {ETH_HLEN}
  %bad_eth = and i1 %has_eth, %short_mac
  %encapsulated = call i64 @ctx_u64(i64 %r1, i64 {CTX_SKB_ENCAP})
  %already = icmp ne i64 %encapsulated, 0
  %long_mac = icmp ugt i64 %inner_mac, %size
{_any("encap_refused", "both_l3", "both_l4", "bad_eth", "already", "long_mac")}
  %bad_encap = and i1 %encaps, %encap_refused
  %good_encap = xor i1 %bad_encap, true
{_all("grow_ok", "no_decap", "fits", "room", "good_encap")}
  br i1 %grow_ok, label %push, label %python
push:
  call void @cow_head(i64 %r1, i64 %size, i1 true)
  %pushed = sub i64 %data, %size
  call void @move(i64 %pushed, i64 %data, i64 %offset)
  %gap = add i64 %pushed, %offset
  call void @zero(i64 %gap, i64 %size)
  call void @skb_moved(i64 %r1, i64 %pushed, i64 %end)
  call void @headers_move(i64 %r1, i64 %size, i1 true)
  br i1 %encaps, label %mark, label %done
mark:
  call void @set_ctx_u64(i64 %r1, i64 {CTX_SKB_ENCAP}, i64 1)
  %to6 = and i64 %r4, {skb.ROOM_ENCAP_L3_IPV6}
  %to4 = and i64 %r4, {skb.ROOM_ENCAP_L3_IPV4}
  %outer6 = icmp ne i64 %to6, 0
  %outer4 = icmp ne i64 %to4, 0
  call void @match_protocol(i64 %r1, i1 %outer6, i1 %outer4)
  %l4 = and i64 %r4, {skb.ROOM_ENCAP_L4_GRE | skb.ROOM_ENCAP_L4_UDP}
  %has_l4 = icmp ne i64 %l4, 0
  br i1 %has_l4, label %l4_header, label %done
l4_header:
  %outer_l3 = select i1 %outer6, i64 {skb.IPV6_HLEN}, i64 {skb.IPV4_HLEN}
  %l4_at = add i64 %mac_len, %outer_l3
  call void @set_ctx_u64(i64 %r1, i64 {CTX_SKB_TRANSPORT}, i64 %l4_at)
  br label %done
shrink:
  %unshrinkable = and i64 %r4, {_i64(~skb.ROOM_SHRINK_FLAGS)}
  %shrink_flags_ok = icmp eq i64 %unshrinkable, 0
  %decap = and i64 %r4, {_DECAP_L3}
  %one_decap = icmp ne i64 %decap, {_DECAP_L3}
  %decap4 = icmp eq i64 %decap, {skb.ROOM_DECAP_L3_IPV4}
  %decap6 = icmp eq i64 %decap, {skb.ROOM_DECAP_L3_IPV6}
  %min4 = select i1 %decap4, i64 {skb.IPV4_HLEN}, i64 %base
  %min_len = select i1 %decap6, i64 {skb.IPV6_HLEN}, i64 %min4
  %current = sub i64 %len, %network
  %not_all = icmp slt i64 %size, %current
  %left = sub i64 %current, %size
  %enough = icmp sge i64 %left, %min_len
  %cut_end = add i64 %offset, %size
  %inside = icmp sle i64 %cut_end, %len
{_all("shrink_ok", "shrink_flags_ok", "one_decap", "not_all", "enough", "inside")}
  br i1 %shrink_ok, label %pull, label %python
pull:
  %pulled = add i64 %data, %size
  call void @move(i64 %pulled, i64 %data, i64 %offset)
  call void @skb_moved(i64 %r1, i64 %pulled, i64 %end)
  %back = sub i64 0, %size
  call void @headers_move(i64 %r1, i64 %back, i1 true)
  call void @match_protocol(i64 %r1, i1 %decap6, i1 %decap4)
  br label %done
done:
  ret i64 0
""")

_CHANGE_HEAD = packet_helper("skb_change_head", CTX_KIND_SKB, _STATE + f"""
  %size = and i64 %r2, {MASK32}
  %no_flags = icmp eq i64 %r3, 0
  %int = icmp ule i64 %size, {skb.INT_MAX}
  %grown = add i64 %len, %size
  %fits = icmp ule i64 %grown, {SKB_MAX_LEN}
  %room = icmp uge i64 %headroom, %size
{_all("ok", "no_flags", "int", "fits", "room")}
  br i1 %ok, label %push, label %python
push:
  call void @cow_head(i64 %r1, i64 %size, i1 false)
  %pushed = sub i64 %data, %size
  call void @zero(i64 %pushed, i64 %size)
  call void @skb_moved(i64 %r1, i64 %pushed, i64 %end)
  call void @headers_move(i64 %r1, i64 %size, i1 false)
  %moved_network = add i64 %network, %size
  call void @set_ctx_u64(i64 %r1, i64 {CTX_SKB_NETWORK}, i64 %moved_network)
  call void @set_ctx_u64(i64 %r1, i64 {CTX_SKB_MAC}, i64 0)
  ret i64 0
""")

_CHANGE_TAIL = packet_helper("skb_change_tail", CTX_KIND_SKB, _STATE + f"""
  %new_len = and i64 %r2, {MASK32}
  %no_flags = icmp eq i64 %r3, 0
  %short = icmp ule i64 %new_len, {SKB_MAX_LEN}
  %net_positive = icmp sgt i64 %network, 0
  %net_floor = select i1 %net_positive, i64 %network, i64 0
  %transport_set = icmp ne i64 %transport, {SKB_TRANSPORT_UNSET}
  %transport_positive = icmp sgt i64 %transport, 0
  %transport_counts = and i1 %transport_set, %transport_positive
  %floor = select i1 %transport_counts, i64 %transport, i64 %net_floor
  %above = icmp sge i64 %new_len, %floor
  %encapsulated = call i64 @ctx_u64(i64 %r1, i64 {CTX_SKB_ENCAP})
  %plain = icmp eq i64 %encapsulated, 0
  %grows = icmp ugt i64 %new_len, %len
  %storage_end = call i64 @ctx_u64(i64 %r1, i64 {CTX_SKB_END})
  %tailroom = sub i64 %storage_end, %end
  %more = sub i64 %new_len, %len
  %has_room = icmp uge i64 %tailroom, %more
  %stays = xor i1 %grows, true
  %room_ok = or i1 %stays, %has_room
{_all("ok", "no_flags", "short", "above", "plain", "room_ok")}
  br i1 %ok, label %resize, label %python
resize:
  br i1 %grows, label %zero, label %move
zero:
  call void @zero(i64 %end, i64 %more)
  br label %move
move:
  %new_end = add i64 %data, %new_len
  call void @skb_moved(i64 %r1, i64 %data, i64 %new_end)
  ret i64 0
""")

_VLAN_PUSH = packet_helper("skb_vlan_push", CTX_KIND_SKB, _STATE + f"""
  %given = and i64 %r2, 65535
  %known = call i1 @is_vlan(i64 %given)
  %tag_proto = select i1 %known, i64 %given, i64 {_VLAN_Q}
  %tci = and i64 %r3, 65535
  %present = call i64 @ctx_u32(i64 %r1, i64 {_VLAN_PRESENT})
  %carries = icmp ne i64 %present, 0
  br i1 %carries, label %carried, label %tag
carried:
  %at_mac = icmp eq i64 %mac, 0
  %room = icmp uge i64 %headroom, {skb.VLAN_HLEN}
{_all("ok", "at_mac", "room")}
  br i1 %ok, label %insert, label %python
insert:
  call void @cow_head(i64 %r1, i64 {skb.VLAN_HLEN}, i1 false)
  %pushed = sub i64 %data, {skb.VLAN_HLEN}
  call void @move(i64 %pushed, i64 %data, i64 {_MAC_ADDRESSES})
  %old_proto = call i64 @ctx_u32(i64 %r1, i64 {_VLAN_PROTO})
  %old_tci = call i64 @ctx_u32(i64 %r1, i64 {_VLAN_TCI})
  %proto_at = add i64 %pushed, {_MAC_ADDRESSES}
  %proto_p = inttoptr i64 %proto_at to ptr
  %proto16 = trunc i64 %old_proto to i16
  store i16 %proto16, ptr %proto_p, align 1
  %tci_at = add i64 %pushed, {_MAC_ADDRESSES + 2}
  %tci_p = inttoptr i64 %tci_at to ptr
  %tci16 = trunc i64 %old_tci to i16
  %tci_be = call i16 @llvm.bswap.i16(i16 %tci16)
  store i16 %tci_be, ptr %tci_p, align 1
  call void @skb_moved(i64 %r1, i64 %pushed, i64 %end)
  call void @headers_move(i64 %r1, i64 {skb.VLAN_HLEN}, i1 false)
  call void @set_ctx_u32(i64 %r1, i64 {_PROTOCOL}, i64 %old_proto)
  br label %tag
tag:
  call void @set_vlan_tag(i64 %r1, i64 1, i64 %tag_proto, i64 %tci)
  ret i64 0
""")

# Tags popped from the packet: one under an accelerated tag that a tag in the packet replaces,
# or, with none, the outer tag and then an inner one that becomes the accelerated tag. Each
# needs the mac header at data and 18 bytes (22 for two).
_VLAN_POP = packet_helper("skb_vlan_pop", CTX_KIND_SKB, _STATE + f"""
  %present = call i64 @ctx_u32(i64 %r1, i64 {_VLAN_PRESENT})
  %carries = icmp ne i64 %present, 0
  %tagged = call i1 @is_vlan(i64 %proto)
  %at_mac = icmp eq i64 %mac, 0
  %one_fits = icmp uge i64 %len, {ETH_HLEN + skb.VLAN_HLEN}
  %can_pop = and i1 %at_mac, %one_fits
  br i1 %carries, label %with_tag, label %without
with_tag:
  %untagged = xor i1 %tagged, true
  %ok = or i1 %untagged, %can_pop
  br i1 %ok, label %clear, label %python
clear:
  call void @set_vlan_tag(i64 %r1, i64 0, i64 0, i64 0)
  br i1 %tagged, label %last, label %done
without:
  br i1 %tagged, label %first, label %done
first:
  br i1 %can_pop, label %peek, label %python
peek:
  %inner = call i64 @ctx_u16(i64 %data, i64 {ETH_HLEN + 2})
  %nested = call i1 @is_vlan(i64 %inner)
  %two_fit = icmp uge i64 %len, {ETH_HLEN + 2 * skb.VLAN_HLEN}
  %single = xor i1 %nested, true
  %ok2 = or i1 %single, %two_fit
  br i1 %ok2, label %drop, label %python
drop:
  %dropped = call i64 @pop_tag(i64 %r1)
  br i1 %nested, label %last, label %done
last:
  %tag_proto = call i64 @ctx_u32(i64 %r1, i64 {_PROTOCOL})
  %tci = call i64 @pop_tag(i64 %r1)
  call void @set_vlan_tag(i64 %r1, i64 1, i64 %tag_proto, i64 %tci)
  br label %done
done:
  ret i64 0
""")

_LOAD_BYTES_RELATIVE = packet_helper("skb_load_bytes_relative", CTX_KIND_SKB, _STATE + f"""
  %off = and i64 %r2, {MASK32}
  %size = and i64 %r4, {MASK32}
  %header = and i64 %r5, {MASK32}
  %from_mac = icmp eq i64 %header, {skb.HDR_START_MAC}
  %from_net = icmp eq i64 %header, {skb.HDR_START_NET}
  %known = or i1 %from_mac, %from_net
  %start = select i1 %from_mac, i64 %mac, i64 %network
  %near = icmp ule i64 %off, {skb.OFFSET_MAX}
  %s1 = add i64 %start, %off
  %reach = add i64 %s1, %size
  %within = icmp sle i64 %reach, %len
{_all("inside", "known", "near", "within")}
  br i1 %inside, label %copy, label %zeroed
copy:
  %at = add i64 %data, %s1
  call void @move(i64 %r3, i64 %at, i64 %size)
  ret i64 0
zeroed:
  call void @zero(i64 %r3, i64 %size)
  br label %efault
""")

def _flag(name: str, given: int, tunnel: int, when_set: bool) -> str:
    """IR setting %name to the tunnel flag `tunnel` when the helper's flag `given` is set (or,
    not when_set, clear), else 0."""
    on = f"%{name}.on"
    return (f"  %{name}.bit = and i64 %r4, {given}\n  {on} = icmp {'ne' if when_set else 'eq'} i64 %{name}.bit, 0\n"
            f"  %{name} = select i1 {on}, i64 {tunnel}, i64 0")


def _address(name: str, from_key: int, to_info: int) -> str:
    """IR copying an address from the key copy to the kept key: all 16 bytes, of which an IPv4
    tunnel keeps the first 4 (%v4_rest more are zeroed)."""
    return (f"  %{name}.from = add i64 %key, {from_key}\n  %{name}.to = add i64 %info, {to_info}\n"
            f"  call void @move(i64 %{name}.to, i64 %{name}.from, i64 {_ADDRESS})\n"
            f"  %{name}.rest = add i64 %{name}.to, {_IPV4_ADDRESS}\n"
            f"  call void @zero(i64 %{name}.rest, i64 %v4_rest)")


_SET_FLAGS = skb.TUNINFO_IPV6 | skb.ZERO_CSUM_TX | skb.DONT_FRAGMENT | skb.SEQ_NUMBER | skb.NO_TUNNEL_KEY
_KEY_SIZES = (skb.TUNNEL_KEY_SIZE, *skb.TUNNEL_KEY_COMPAT_SIZES)


def _sizes(result: str, sizes: tuple[int, ...]) -> str:
    """IR setting i1 %result to whether %size is one of sizes."""
    tests = "".join(f"  %{result}.is{size} = icmp eq i64 %size, {size}\n" for size in sizes)
    return tests + _any(result, *(f"{result}.is{size}" for size in sizes))


# bpf_skb_set_tunnel_key(ctx, key, size, flags): the key read from a zeroed copy of the size
# bytes given (the older layouts are its prefixes), kept as ip_tunnel_info keeps it.
_SET_TUNNEL_KEY = packet_helper("skb_set_tunnel_key", CTX_KIND_SKB, f"""
  %size = and i64 %r3, {MASK32}
  %unknown = and i64 %r4, {_i64(~_SET_FLAGS)}
  %flags_ok = icmp eq i64 %unknown, 0
{_sizes("size_ok", _KEY_SIZES)}
  %ok = and i1 %flags_ok, %size_ok
  br i1 %ok, label %read, label %python
read:
  %copy = alloca [{skb.TUNNEL_KEY_SIZE} x i8]
  %key = ptrtoint ptr %copy to i64
  call void @zero(i64 %key, i64 {skb.TUNNEL_KEY_SIZE})
  call void @move(i64 %key, i64 %r2, i64 %size)
  %id = call i64 @ctx_u32(i64 %key, i64 {_KEY["id"]})
  %tos = call i64 @ctx_u8(i64 %key, i64 {_KEY["tos"]})
  %ttl = call i64 @ctx_u8(i64 %key, i64 {_KEY["ttl"]})
  %ext = call i64 @ctx_u16(i64 %key, i64 {_KEY["ext"]})
  %label = call i64 @ctx_u32(i64 %key, i64 {_KEY["label"]})
  %v6_flag = and i64 %r4, {skb.TUNINFO_IPV6}
  %ipv6 = icmp ne i64 %v6_flag, 0
  %no_ext = icmp eq i64 %ext, 0
  %no_label = icmp eq i64 %label, 0
  %label_ok = or i1 %no_label, %ipv6
  %good = and i1 %no_ext, %label_ok
  br i1 %good, label %keep, label %python
keep:
{_flag("df", skb.DONT_FRAGMENT, skb.TUNNEL_DONT_FRAGMENT, when_set=True)}
{_flag("csum", skb.ZERO_CSUM_TX, skb.TUNNEL_CSUM, when_set=False)}
{_flag("seq", skb.SEQ_NUMBER, skb.TUNNEL_SEQ, when_set=True)}
{_flag("keyed", skb.NO_TUNNEL_KEY, skb.TUNNEL_KEY, when_set=False)}
  %f1 = or i64 %df, {skb.TUNNEL_NOCACHE}
  %f2 = or i64 %f1, %csum
  %f3 = or i64 %f2, %seq
  %tunnel_flags = or i64 %f3, %keyed
  %flow_label = and i64 %label, {skb.IPV6_FLOWLABEL_MASK}
  %kept_label = select i1 %ipv6, i64 %flow_label, i64 %label
  %info = add i64 %r1, {_TUNNEL_INFO}
  call void @set_ctx_u32(i64 %info, i64 {_INFO["id"]}, i64 %id)
  call void @set_ctx_u8(i64 %info, i64 {_INFO["tos"]}, i64 %tos)
  call void @set_ctx_u8(i64 %info, i64 {_INFO["ttl"]}, i64 %ttl)
  call void @set_ctx_u16(i64 %info, i64 {_INFO["flags"]}, i64 %tunnel_flags)
  call void @set_ctx_u32(i64 %info, i64 {_INFO["label"]}, i64 %kept_label)
  %v4_rest = select i1 %ipv6, i64 0, i64 {_ADDRESS - _IPV4_ADDRESS}
{_address("remote", _KEY["remote"], _INFO["remote"])}
{_address("local", _KEY["local"], _INFO["local"])}
  call void @set_ctx_u8(i64 %info, i64 {_INFO["ipv6"]}, i64 %v6_flag)
  call void @set_ctx_u64(i64 %r1, i64 {_TUNNEL_SET}, i64 1)
  ret i64 0
""")

# bpf_skb_get_tunnel_key(ctx, to, size, flags): the key kept, as read from a received tunnel
# (remote and local swapped), built in a copy of which the size bytes asked for are given.
_GET_TUNNEL_KEY = packet_helper("skb_get_tunnel_key", CTX_KIND_SKB, f"""
  %size = and i64 %r3, {MASK32}
  %set = call i64 @ctx_u64(i64 %r1, i64 {_TUNNEL_SET})
  %has_key = icmp ne i64 %set, 0
  %unknown = and i64 %r4, {_i64(~(skb.TUNINFO_IPV6 | skb.TUNINFO_FLAGS))}
  %flags_ok = icmp eq i64 %unknown, 0
  %info = add i64 %r1, {_TUNNEL_INFO}
  %stored_v6 = call i64 @ctx_u8(i64 %info, i64 {_INFO["ipv6"]})
  %is_v6 = icmp ne i64 %stored_v6, 0
  %v6_flag = and i64 %r4, {skb.TUNINFO_IPV6}
  %wants_v6 = icmp ne i64 %v6_flag, 0
  %same_family = icmp eq i1 %is_v6, %wants_v6
{_sizes("full_size", _KEY_SIZES[:-1])}
  %is_v4 = xor i1 %is_v6, true
  %oldest = icmp eq i64 %size, {skb.TUNNEL_KEY_COMPAT_SIZES[-1]}
  %oldest_v4 = and i1 %oldest, %is_v4
  %size_ok = or i1 %full_size, %oldest_v4
{_all("ok", "has_key", "flags_ok", "same_family", "size_ok")}
  br i1 %ok, label %build, label %python
build:
  %copy = alloca [{skb.TUNNEL_KEY_SIZE} x i8]
  %key = ptrtoint ptr %copy to i64
  %id = call i64 @ctx_u32(i64 %info, i64 {_INFO["id"]})
  call void @set_ctx_u32(i64 %key, i64 {_KEY["id"]}, i64 %id)
  %source = add i64 %info, {_INFO["local"]}
  %source_to = add i64 %key, {_KEY["remote"]}
  call void @move(i64 %source_to, i64 %source, i64 {_ADDRESS})
  %tos = call i64 @ctx_u8(i64 %info, i64 {_INFO["tos"]})
  call void @set_ctx_u8(i64 %key, i64 {_KEY["tos"]}, i64 %tos)
  %ttl = call i64 @ctx_u8(i64 %info, i64 {_INFO["ttl"]})
  call void @set_ctx_u8(i64 %key, i64 {_KEY["ttl"]}, i64 %ttl)
  %tunnel_flags = call i64 @ctx_u16(i64 %info, i64 {_INFO["flags"]})
  %flags16 = trunc i64 %tunnel_flags to i16
  %be_flags16 = call i16 @llvm.bswap.i16(i16 %flags16)
  %be_flags = zext i16 %be_flags16 to i64
  %report = and i64 %r4, {skb.TUNINFO_FLAGS}
  %reports = icmp ne i64 %report, 0
  %reported = select i1 %reports, i64 %be_flags, i64 0
  call void @set_ctx_u16(i64 %key, i64 {_KEY["ext"]}, i64 %reported)
  %label = call i64 @ctx_u32(i64 %info, i64 {_INFO["label"]})
  %given_label = select i1 %is_v6, i64 %label, i64 0
  call void @set_ctx_u32(i64 %key, i64 {_KEY["label"]}, i64 %given_label)
  %destination = add i64 %info, {_INFO["remote"]}
  %destination_to = add i64 %key, {_KEY["local"]}
  call void @move(i64 %destination_to, i64 %destination, i64 {_ADDRESS})
  call void @move(i64 %r2, i64 %key, i64 %size)
  ret i64 0
""")

MODULE_IR = (_DECLARATIONS + _COMMON + _ADJUST_ROOM + _CHANGE_HEAD + _CHANGE_TAIL + _VLAN_PUSH + _VLAN_POP
             + _LOAD_BYTES_RELATIVE + _SET_TUNNEL_KEY + _GET_TUNNEL_KEY)

FUNCTIONS = twins(*PYTHON_FALLBACKS.items())
