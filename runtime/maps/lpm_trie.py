"""BPF_MAP_TYPE_LPM_TRIE: longest-prefix match over ``struct bpf_lpm_trie_key`` keys, with the
creation, update, delete and iteration rules of kernel/bpf/lpm_trie.c.

A key is a u32 ``prefixlen`` (host order) and ``key_size - 4`` bytes of data, read most
significant bit first (an IPv4 address in network order, for ``key_size`` 8). A lookup, from a
program or from Python, finds the value of the longest stored prefix that covers the key's first
``prefixlen`` bits; an update or a delete names a prefix exactly. The bits of a key past its
prefix do not matter to matching, but the map keeps the data last written under that prefix and
gives it back when iterating, as the kernel does. Iteration is the kernel's ``get_next_key``
order: a trie's post-order, more specific prefixes before those that cover them, and at a
prefix's first differing bit 0 before 1.

The Python side also takes ``ipaddress`` networks as keys (and addresses, as full-length
prefixes) when the data is 4 or 16 bytes, returns keys as networks, and finds an address's
longest match with :meth:`LpmTrie.lookup_address`. docs/semantics.md#lpm-trie.

Storage, all of it in native memory, shared with the native lookup (jit/native_lpm.py): the
values in a preallocated pool (a program's lookup returns a pointer into it, stable while the
prefix is stored), and the prefixes in a path-compressed binary trie of the kernel's own shape in
a preallocated pool of nodes (runtime/maps/native.py gives the layout). A trie, not a hash table
per stored prefix length searched longest first: a lookup visits about log2(n) nodes whatever
lengths are stored (some 15-20 for 10,000 random IPv4 prefixes; a hash per length would pay one
probe per stored length on a miss: up to 33 for IPv4, 129 for IPv6), updates and deletes touch
one to three nodes, and iteration is a plain post-order walk, since the shape is the kernel's.

Writers are Python (this class, for user space and for the helpers of the reference interpreter
and of program-side updates and deletes) and hold the map lock; around every change of the
trie's shape they make the sequence word odd, then even again. The native lookup walks without
the lock, as the kernel's walks under RCU, and takes the answer only when the word was even and
unchanged around the walk; otherwise it walks again under the lock. A node freed and reused while
a lockless walk stands on it cannot make the walk wander outside the pool (every link a writer
stores names a node of the pool), and the walk gives up after max_prefixlen + 1 steps.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno as E
import ipaddress
from typing import Any, Iterator

from ..memory import Region
from .base import Map
from .native import (EXT_LPM_NODES, EXT_LPM_ROOT, EXT_LPM_SEQ, LPM_NODE_CHILDREN, LPM_NODE_DATA, LPM_NODE_PREFIXLEN,
                     LPM_NODE_VALUE, NativeField)
from .uapi import (BPF_ANY, BPF_EXIST, BPF_F_ACCESS_MASK, BPF_F_NO_PREALLOC, BPF_F_NUMA_NODE, BPF_F_RDONLY_PROG,
                   BPF_NOEXIST, KMALLOC_MAX_SIZE, round_up)

LPM_CREATE_FLAG_MASK = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
LPM_DATA_SIZE_MIN, LPM_DATA_SIZE_MAX = 1, 256
LPM_NODE_SIZE = 24  # sizeof(struct lpm_trie_node) on x86-64: two child pointers, prefixlen, flags
LPM_VALUE_SIZE_MAX = KMALLOC_MAX_SIZE - LPM_DATA_SIZE_MAX - LPM_NODE_SIZE

#: A link to a node: (parent node, which child), or None for the root.
Link = tuple[int, int] | None


class _Slots:
    """Numbers first .. end - 1 handed out and taken back: the most recently released first, then
    the lowest never used (so a large map's bookkeeping grows with its use, not its size)."""

    def __init__(self, first: int, end: int):
        self.first, self.end = first, end
        self.reset()

    def reset(self) -> None:
        self._released: list[int] = []
        self._unused = self.first

    def take(self) -> int:
        if self._released:
            return self._released.pop()
        assert self._unused < self.end
        self._unused += 1
        return self._unused - 1

    def release(self, number: int) -> None:
        self._released.append(number)


class LpmTrie(Map):
    """BPF_MAP_TYPE_LPM_TRIE (see the module docstring)."""

    type_name = "lpm_trie"
    _sequence = NativeField(EXT_LPM_SEQ, ctypes.c_uint32)
    _root_link = NativeField(EXT_LPM_ROOT, ctypes.c_uint64)

    def _validate(self) -> None:
        if self.max_entries == 0:
            raise self._err("max_entries must be at least 1", E.EINVAL)
        if not self.map_flags & BPF_F_NO_PREALLOC:
            raise self._err("LPM tries must be created with BPF_F_NO_PREALLOC", E.EINVAL)
        self._check_flags(LPM_CREATE_FLAG_MASK)
        if not 4 + LPM_DATA_SIZE_MIN <= self.key_size <= 4 + LPM_DATA_SIZE_MAX:
            raise self._err(f"key_size must be {4 + LPM_DATA_SIZE_MIN} to {4 + LPM_DATA_SIZE_MAX} (a u32 prefix "
                            f"length and 1 to {LPM_DATA_SIZE_MAX} bytes of data), got {self.key_size}", E.EINVAL)
        if not 1 <= self.value_size <= LPM_VALUE_SIZE_MAX:
            raise self._err(f"value_size must be 1 to {LPM_VALUE_SIZE_MAX}, got {self.value_size}", E.EINVAL)
        self.data_size = self.key_size - 4
        self.max_prefixlen = 8 * self.data_size

    def _allocate(self) -> None:
        self.elem_stride = round_up(self.value_size, 8)
        self._values = self._alloc(self.elem_stride * self.max_entries, "the value pool", self)
        self.value_base = self._values.address
        self._value_slots = _Slots(0, self.max_entries)
        # Each prefix has a node, and each intermediate node joins two subtrees holding a prefix;
        # node 0 is never used, so that a link's offset 0 means no node.
        self.node_stride = LPM_NODE_DATA + round_up(self.data_size, 8)
        end = 2 * self.max_entries
        self._nodes = self._alloc(self.node_stride * end, "the trie's nodes", self)
        self._node_slots = _Slots(1, end)
        raw = (ctypes.c_uint8 * (self.node_stride * end)).from_address(self._nodes.address)
        self._node_bytes = memoryview(raw).cast("B")
        self._node_words = self._node_bytes.cast("I")
        self._node_links = self._node_bytes.cast("Q")
        ctypes.c_uint64.from_address(self.native + EXT_LPM_NODES).value = self._nodes.address
        self._count = 0

    def _storage_regions(self) -> list[Region]:
        writable = not self.map_flags & BPF_F_RDONLY_PROG
        return [Region(self.value_base, self.elem_stride * self.max_entries, writable, f"map {self.name} values")]

    # -- nodes (the caller holds the lock); None is no node --

    def _word(self, node: int, offset: int) -> int:
        return self._node_words[(node * self.node_stride + offset) // 4]

    def _set_word(self, node: int, offset: int, value: int) -> None:
        self._node_words[(node * self.node_stride + offset) // 4] = value

    def _prefixlen(self, node: int) -> int:
        return self._word(node, LPM_NODE_PREFIXLEN)

    def _value_slot(self, node: int) -> int | None:
        """The node's value slot; None for an intermediate node."""
        stored = self._word(node, LPM_NODE_VALUE)
        return stored - 1 if stored else None

    def _data_span(self, node: int) -> slice:
        start = node * self.node_stride + LPM_NODE_DATA
        return slice(start, start + self.data_size)

    def _node_data(self, node: int) -> bytes:
        return bytes(self._node_bytes[self._data_span(node)])

    def _node_bits(self, node: int) -> int:
        return int.from_bytes(self._node_bytes[self._data_span(node)], "big")

    def _encode_link(self, node: int | None) -> int:
        return 0 if node is None else self._prefixlen(node) << 32 | node * self.node_stride

    def _decode_link(self, link: int) -> int | None:
        offset = link & 0xFFFFFFFF
        return offset // self.node_stride if offset else None

    def _child(self, node: int, bit: int) -> int | None:
        return self._decode_link(self._node_links[(node * self.node_stride + LPM_NODE_CHILDREN) // 8 + bit])

    def _root(self) -> int | None:
        return self._decode_link(self._root_link)

    def _link_to(self, link: Link, target: int | None) -> None:
        """Point the root or a node's child at `target`."""
        if link is None:
            self._root_link = self._encode_link(target)
        else:
            parent, bit = link
            self._node_links[(parent * self.node_stride + LPM_NODE_CHILDREN) // 8 + bit] = self._encode_link(target)

    def _new_node(self, prefixlen: int, data: bytes, slot: int | None) -> int:
        """A node, written whole before any link reaches it."""
        node = self._node_slots.take()
        self._set_word(node, LPM_NODE_PREFIXLEN, prefixlen)
        self._set_word(node, LPM_NODE_VALUE, 0 if slot is None else slot + 1)
        for bit in (0, 1):
            self._link_to((node, bit), None)
        self._node_bytes[self._data_span(node)] = data
        return node

    @contextlib.contextmanager
    def _reshaping(self) -> Iterator[None]:
        """A change of the trie's shape: the sequence word is odd meanwhile, so lockless lookups
        that overlap it walk again under the lock (the caller holds it)."""
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        try:
            yield
        finally:
            self._sequence = (self._sequence + 1) & 0xFFFFFFFF

    # -- keys --

    def _parse(self, key: bytes) -> tuple[int, int]:
        """(prefixlen, the data as an int, most significant bit first) of a raw key; prefixlen
        may exceed max_prefixlen (callers decide)."""
        return int.from_bytes(key[:4], "little"), int.from_bytes(key[4:4 + self.data_size], "big")

    def _bit(self, data: int, index: int) -> int:
        """Bit `index` of the data, 0 being the most significant (the kernel's extract_bit)."""
        return (data >> (self.max_prefixlen - 1 - index)) & 1

    def _common(self, a: int, b: int) -> int:
        """How many leading bits two data ints share."""
        return self.max_prefixlen - (a ^ b).bit_length()

    def _find(self, key: bytes) -> int | None:
        """The node of the longest stored prefix covering the key (the kernel's
        trie_lookup_elem; the native lookup walks the same way)."""
        prefixlen, data = self._parse(key)
        limit = min(prefixlen, self.max_prefixlen)
        found, node = None, self._root()
        while node is not None:
            length = self._prefixlen(node)
            if length > limit or self._common(self._node_bits(node), data) < length:
                break
            if self._value_slot(node) is not None:
                found = node
            if length == self.max_prefixlen:
                break
            node = self._child(node, self._bit(data, length))
        return found

    def _descend(self, prefixlen: int, data: int) -> tuple[list[Link], int | None, int]:
        """The kernel's walk towards an exact prefix (trie_update_elem, trie_delete_elem): the links
        followed (the root's first, the last one to the node where the walk stopped), that node
        (None: the walk fell off the trie), and how many leading bits it shares with the key."""
        links: list[Link] = [None]
        node, shared = self._root(), 0
        while node is not None:
            length = self._prefixlen(node)
            shared = min(self._common(self._node_bits(node), data), length, prefixlen)
            if length != shared or length == prefixlen:
                return links, node, shared
            links.append((node, self._bit(data, length)))
            node = self._child(*links[-1])
        return links, None, shared

    def _value_at(self, node: int) -> int:
        """The address of a prefix's value."""
        return self.value_base + self._value_slot(node) * self.elem_stride

    # -- kernel side --

    def lookup(self, key: bytes, cpu: int = 0) -> int:
        with self._lock:
            node = self._find(bytes(key))
            return self._value_at(node) if node is not None else 0

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return self._store(bytes(key), self._fit(value), flags)

    def delete(self, key: bytes) -> int:
        prefixlen, data = self._parse(bytes(key))
        if prefixlen > self.max_prefixlen:
            return -E.EINVAL
        with self._lock:
            links, node, shared = self._descend(prefixlen, data)
            if node is None or shared != prefixlen or self._prefixlen(node) != prefixlen \
                    or self._value_slot(node) is None:
                return -E.ENOENT
            self._value_slots.release(self._value_slot(node))
            self._count -= 1
            with self._reshaping():
                self._unlink(links, node)
        return 0

    def _unlink(self, links: list[Link], node: int) -> None:
        """Take a prefix's node out of the trie as the kernel's trie_delete_elem does: a node with
        two children stays as an intermediate one; a leaf under an intermediate parent takes the
        parent with it (the sibling moves up); any other node gives way to its child."""
        children = self._child(node, 0), self._child(node, 1)
        if None not in children:
            self._set_word(node, LPM_NODE_VALUE, 0)
            return
        parent_link = links[-1]
        if parent_link is not None and children == (None, None) and self._value_slot(parent_link[0]) is None:
            parent, side = parent_link
            self._link_to(links[-2], self._child(parent, 1 - side))
            self._node_slots.release(parent)
        else:
            self._link_to(parent_link, children[0] if children[0] is not None else children[1])
        self._node_slots.release(node)

    def _store(self, key: bytes, value: bytes, flags: int) -> int:
        """An exact-prefix update (the kernel's trie_update_elem): replaces the value (and the stored
        data) of a stored prefix in place, or adds a node for it."""
        if flags > BPF_EXIST:
            return -E.EINVAL
        prefixlen, bits = self._parse(key)
        if prefixlen > self.max_prefixlen:
            return -E.EINVAL
        data = key[4:4 + self.data_size]
        with self._lock:
            links, node, shared = self._descend(prefixlen, bits)
            exact = node is not None and shared == prefixlen == self._prefixlen(node)
            if exact and self._value_slot(node) is not None:
                if flags == BPF_NOEXIST:
                    return -E.EEXIST
                self._write_value(self._value_at(node), value, False)
                self._node_bytes[self._data_span(node)] = data  # bits past the prefix: no match changes
                return 0
            if flags == BPF_EXIST:
                return -E.ENOENT
            if self._count == self.max_entries:
                return -E.ENOSPC
            slot = self._value_slots.take()
            self._write_value(self.value_base + slot * self.elem_stride, value, True)
            self._count += 1
            with self._reshaping():
                if exact:  # an intermediate node takes the prefix
                    self._node_bytes[self._data_span(node)] = data
                    self._set_word(node, LPM_NODE_VALUE, slot + 1)
                else:
                    self._link_to(links[-1], self._insert(node, shared, prefixlen, bits, data, slot))
        return 0

    def _insert(self, node: int | None, shared: int, prefixlen: int, bits: int, data: bytes, slot: int) -> int:
        """The subtree that takes the place of `node` (where the walk for a new prefix stopped) with
        the prefix added: the new node alone, the new node above `node` (it covers it), or an
        intermediate node at their first differing bit with both below."""
        new = self._new_node(prefixlen, data, slot)
        if node is None:
            return new
        if shared == prefixlen:
            self._link_to((new, self._bit(self._node_bits(node), shared)), node)
            return new
        joint = self._new_node(shared, self._node_data(node), None)
        new_side = self._bit(bits, shared)
        self._link_to((joint, new_side), new)
        self._link_to((joint, 1 - new_side), node)
        return joint

    # -- Python side --

    def _encode_key(self, key: Any) -> bytes:
        if isinstance(key, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            key = ipaddress.ip_network(key)
        if isinstance(key, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            if key.max_prefixlen != self.max_prefixlen:
                raise self._err(f"key {key} has {key.max_prefixlen}-bit addresses, the map's data is "
                                f"{self.max_prefixlen} bits", E.EINVAL)
            return key.prefixlen.to_bytes(4, "little") + key.network_address.packed
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], int):
            prefixlen, data = key
            if isinstance(data, int):
                data = data.to_bytes(self.data_size, "big")
            return self._encode(prefixlen.to_bytes(4, "little") + bytes(data), self.key_size, 0, "key")
        return super()._encode_key(key)

    def _decode_key(self, data: bytes) -> Any:
        if self.data_size in (4, 16):
            prefixlen = int.from_bytes(data[:4], "little")
            return ipaddress.ip_network((data[4:], prefixlen), strict=False)
        return super()._decode_key(data)

    def _raw_keys(self) -> list[bytes]:
        """Every stored prefix's key in get_next_key order: the trie in post-order, 0 before 1."""
        keys: list[bytes] = []
        with self._lock:
            pending = [(self._root(), False)]  # (node, its children already listed)
            while pending:
                node, expanded = pending.pop()
                if node is None:
                    continue
                if expanded:
                    if self._value_slot(node) is not None:
                        keys.append(self._prefixlen(node).to_bytes(4, "little") + self._node_data(node))
                    continue
                pending += [(node, True), (self._child(node, 1), False), (self._child(node, 0), False)]
        return keys

    def _raw_read(self, key: bytes) -> bytes | None:
        with self._lock:
            node = self._find(key)
            return self._read_value(self._value_at(node)) if node is not None else None

    def _raw_write(self, key: bytes, data: bytes | list[bytes], flags: int) -> int:
        assert isinstance(data, bytes)
        return self._store(key, data, flags)

    def _raw_delete(self, key: bytes) -> int:
        return self.delete(key)

    def _raw_clear(self) -> None:
        with self._lock, self._reshaping():
            self._root_link = 0
            self._value_slots.reset()
            self._node_slots.reset()
            self._count = 0

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def lookup_address(self, address: Any) -> Any:
        """The value of the longest stored prefix that covers ``address`` (an ``ipaddress``
        address, or its string); KeyError when none does."""
        found = self.match(address)
        if found is None:
            raise KeyError(address)
        return found[1]

    def match(self, address: Any) -> tuple[Any, Any] | None:
        """(the longest stored prefix covering ``address``, its value), or None."""
        if isinstance(address, str):
            address = ipaddress.ip_address(address)
        key = self._encode_key(address if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address))
                               else (self.max_prefixlen, address))
        self._check_user_read()
        with self._lock:
            node = self._find(key)
            if node is None:
                return None
            stored = self._prefixlen(node).to_bytes(4, "little") + self._node_data(node)
            value = self._read_value(self._value_at(node))
        return self._decode_key(stored), self._decode_value(value)
