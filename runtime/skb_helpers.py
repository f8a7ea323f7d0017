"""The socket-buffer helpers of packet programs (socket filters, tc, cgroup_skb), with the kernel's
argument checks and error codes (net/core/filter.c) on the sk_buff a test run builds
(runtime/run_memory.py's :class:`SkbBuffer`): the packet is linear, from ``skb->data`` (the
network header for a socket filter, as BPF_PROG_TEST_RUN shows it), with no checksum state
(CHECKSUM_NONE) and no GSO type.

Offsets count from ``data``. The helpers that move or resize the packet (``skb_adjust_room``,
``skb_change_head``, ``skb_change_tail``, ``skb_vlan_push``/``pop``) go through the SkbBuffer,
which keeps ``len`` and the run's "packet" region on the packet; the verifier forgets packet
pointers after them (verifier/calls.py), as the kernel's does.

``csum_diff`` and the ``l3``/``l4_csum_replace`` helpers are ones'-complement arithmetic on the
bytes as they lie in memory (csum_partial, csum_replace4 and friends), so byte order never
needs converting: the sum of little-endian words is the byte-swapped sum of big-endian ones.
"""
from __future__ import annotations

import ctypes
import struct
from errno import EALREADY, EFAULT, EINVAL, ENOMEM, EPROTO

from bpfjit.isa import MASK32, MASK64

from . import helper_args
from .context import ETH_HLEN, SKB_TRANSPORT_UNSET, SKB_TUNNEL_INFO
from .helpers import errno_result
from .kernel_helpers import HELPER_IDS
from .run_memory import SKB_MAX_LEN, SkbBuffer, skb_buffer
from .status import HelperFault

ENOTSUPP = 524  # the kernel's own "operation not supported" (not in errno)
CSUM_DIFF_MAX = 512  # the kernel's scratch buffer: 128 words
INT_MAX = 0x7FFF_FFFF
OFFSET_MAX = 0xFFFF  # the checksum helpers' and load_bytes_relative's largest offset
ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x8100, 0x88A8
ETH_P_802_3, ETH_P_802_2, ETH_P_802_3_MIN = 0x0001, 0x0004, 0x0600  # below 0x600: a length, no EtherType
IPV4_HLEN, IPV6_HLEN, VLAN_HLEN = 20, 40, 4
HDR_START_MAC, HDR_START_NET = 0, 1

STORE_RECOMPUTE_CSUM, STORE_INVALIDATE_HASH = 1 << 0, 1 << 1
CSUM_FIELD_SIZE = 0xF
CSUM_PSEUDO_HDR, CSUM_MARK_MANGLED_0, CSUM_MARK_ENFORCE, CSUM_IPV6 = 1 << 4, 1 << 5, 1 << 6, 1 << 7
CSUM_MANGLED_0 = 0xFFFF

ADJ_ROOM_NET, ADJ_ROOM_MAC = 0, 1
ROOM_FIXED_GSO, ROOM_ENCAP_L3_IPV4, ROOM_ENCAP_L3_IPV6 = 1 << 0, 1 << 1, 1 << 2
ROOM_ENCAP_L4_GRE, ROOM_ENCAP_L4_UDP, ROOM_NO_CSUM_RESET = 1 << 3, 1 << 4, 1 << 5
ROOM_ENCAP_L2_ETH, ROOM_DECAP_L3_IPV4, ROOM_DECAP_L3_IPV6 = 1 << 6, 1 << 7, 1 << 8
ROOM_ENCAP_L2_SHIFT = 56  # BPF_F_ADJ_ROOM_ENCAP_L2(len): the inner mac header's length
ROOM_ENCAP_L3 = ROOM_ENCAP_L3_IPV4 | ROOM_ENCAP_L3_IPV6
ROOM_DECAP_L3 = ROOM_DECAP_L3_IPV4 | ROOM_DECAP_L3_IPV6
ROOM_FLAGS = (ROOM_FIXED_GSO | ROOM_ENCAP_L3 | ROOM_ENCAP_L4_GRE | ROOM_ENCAP_L4_UDP | ROOM_ENCAP_L2_ETH
              | 0xFF << ROOM_ENCAP_L2_SHIFT | ROOM_DECAP_L3 | ROOM_NO_CSUM_RESET)
ROOM_SHRINK_FLAGS = ROOM_FIXED_GSO | ROOM_DECAP_L3 | ROOM_NO_CSUM_RESET
ROOM_DIFF_MAX = 0xFFF

