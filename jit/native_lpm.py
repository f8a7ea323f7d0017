"""LLVM IR of the native ``bpf_map_lookup_elem`` on an LPM trie: a walk of the binary trie that
runtime/maps/lpm_trie.py keeps in native memory (runtime/maps/native.py gives the layout), the
same walk as its ``_find`` and the kernel's trie_lookup_elem, so a program's lookup enters no
Python.

The walk takes no lock, as the kernel's walks under RCU: it reads the trie's sequence word
before and after, and keeps its answer only when the word was even (no writer reshaping the
trie) and unchanged; otherwise, or when a walk torn by a writer runs past max_prefixlen + 1
nodes, it walks again under the map lock, which every writer holds.

The key's data is first copied into a zero-padded buffer of whole words, so no load reads past
the key the program gave. Data of up to 8 bytes (IPv4) then lives in one register: a node
matches when the key shares at least its prefix length of leading bits with it (one xor and one
ctlz), and a full-length node, which has no children, ends the walk by itself. Longer data is
compared 8 bytes at a time, the last word under a mask.

This IR goes into the native map helpers' module (jit/native_maps.py, whose lookup dispatches
LPM tries here) and uses that module's small functions (``@u32_at``, ``@u64_at``, ``@lock``,
``@unlock``) and its declaration of ``llvm.memcpy``.
"""
from __future__ import annotations

from bpfjit.runtime.maps import HEADER_SIZE
from bpfjit.runtime.maps import native as layout

SEQ = HEADER_SIZE + layout.EXT_LPM_SEQ
ROOT = HEADER_SIZE + layout.EXT_LPM_ROOT
NODES = HEADER_SIZE + layout.EXT_LPM_NODES
KEY_WORDS = 32  # 8-byte words of the longest key data (256 bytes)

#: The function native_maps' lookup calls: (ptr header, ptr key) -> the value's address, or 0.
LOOKUP = "lpm_lookup"

# How a walk matches node %np's first %pl bits against the key and picks the child at bit %pl:
# with the data in one register %kw (most significant bit first) when it fits in 8 bytes, word
# by word from the buffer %kb otherwise.
_ONE_WORD = {"prelude": """
  %k0 = load i64, ptr %kb
  %kw = call i64 @llvm.bswap.i64(i64 %k0)""", "match": f"""
match:
  %dp = getelementptr i8, ptr %np, i64 {layout.LPM_NODE_DATA}
  %d = load i64, ptr %dp
  %dbe = call i64 @llvm.bswap.i64(i64 %d)
  %differ = xor i64 %dbe, %kw
  %shared = call i64 @llvm.ctlz.i64(i64 %differ, i1 false)
  %covers = icmp uge i64 %shared, %pl64
  br i1 %covers, label %matched, label %out""", "last": """
  br label %descend""", "bit": """
  %position_any = sub i64 63, %pl64
  %position = and i64 %position_any, 63  ; 63 - 64 for a full 64-bit prefix, which has no children
  %shifted = lshr i64 %kw, %position
  %bit = and i64 %shifted, 1"""}

