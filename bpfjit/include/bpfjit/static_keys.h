/* SPDX-License-Identifier: MIT */
/*
 * bpfjit static keys for BPF C programs (clang -O2 -target bpf).
 *
 *     #include <bpfjit/static_keys.h>
 *
 *     DEFINE_STATIC_KEY(debug);
 *
 *     if (bpf_static_branch_unlikely(&debug))    // 1 iff debug is enabled
 *         trace_something();
 *     if (bpf_static_branch_likely(&debug))      // also 1 iff debug is enabled
 *         fast_thing();
 *
 * Every key starts DISABLED when the object is loaded; the runtime enables and disables keys
 * (bpfjit patches the jitted code in place, with no recompilation and no load in the hot path).
 * Both macros are true iff the key is enabled; "likely"/"unlikely" only choose which side of the
 * branch is laid out inline (the fall-through) and which one is reached by the jump.
 *
 * The convention (bpfjit's own; upstream Linux has no static keys for BPF;
 * see docs/semantics.md#static-branches)
 * --------------------------------------------------------------------------------------------
 * Key.  A key is a global variable; its symbol names the key.  DEFINE_STATIC_KEY(name) defines
 *   `__u32 name` in section ".data.static_keys" (8-aligned, zero).  Its value is not used by
 *   programs or by the macros; only its address (symbol) matters.  Define keys at file scope and
 *   NOT `static`: a `static` key would be relocated against the section symbol instead of its own
 *   symbol (see "Relocations" below).
 *
 * Site.  Each use of a macro emits, through `asm goto`, exactly one ordinary JA instruction
 *   (`goto %l[l_yes]`, opcode 0x05, src_reg 0, `off` = the jump target) labelled `1:`, and appends
 *   one record to section ".static_keys" (flags "aw", 8-aligned, 16 bytes, no padding between
 *   records):
 *
 *       offset 0   u32  byte offset of the JA in its code section           (.long 1b)
 *       offset 4   u32  byte offset of the jump target (l_yes) in that section (.long %l[l_yes])
 *       offset 8   u64  key reference: key address + flags                   (.quad key + LIKELY)
 *                       bit 0 = 1 for a "likely" site, 0 for an "unlikely" site
 *
 *   The loader resolves the record's relocations and rewrites each JA in place:
 *       unlikely site -> nop_or_goto (src_reg 3): falls through while the key is disabled, jumps
 *                        to l_yes while it is enabled.  The macro yields 0 on fall-through, 1 at
 *                        l_yes.
 *       likely site   -> goto_or_nop (src_reg 1): jumps to l_yes while the key is disabled, falls
 *                        through while it is enabled.  The macro yields 1 on fall-through, 0 at
 *                        l_yes (i.e. !reached(l_yes)).
 *   In short: a site jumps iff (key enabled) XOR (site is likely), and both macros are true iff
 *   the key is enabled.  `off` always holds the jump target, whatever the state.
 *
 *   A site may be duplicated (clang unrolling a loop, or inlining an always_inline function, copies
 *   the whole asm and therefore also its record: `1:` is a local numeric label); a site in a .text
 *   subprogram belongs to every program that calls that subprogram.
 *
 * Relocations (what clang-19 -O2 -g -target bpf really emits, checked with llvm-readelf-19 -r;
 * BPF objects use REL, so every addend is the value already stored in the record word):
 *
 *   record+0  (.long 1b)         R_BPF_64_NODYLD32 (type 4) against the code SECTION symbol
 *                                (e.g. "xdp", ".text"); stored addend = byte offset of the JA in
 *                                that section.  (`1b` is an assembler-temporary label, and LLVM's
 *                                BPF writer gives FK_Data_4 fixups against temporary labels in
 *                                executable sections NODYLD32, as it does for .BTF.ext.)
 *   record+4  (.long %l[l_yes])  R_BPF_64_ABS32 (type 3) against the same code SECTION symbol;
 *                                stored addend = byte offset of the target in that section.
 *                                (The basic-block label LBBn_m is not a temporary symbol, hence
 *                                ABS32 rather than NODYLD32.)
 *   record+8  (.quad key + L)    R_BPF_64_ABS64 (type 2) against the key's own symbol (GLOBAL
 *                                OBJECT in .data.static_keys); stored addend = L = 0 (unlikely)
 *                                or 1 (likely).  Note that the addend does NOT include the
 *                                symbol's st_value (a key at offset 8 of its section still stores
 *                                0 or 1).  For a `static` key clang relocates against the
 *                                SECTION symbol of .data.static_keys instead, with stored addend
 *                                = the key's offset in its section + L; the loader can map that
 *                                back to the key's (LOCAL OBJECT) symbol by offset.
 *
 *   So: JA offset = record word 0 (+ section symbol value, 0), target = record word 1, key =
 *   symbol of the ABS64 relocation at record+8, likely = record word 2 & 1.  Insn index of the
 *   JA in its section = word0 / 8; the JA's `off` field already equals (word1 - word0) / 8 - 1.
 */
#ifndef BPFJIT_STATIC_KEYS_H
#define BPFJIT_STATIC_KEYS_H

#include <linux/types.h>

/* Define a key (initially disabled).  Use at file scope, without `static`. */
#define DEFINE_STATIC_KEY(name) \
	__attribute__((section(".data.static_keys"), aligned(8), used)) __u32 name

/* Refer to a key defined in another compilation unit. */
#define DECLARE_STATIC_KEY(name) extern __u32 name

/* One site: a labelled JA to l_yes plus its .static_keys record.  `likely_bit` is 0 or 1. */
#define __bpfjit_static_branch_asm(key, likely_bit, l_yes)                              \
	asm goto("1: goto %l[" #l_yes "]\n\t"                                          \
		 ".pushsection .static_keys, \"aw\"\n\t"                               \
		 ".balign 8\n\t"                                                       \
		 ".long 1b\n\t"                                                        \
		 ".long %l[" #l_yes "]\n\t"                                            \
		 ".quad %c0 + " #likely_bit "\n\t"                                     \
		 ".popsection\n\t"                                                     \
		 : : "i"(key) : : l_yes)

/* The branch itself: the fall-through yields `likely`, the jump to l_yes yields !likely. */
#define __bpfjit_static_branch(key, likely) __extension__({                             \
	__label__ __bpfjit_sk_yes, __bpfjit_sk_out;                                    \
	int __bpfjit_sk_r;                                                             \
	__bpfjit_static_branch_asm(key, likely, __bpfjit_sk_yes);                      \
	__bpfjit_sk_r = (likely);                                                      \
	goto __bpfjit_sk_out;                                                          \
__bpfjit_sk_yes:                                                                       \
	__bpfjit_sk_r = !(likely);                                                     \
__bpfjit_sk_out:                                                                       \
	__builtin_expect(__bpfjit_sk_r, (likely));                                     \
})

/* True iff *key is enabled.  Site = nop_or_goto: fall-through (0) while disabled. */
#define bpf_static_branch_unlikely(key) __bpfjit_static_branch(key, 0)

/* True iff *key is enabled.  Site = goto_or_nop: jumps to l_yes (0) while disabled, falls
 * through (1) once enabled. */
#define bpf_static_branch_likely(key) __bpfjit_static_branch(key, 1)

#endif /* BPFJIT_STATIC_KEYS_H */