TUNINFO_IPV6, ZERO_CSUM_TX, DONT_FRAGMENT, SEQ_NUMBER, NO_TUNNEL_KEY = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
TUNINFO_FLAGS = 1 << 4  # bpf_skb_get_tunnel_key: report the tunnel flags
BPF_TUNNEL_KEY = struct.Struct("<I16sBBHI16s")  # struct bpf_tunnel_key
TUNNEL_KEY_SIZE = BPF_TUNNEL_KEY.size
# Sizes of struct bpf_tunnel_key's older layouts, which both helpers still take.
TUNNEL_KEY_COMPAT_SIZES = (28, 24, 22, 8)
# The tunnel's flags (IP_TUNNEL_*_BIT), as bpf_skb_get_tunnel_key reports them (a __be16 mask).
TUNNEL_CSUM, TUNNEL_KEY, TUNNEL_SEQ, TUNNEL_DONT_FRAGMENT, TUNNEL_NOCACHE = 1 << 0, 1 << 2, 1 << 3, 1 << 8, 1 << 13
IPV6_FLOWLABEL_MASK = 0xF_FFFF


def _skb(ctx: int) -> SkbBuffer:
    found = skb_buffer(ctx)
    if found is None:
        raise HelperFault(f"{ctx:#x} is not the context of an skb program's run (arg 1)")
    return found


def _copy_out(to: int, source: int | None, size: int) -> int:
    """Copy size bytes from source into to; None: zero them and fail with -EFAULT."""
    if source is None:
        ctypes.memset(to, 0, size)
        return errno_result(EFAULT)
    ctypes.memmove(to, source, size)
    return 0


def skb_load_bytes(ctx: int, offset: int, to: int, size: int, *_: int) -> int:
    """Copy size bytes of the packet from offset; outside it, zeroes and -EFAULT."""
    skb, offset, size = _skb(ctx), offset & MASK32, size & MASK32
    helper_args.check(to, size, 3, write=True)
    inside = offset <= INT_MAX and offset + size <= skb.length()
    return _copy_out(to, skb.data + offset if inside else None, size)


def skb_load_bytes_relative(ctx: int, offset: int, to: int, size: int, start_header: int) -> int:
    """skb_load_bytes from the mac or the network header; past the packet's end, -EFAULT."""
    skb, offset, size = _skb(ctx), offset & MASK32, size & MASK32
    helper_args.check(to, size, 3, write=True)
    starts = {HDR_START_MAC: skb.mac, HDR_START_NET: skb.network}
    start = starts.get(start_header & MASK32)
    inside = offset <= OFFSET_MAX and start is not None and start + offset + size <= skb.length()
    return _copy_out(to, skb.data + start + offset if inside else None, size)


def skb_store_bytes(ctx: int, offset: int, source: int, size: int, flags: int) -> int:
    """Copy size bytes into the packet at offset. A test run's packet has no checksum to
    recompute; BPF_F_INVALIDATE_HASH clears skb->hash."""
    skb, offset, size = _skb(ctx), offset & MASK32, size & MASK32
    helper_args.check(source, size, 3)
    if flags & ~(STORE_RECOMPUTE_CSUM | STORE_INVALIDATE_HASH):
        return errno_result(EINVAL)
    if offset > INT_MAX or (offset + size) & MASK32 > skb.length():
        return errno_result(EFAULT)
    ctypes.memmove(skb.data + offset, source, size)
    if flags & STORE_INVALIDATE_HASH:
        skb.set_value("hash", 0)
    return 0


def _add(a: int, b: int, bits: int = 32) -> int:
    """csum_add (csum16_add for 16 bits): addition with the carry wrapped around."""
    total = a + b
    return (total & ((1 << bits) - 1)) + (total >> bits)


def _fold(total: int) -> int:
    """csum_fold: a 32-bit sum folded to 16 bits and complemented."""
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _csum_field(skb: SkbBuffer, offset: int) -> int | None:
    """The address of the 16-bit checksum at offset, or None (-EFAULT) for an odd offset, one
    past 0xffff or past the packet."""
    offset &= MASK32
    if offset > OFFSET_MAX or offset & 1 or offset + 2 > skb.length():
        return None
    return skb.data + offset