_WORDS = {"prelude": "", "match": f"""
match:
  %nd = getelementptr i8, ptr %np, i64 {layout.LPM_NODE_DATA}
  %rounded = add i64 %pl64, 63
  %words = lshr i64 %rounded, 6
  br label %word
word:
  %i = phi i64 [ 0, %match ], [ %i1, %compare ]
  %more = icmp ult i64 %i, %words
  br i1 %more, label %compare, label %matched
compare:
  %ap = getelementptr i64, ptr %nd, i64 %i
  %a = load i64, ptr %ap
  %bp = getelementptr i64, ptr %kb, i64 %i
  %b = load i64, ptr %bp
  %differ = xor i64 %a, %b
  %i1 = add i64 %i, 1
  %done_bits = shl i64 %i, 6
  %bits = sub i64 %pl64, %done_bits
  %whole = icmp uge i64 %bits, 64
  %unmasked = sub i64 64, %bits
  %high = shl i64 -1, %unmasked
  %mask_be = select i1 %whole, i64 -1, i64 %high
  %mask = call i64 @llvm.bswap.i64(i64 %mask_be)  ; the word's first %bits bits in memory order
  %outside = and i64 %differ, %mask
  %covers = icmp eq i64 %outside, 0
  br i1 %covers, label %word, label %out""", "last": """
  %last = icmp uge i32 %pl, %maxlen
  br i1 %last, label %longest, label %descend
longest:
  ret i64 %found2""", "bit": """
  %byte_index = lshr i64 %pl64, 3
  %bytep = getelementptr i8, ptr %kb, i64 %byte_index
  %byte = load i8, ptr %bytep
  %byte64 = zext i8 %byte to i64
  %in_byte = and i64 %pl64, 7
  %shift = sub i64 7, %in_byte
  %shifted = lshr i64 %byte64, %shift
  %bit = and i64 %shifted, 1"""}


def _walk(name: str, parts: dict[str, str]) -> str:
    """A walk from the root: the node of the longest stored prefix covering the key whose data,
    zero-padded to whole words, is at %kb and whose prefix length, capped at %maxlen, is %limit, or
    0; -1 when it ran past %maxlen + 1 nodes (a writer reshaped the trie under it). Each link gives
    the next node's offset and prefix length at once, so the only load between one node and the
    next is that link's; the rest of a node's work is kept short, as it bounds the walk's speed."""
    return f"""
define internal i64 @{name}(ptr %h, ptr %kb, i32 %limit, i32 %maxlen) {{
entry:
  %nodes = call i64 @u64_at(ptr %h, i64 {NODES})
  %root = call i64 @u64_at(ptr %h, i64 {ROOT}){parts["prelude"]}
  br label %visit
visit:
  %link = phi i64 [ %root, %entry ], [ %next, %descend ]
  %found = phi i64 [ 0, %entry ], [ %found2, %descend ]
  %steps = phi i32 [ 0, %entry ], [ %steps1, %descend ]
  %offset = and i64 %link, 4294967295
  %end = icmp eq i64 %offset, 0
  br i1 %end, label %out, label %bounded
bounded:
  %runaway = icmp ugt i32 %steps, %maxlen
  br i1 %runaway, label %torn, label %node
node:
  %pl64 = lshr i64 %link, 32
  %pl = trunc i64 %pl64 to i32
  %address = add i64 %nodes, %offset
  %np = inttoptr i64 %address to ptr
  %too_long = icmp ugt i32 %pl, %limit
  br i1 %too_long, label %out, label %match
{parts["match"]}
matched:
  %vsp = getelementptr i8, ptr %np, i64 {layout.LPM_NODE_VALUE}
  %vs = load i32, ptr %vsp
  %real = icmp ne i32 %vs, 0
  %found2 = select i1 %real, i64 %address, i64 %found{parts["last"]}
descend:{parts["bit"]}
  %childp = getelementptr i64, ptr %np, i64 %bit
  %next = load i64, ptr %childp
  %steps1 = add i32 %steps, 1
  br label %visit
out:
  ret i64 %found
torn:
  ret i64 -1
}}
"""


_DECLARATIONS = """
declare i64 @llvm.bswap.i64(i64)
declare i64 @llvm.ctlz.i64(i64, i1)
"""

