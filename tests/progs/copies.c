// SPDX-License-Identifier: MIT
/*
 * memcpy as clang writes it for BPF, three ways (tests/test_copies.py): the packet's source MAC
 * into .bss (byte pairs whose destination is an ld_imm64 address; the ld_imm64 itself sits
 * after the first load, so the run the JIT copies in one go is the other five bytes), a .data
 * array into the packet (all loads first, then the stores: not pairs), and a const volatile
 * .rodata array into the packet (clang writes its initial bytes as immediates).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static const volatile unsigned char gateway[6] = {0x02, 0, 0, 0, 0, 0xfe};	/* .rodata */
unsigned char router[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};		/* .data */
unsigned char last_source[6];							/* .bss */

SEC("xdp") int rewrite(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	if (data + 14 > (unsigned char *)(long)ctx->data_end)
		return XDP_DROP;
	__builtin_memcpy(last_source, data + 6, 6);
	__builtin_memcpy(data + 6, router, 6);
	__builtin_memcpy(data, (const unsigned char *)gateway, 6);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