def l3_csum_replace(ctx: int, offset: int, old: int, new: int, flags: int) -> int:
    """Update the 16-bit checksum at offset for a field that changed from old to new (its size,
    2 or 4, in the flags' low bits; 0: new is a csum_diff result and old must be 0)."""
    skb = _skb(ctx)
    if flags & ~CSUM_FIELD_SIZE & MASK64:
        return errno_result(EINVAL)
    address = _csum_field(skb, offset)
    if address is None:
        return errno_result(EFAULT)
    return _replace_field(address, old, new, flags & CSUM_FIELD_SIZE, sixteen_bit=True)


def _replace_field(address: int, old: int, new: int, size: int, sixteen_bit: bool) -> int:
    """The checksum update of both csum_replace helpers, by field size: csum_replace_by_diff (0),
    csum_replace2 and csum_replace4. l3's 2-byte update is 16-bit arithmetic; l4's widens the
    halves to 32 bits first, as inet_proto_csum_replace2 does."""
    checksum = ctypes.c_uint16.from_address(address)
    unfolded = ~checksum.value & MASK32  # ~csum_unfold(*sum)
    if size == 0:
        if old:
            return errno_result(EINVAL)
        checksum.value = _fold(_add(new & MASK32, unfolded))
    elif size == 2 and sixteen_bit:
        removed = _add(~checksum.value & 0xFFFF, ~old & 0xFFFF, 16)
        checksum.value = ~_add(removed, new & 0xFFFF, 16) & 0xFFFF
    elif size in (2, 4):
        mask = 0xFFFF if size == 2 else MASK32
        checksum.value = _fold(_add(_add(unfolded, ~(old & mask) & MASK32), new & mask))
    else:
        return errno_result(EINVAL)
    return 0


def l4_csum_replace(ctx: int, offset: int, old: int, new: int, flags: int) -> int:
    """l3_csum_replace for a TCP/UDP checksum. BPF_F_PSEUDO_HDR would also update a
    CHECKSUM_COMPLETE skb's csum, which a test run's skb is not; BPF_F_MARK_MANGLED_0 leaves a
    zero (UDP's "no checksum") alone, unless BPF_F_MARK_ENFORCE, and writes a result of zero as
    0xffff."""
    skb = _skb(ctx)
    known = CSUM_MARK_MANGLED_0 | CSUM_MARK_ENFORCE | CSUM_PSEUDO_HDR | CSUM_FIELD_SIZE | CSUM_IPV6
    if flags & ~known & MASK64:
        return errno_result(EINVAL)
    address = _csum_field(skb, offset)
    if address is None:
        return errno_result(EFAULT)
    checksum = ctypes.c_uint16.from_address(address)
    mangled_zero = flags & CSUM_MARK_MANGLED_0
    if mangled_zero and not flags & CSUM_MARK_ENFORCE and not checksum.value:
        return 0
    result = _replace_field(address, old, new, flags & CSUM_FIELD_SIZE, sixteen_bit=False)
    if result == 0 and mangled_zero and not checksum.value:
        checksum.value = CSUM_MANGLED_0
    return result


def skb_pull_data(ctx: int, length: int, *_: int) -> int:
    """Make the first `length` bytes (0: the linear part) direct-accessible. A test run's packet is
    all linear already, so only a length past its end fails, with the kernel's -ENOMEM
    (pskb_may_pull). The verifier has forgotten every packet pointer: the program reloads them."""
    return errno_result(ENOMEM) if (length & MASK32) > _skb(ctx).length() else 0


def csum_diff(source: int, source_size: int, target: int, target_size: int, seed: int) -> int:
    """seed + the target words - the source words, folded to 32 bits as csum_partial does."""
    source_size, target_size = source_size & MASK32, target_size & MASK32
    if (source_size | target_size) & 3 or source_size + target_size > CSUM_DIFF_MAX:
        return errno_result(EINVAL)
    helper_args.check(source, source_size, 1)
    helper_args.check(target, target_size, 3)
    words = [~w & MASK32 for w in _words(source, source_size)] + _words(target, target_size)
    total = (seed & MASK32) + sum(words)
    while total >> 32:
        total = (total & MASK32) + (total >> 32)
    return total


def csum_update(skb: int, csum: int, *_: int) -> int:
    """Only CHECKSUM_COMPLETE packets carry a checksum to update; a test run's never do."""
    return errno_result(ENOTSUPP)


