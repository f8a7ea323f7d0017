// SPDX-License-Identifier: MIT
/* The target types tests/progs/core_reloc.o is relocated against (bpfjit.load(btf="core_target.o")):
 * the same type names as core_reloc.c, laid out as another kernel might have them -- fields
 * moved, resized, renamed or gone, bitfields of other widths, enumerators of other values. Only
 * its .BTF is used; the variables below are there to put the types in it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner {
	unsigned int y;
	unsigned int pad;
	unsigned int x;
};

struct sample {
	long long d;		/* was at 8 */
	unsigned int b;		/* was an unsigned short at 4: loads widen */
	int a;			/* was at 0 */
	/* c is gone */
	unsigned int arr[6];	/* was 4 elements at 20 */
	unsigned int pad: 3;
	int sgn: 5;		/* was 6 bits wide */
	unsigned int lo: 7;	/* was 4 bits wide */
	struct inner in;
	int narrow;		/* was a short: signed, so no load can be resized to read it */
};

struct pair {
	long first;
	int second;
};

enum color { RED = 10, GREEN = 20, BLUE = 40 };
enum wide { HUGE = 0x200000000ULL };

struct sample sample_v;
struct pair pair_v;
enum color color_v;
enum wide wide_v;
struct __sk_buff skb_v;

/* A program, as every object in this directory has (the tests disassemble them all). */
SEC("xdp")
int target_sizes(struct xdp_md *ctx)
{
	return sizeof(sample_v) + sizeof(pair_v);
}

char LICENSE[] SEC("license") = "GPL";