MODULE_IR = _DECLARATIONS + _walk("lpm_walk_word", _ONE_WORD) + _walk("lpm_walk_words", _WORDS) + f"""
define internal i64 @lpm_walk(ptr %h, ptr %kb, i32 %limit, i32 %maxlen) alwaysinline {{
entry:
  %small = icmp ule i32 %maxlen, 64
  br i1 %small, label %one, label %many
one:
  %r1 = call i64 @lpm_walk_word(ptr %h, ptr %kb, i32 %limit, i32 %maxlen)
  ret i64 %r1
many:
  %r2 = call i64 @lpm_walk_words(ptr %h, ptr %kb, i32 %limit, i32 %maxlen)
  ret i64 %r2
}}

; The address of the value of a node the walk found (0: none).
define internal i64 @lpm_value(ptr %h, i64 %node) alwaysinline {{
entry:
  %none = icmp eq i64 %node, 0
  br i1 %none, label %nothing, label %value
nothing:
  ret i64 0
value:
  %np = inttoptr i64 %node to ptr
  %vsp = getelementptr i8, ptr %np, i64 {layout.LPM_NODE_VALUE}
  %vs = load i32, ptr %vsp
  %slot32 = sub i32 %vs, 1
  %slot = zext i32 %slot32 to i64
  %es32 = call i32 @u32_at(ptr %h, i64 {layout.HEADER_ELEM_STRIDE})
  %es = zext i32 %es32 to i64
  %offset = mul i64 %slot, %es
  %vb = call i64 @u64_at(ptr %h, i64 {layout.HEADER_VALUE_BASE})
  %address = add i64 %vb, %offset
  ret i64 %address
}}

define internal i64 @{LOOKUP}(ptr %h, ptr %key) {{
entry:
  %kb = alloca [{KEY_WORDS} x i64], align 8
  %ks = call i32 @u32_at(ptr %h, i64 {layout.HEADER_KEY_SIZE})
  %ds32 = sub i32 %ks, 4
  %ds = zext i32 %ds32 to i64
  %data = getelementptr i8, ptr %key, i64 4
  %v4 = icmp eq i32 %ds32, 4
  br i1 %v4, label %copy4, label %copy_any
copy4:
  %w = load i32, ptr %data, align 1
  %w64 = zext i32 %w to i64
  store i64 %w64, ptr %kb
  br label %copied
copy_any:
  %rounded = add i64 %ds, 7
  %nwords = lshr i64 %rounded, 3
  %last_word = sub i64 %nwords, 1
  %lastp = getelementptr i64, ptr %kb, i64 %last_word
  store i64 0, ptr %lastp
  call void @llvm.memcpy.p0.p0.i64(ptr %kb, ptr %data, i64 %ds, i1 false)
  br label %copied
copied:
  %maxlen = shl i32 %ds32, 3
  %plen = load i32, ptr %key, align 1
  %shorter = icmp ult i32 %plen, %maxlen
  %limit = select i1 %shorter, i32 %plen, i32 %maxlen
  %seqp = getelementptr i8, ptr %h, i64 {SEQ}
  %before = load atomic i32, ptr %seqp acquire, align 4
  %odd = and i32 %before, 1
  %writing = icmp ne i32 %odd, 0
  br i1 %writing, label %locked, label %lockless
lockless:
  %r = call i64 @lpm_walk(ptr %h, ptr %kb, i32 %limit, i32 %maxlen)
  %torn = icmp eq i64 %r, -1
  br i1 %torn, label %locked, label %check
check:
  %value = call i64 @lpm_value(ptr %h, i64 %r)  ; inside the window the sequence word checks
  fence acquire
  %after = load atomic i32, ptr %seqp monotonic, align 4
  %unchanged = icmp eq i32 %before, %after
  br i1 %unchanged, label %done, label %locked
done:
  ret i64 %value
locked:
  call void @lock(ptr %h)
  %rl = call i64 @lpm_walk(ptr %h, ptr %kb, i32 %limit, i32 %maxlen)
  call void @unlock(ptr %h)
  %broken = icmp eq i64 %rl, -1  ; only a trie corrupted outside the map's methods: no match
  %rs = select i1 %broken, i64 0, i64 %rl
  %value_locked = call i64 @lpm_value(ptr %h, i64 %rs)
  ret i64 %value_locked
}}
"""