def _words(address: int, size: int) -> list[int]:
    data = ctypes.string_at(address, size) if size else b""
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, size, 4)]


def _protocol(skb: SkbBuffer) -> int:
    """skb->protocol, host order (the native field holds it as the program reads it: __be16)."""
    return swap16(skb.value("protocol"))


def _set_protocol(skb: SkbBuffer, protocol: int) -> None:
    skb.set_value("protocol", swap16(protocol))


def swap16(value: int) -> int:
    """A 16-bit value's bytes swapped: an EtherType as the protocol fields hold it (its big-endian
    bytes read little-endian), and back."""
    return (value & 0xFF) << 8 | (value >> 8) & 0xFF


def _s32(value: int) -> int:
    value &= MASK32
    return value - (1 << 32) if value >> 31 else value


def _gso(skb: SkbBuffer) -> bool:
    """skb_is_gso: a ctx_in gso_size makes the test run's skb a GSO packet (of no GSO type)."""
    return bool(skb.value("gso_size"))


def skb_adjust_room(ctx: int, len_diff: int, mode: int, flags: int, *_: int) -> int:
    """Grow (len_diff > 0) or shrink the room between the mac and network headers (mode MAC) or
    after the network header (mode NET) of an IPv4 or IPv6 packet. Grown bytes are zeroed; the
    encapsulation flags say what was pushed (an outer L3 header changes skb->protocol; a second
    encapsulation fails with -EALREADY) and the decapsulation flags what is left."""
    skb, diff, flags = _skb(ctx), _s32(len_diff), flags & MASK64
    shrink = diff < 0
    protocol = _protocol(skb)
    if flags & ~ROOM_FLAGS:
        return errno_result(EINVAL)
    if abs(diff) > ROOM_DIFF_MAX:
        return errno_result(EFAULT)
    if protocol not in (ETH_P_IP, ETH_P_IPV6):
        return errno_result(ENOTSUPP)
    base_len = IPV4_HLEN if protocol == ETH_P_IP else IPV6_HLEN
    mode &= MASK32
    if mode not in (ADJ_ROOM_NET, ADJ_ROOM_MAC):
        return errno_result(ENOTSUPP)
    offset = skb.network - skb.mac + (base_len if mode == ADJ_ROOM_NET else 0)
    min_len = base_len
    if flags & ROOM_DECAP_L3:
        decap = flags & ROOM_DECAP_L3
        if not shrink or decap == ROOM_DECAP_L3:
            return errno_result(EINVAL)
        min_len = IPV4_HLEN if decap == ROOM_DECAP_L3_IPV4 else IPV6_HLEN
    current = skb.length() - skb.network
    if shrink and (-diff >= current or current + diff < min_len):
        return errno_result(ENOTSUPP)
    if not shrink and skb.length() + diff > SKB_MAX_LEN and not _gso(skb):
        return errno_result(ENOTSUPP)
    return _shrink_room(skb, offset, -diff, flags) if shrink else _grow_room(skb, offset, diff, flags)


def _grow_room(skb: SkbBuffer, offset: int, size: int, flags: int) -> int:
    """bpf_skb_net_grow: size zeroed bytes at offset from data, with the encapsulation's checks."""
    if _gso(skb):
        return errno_result(ENOTSUPP)  # a GSO skb of no type is neither TCP nor UDP GSO
    encap = flags & ROOM_ENCAP_L3
    if encap:
        inner_mac_len = flags >> ROOM_ENCAP_L2_SHIFT
        if (encap == ROOM_ENCAP_L3
                or flags & ROOM_ENCAP_L4_GRE and flags & ROOM_ENCAP_L4_UDP
                or flags & ROOM_ENCAP_L2_ETH and inner_mac_len < ETH_HLEN):
            return errno_result(EINVAL)
        if skb.encapsulation:
            return errno_result(EALREADY)
        if inner_mac_len > size:
            return errno_result(EINVAL)
    skb.cow_head(size, sets_transport=True)
    transport_at_network = skb.transport == skb.network
    skb.push(size)  # bpf_skb_net_hdr_push: the mac and network headers go with data
    if transport_at_network:
        skb.transport = skb.network
    ctypes.memmove(skb.data, skb.data + size, offset)
    ctypes.memset(skb.data + offset, 0, size)
    if encap:
        skb.encapsulation = 1
        _match_protocol(skb, flags & ROOM_ENCAP_L3_IPV6, flags & ROOM_ENCAP_L3_IPV4)
        if flags & (ROOM_ENCAP_L4_GRE | ROOM_ENCAP_L4_UDP):  # after the new outer L3 header
            skb.transport = skb.network - skb.mac + (IPV6_HLEN if flags & ROOM_ENCAP_L3_IPV6 else IPV4_HLEN)
    return 0


def _match_protocol(skb: SkbBuffer, to_ipv6: int, to_ipv4: int) -> None:
    """skb->protocol follows the new outer L3 header an adjust_room flag names."""
    protocol = _protocol(skb)
    if protocol == ETH_P_IP and to_ipv6:
        _set_protocol(skb, ETH_P_IPV6)
    elif protocol == ETH_P_IPV6 and to_ipv4:
        _set_protocol(skb, ETH_P_IP)


def _shrink_room(skb: SkbBuffer, offset: int, size: int, flags: int) -> int:
    """bpf_skb_net_shrink: the size bytes at offset from data go; a decapsulation flag sets
    skb->protocol to the inner header's."""
    if flags & ~ROOM_SHRINK_FLAGS:
        return errno_result(EINVAL)
    if _gso(skb):
        return errno_result(ENOTSUPP)
    if offset + size > skb.length():
        return errno_result(ENOMEM)
    ctypes.memmove(skb.data + size, skb.data, offset)
    transport_at_network = skb.transport == skb.network
    skb.pull(size)  # bpf_skb_net_hdr_pop: the mac and network headers go with data
    if transport_at_network:
        skb.transport = skb.network
    _match_protocol(skb, flags & ROOM_DECAP_L3_IPV6, flags & ROOM_DECAP_L3_IPV4)
    return 0


def skb_change_head(ctx: int, head_room: int, flags: int, *_: int) -> int:
    """Push head_room zeroed bytes in front of the packet: the new mac header, for an L3 packet
    that is given one; the network header stays where it was."""
    skb, head_room = _skb(ctx), head_room & MASK32
    if flags & MASK64 or head_room > INT_MAX or (skb.length() + head_room > SKB_MAX_LEN and not _gso(skb)):
        return errno_result(EINVAL)
    skb.cow_head(head_room)
    skb.push(head_room)
    ctypes.memset(skb.data, 0, head_room)
    skb.network += head_room
    skb.mac = 0
    return 0


def _min_len(skb: SkbBuffer) -> int:
    """__bpf_skb_min_len: the network header's offset, or the transport header's once it is set
    (either only when positive); a test run's skb never has a partial checksum to keep."""
    minimum = max(skb.network, 0)
    if skb.transport != SKB_TRANSPORT_UNSET and skb.transport > 0:
        minimum = skb.transport
    return minimum


def skb_change_tail(ctx: int, new_len: int, flags: int, *_: int) -> int:
    """Trim the packet to new_len bytes, or grow it with zeroes; never below _min_len."""
    skb, new_len = _skb(ctx), new_len & MASK32
    if flags & MASK64 or new_len > SKB_MAX_LEN or new_len < _min_len(skb):
        return errno_result(EINVAL)
    if skb.encapsulation:
        return errno_result(ENOTSUPP)
    length = skb.length()
    if new_len > length:
        skb.put(new_len - length)
    elif new_len < length:
        skb.trim(length - new_len)
    return 0


def _vlan_tag(skb: SkbBuffer) -> tuple[int, int] | None:
    """The skb's accelerated VLAN tag (protocol, tci), if it carries one."""
    return (swap16(skb.value("vlan_proto")), skb.value("vlan_tci")) if skb.value("vlan_present") else None


def _set_vlan_tag(skb: SkbBuffer, tag: tuple[int, int] | None) -> None:
    protocol, tci = tag or (0, 0)
    skb.set_value("vlan_present", int(tag is not None))
    skb.set_value("vlan_proto", swap16(protocol))
    skb.set_value("vlan_tci", tci)


def skb_vlan_push(ctx: int, vlan_proto: int, vlan_tci: int, *_: int) -> int:
    """skb_vlan_push: the tag becomes the skb's accelerated tag (metadata, not packet bytes); a
    tag it already carried goes into the packet first, after the MAC addresses. A protocol other
    than 802.1Q or 802.1ad counts as 802.1Q."""
    skb = _skb(ctx)
    protocol = swap16(vlan_proto & 0xFFFF)
    if protocol not in (ETH_P_8021Q, ETH_P_8021AD):
        protocol = ETH_P_8021Q
    carried = _vlan_tag(skb)
    if carried is not None:
        if skb.mac:
            return errno_result(EINVAL)
        skb.cow_head(VLAN_HLEN)
        skb.push(VLAN_HLEN)
        ctypes.memmove(skb.data, skb.data + VLAN_HLEN, 2 * 6)
        ctypes.memmove(skb.data + 12, struct.pack(">HH", *carried), VLAN_HLEN)
        _set_protocol(skb, carried[0])
    _set_vlan_tag(skb, (protocol, vlan_tci & 0xFFFF))
    return 0


def skb_vlan_pop(ctx: int, *_: int) -> int:
    """skb_vlan_pop: drop the accelerated tag, or with none the outer tag in the packet; then a
    tag left in the packet becomes the accelerated one."""
    skb = _skb(ctx)
    if _vlan_tag(skb) is not None:
        _set_vlan_tag(skb, None)
    elif _protocol(skb) in (ETH_P_8021Q, ETH_P_8021AD):
        popped = _pop_packet_tag(skb)
        if popped < 0:
            return errno_result(-popped)
    if _protocol(skb) not in (ETH_P_8021Q, ETH_P_8021AD):
        return 0
    protocol = _protocol(skb)
    tci = _pop_packet_tag(skb)
    if tci < 0:
        return errno_result(-tci)
    _set_vlan_tag(skb, (protocol, tci))
    return 0


def _pop_packet_tag(skb: SkbBuffer) -> int:
    """__skb_vlan_pop: take the tag after the MAC addresses out of the packet; its TCI, or -errno.
    skb->protocol becomes what the tag encapsulated (vlan_set_encap_proto): its EtherType, or,
    for a length field (below 0x600), 802.3 raw when the next two bytes are 0xffff (IPX), else
    802.2 LLC."""
    if skb.mac:
        return -EINVAL
    if skb.length() < ETH_HLEN + VLAN_HLEN:
        return -ENOMEM
    tci, inner, after = struct.unpack(">HHH", ctypes.string_at(skb.data + ETH_HLEN, VLAN_HLEN + 2))
    if inner < ETH_P_802_3_MIN:
        inner = ETH_P_802_3 if after == 0xFFFF else ETH_P_802_2
    ctypes.memmove(skb.data + VLAN_HLEN, skb.data, 2 * 6)
    skb.pull(VLAN_HLEN)
    skb.network = max(skb.network - VLAN_HLEN, ETH_HLEN)  # it stays in place, but not inside the mac header
    _set_protocol(skb, inner)
    return tci


def skb_set_tunnel_key(ctx: int, key: int, size: int, flags: int, *_: int) -> int:
    """Give the skb a tunnel to be sent through (a metadata dst): the run remembers the key, as
    ip_tunnel_info's fields, for skb_get_tunnel_key."""
    skb, size, flags = _skb(ctx), size & MASK32, flags & MASK64
    helper_args.check(key, size, 2)
    if flags & ~(TUNINFO_IPV6 | ZERO_CSUM_TX | DONT_FRAGMENT | SEQ_NUMBER | NO_TUNNEL_KEY):
        return errno_result(EINVAL)
    if size != TUNNEL_KEY_SIZE and size not in TUNNEL_KEY_COMPAT_SIZES:
        return errno_result(EINVAL)
    given = ctypes.string_at(key, size).ljust(TUNNEL_KEY_SIZE, b"\0")
    tunnel_id, remote, tos, ttl, ext, label, local = BPF_TUNNEL_KEY.unpack(given)
    if ext or (label and not flags & TUNINFO_IPV6):
        return errno_result(EINVAL)
    tunnel_flags = TUNNEL_NOCACHE
    tunnel_flags |= TUNNEL_DONT_FRAGMENT if flags & DONT_FRAGMENT else 0
    tunnel_flags |= 0 if flags & ZERO_CSUM_TX else TUNNEL_CSUM
    tunnel_flags |= TUNNEL_SEQ if flags & SEQ_NUMBER else 0
    tunnel_flags |= 0 if flags & NO_TUNNEL_KEY else TUNNEL_KEY
    if flags & TUNINFO_IPV6:
        label &= IPV6_FLOWLABEL_MASK
    else:
        remote, local = remote[:4].ljust(16, b"\0"), local[:4].ljust(16, b"\0")
    # Kept as the kernel keeps it: destination = the remote end, source = the local one.
    skb.tunnel_key = SKB_TUNNEL_INFO.pack(tunnel_id, tos, ttl, tunnel_flags, label, remote, local,
                                          flags & TUNINFO_IPV6)
    return 0


def skb_get_tunnel_key(ctx: int, to: int, size: int, flags: int, *_: int) -> int:
    """The skb's tunnel key (a test run's skb has one only after skb_set_tunnel_key). As the
    kernel reads a received tunnel's key, remote is the tunnel's source and local its
    destination: a key just set comes back with the two swapped. On failure the buffer is
    zeroed."""
    skb, size, flags = _skb(ctx), size & MASK32, flags & MASK64
    helper_args.check(to, size, 3, write=True)
    error = _tunnel_key_error(skb.tunnel_key, size, flags)
    if error:
        ctypes.memset(to, 0, size)
        return errno_result(error)
    tunnel_id, tos, ttl, tunnel_flags, label, destination, source, ipv6 = SKB_TUNNEL_INFO.unpack(skb.tunnel_key)
    reported_flags = swap16(tunnel_flags) if flags & TUNINFO_FLAGS else 0
    key = BPF_TUNNEL_KEY.pack(tunnel_id, source, tos, ttl, reported_flags, label if ipv6 else 0, destination)
    ctypes.memmove(to, key, min(size, TUNNEL_KEY_SIZE))
    return 0


def _tunnel_key_error(tunnel_key: bytes | None, size: int, flags: int) -> int:
    """Why bpf_skb_get_tunnel_key fails (an errno), or 0."""
    if tunnel_key is None or flags & ~(TUNINFO_IPV6 | TUNINFO_FLAGS):
        return EINVAL
    if bool(tunnel_key[-1]) != bool(flags & TUNINFO_IPV6):
        return EPROTO
    if size == TUNNEL_KEY_SIZE or size in TUNNEL_KEY_COMPAT_SIZES[:3]:
        return 0
    # The oldest layout (remote_ipv4 alone) only for an IPv4 tunnel.
    return 0 if size == TUNNEL_KEY_COMPAT_SIZES[3] and not tunnel_key[-1] else EINVAL


# (helper id, implementation, argument kinds, return kind), as runtime/stdhelpers.py's table; the
# kinds are those of the kernel's bpf_*_proto.
TABLE = [
    (HELPER_IDS["skb_load_bytes"], skb_load_bytes, ("ctx", "any", "uninit_mem", "size"), "integer"),
    (HELPER_IDS["skb_load_bytes_relative"], skb_load_bytes_relative,
     ("ctx", "any", "uninit_mem", "size", "any"), "integer"),
    (HELPER_IDS["skb_store_bytes"], skb_store_bytes, ("ctx", "any", "mem", "size", "any"), "integer"),
    (HELPER_IDS["l3_csum_replace"], l3_csum_replace, ("ctx", "any", "any", "any", "any"), "integer"),
    (HELPER_IDS["l4_csum_replace"], l4_csum_replace, ("ctx", "any", "any", "any", "any"), "integer"),
    (HELPER_IDS["csum_diff"], csum_diff, ("mem", "size_or_zero", "mem", "size_or_zero", "any"), "integer"),
    (HELPER_IDS["csum_update"], csum_update, ("ctx", "any"), "integer"),
    (HELPER_IDS["skb_pull_data"], skb_pull_data, ("ctx", "any"), "integer"),
    (HELPER_IDS["skb_adjust_room"], skb_adjust_room, ("ctx", "any", "any", "any"), "integer"),
    (HELPER_IDS["skb_change_head"], skb_change_head, ("ctx", "any", "any"), "integer"),
    (HELPER_IDS["skb_change_tail"], skb_change_tail, ("ctx", "any", "any"), "integer"),
    (HELPER_IDS["skb_vlan_push"], skb_vlan_push, ("ctx", "any", "any"), "integer"),
    (HELPER_IDS["skb_vlan_pop"], skb_vlan_pop, ("ctx",), "integer"),
    (HELPER_IDS["skb_set_tunnel_key"], skb_set_tunnel_key, ("ctx", "mem", "size", "any"), "integer"),
    (HELPER_IDS["skb_get_tunnel_key"], skb_get_tunnel_key, ("ctx", "uninit_mem", "size", "any"), "integer"),
]
