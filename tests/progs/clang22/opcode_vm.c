/* A tiny bytecode VM over the packet, the kind of opcode dispatcher clang compiles to jump tables
 * (clang-22 -mcpu=v4: .jumptables and gotox).
 *
 * The packet is a program of two-byte instructions, an opcode and an operand. The VM runs at
 * most MAX_STEPS of them on a 64-bit accumulator; HALT (or the packet's end) stops it. The
 * accumulator is left in `result`; the number of instructions run in `executed`. An unknown
 * opcode drops the packet; otherwise it passes.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_STEPS 32

enum { OP_HALT, OP_LOAD, OP_ADD, OP_SUB, OP_MUL, OP_XOR, OP_SHL, OP_SHR, OP_AND, OP_OR, OP_NOT };
enum { CMP_EQ, CMP_LT, CMP_GT, CMP_NE, CMP_LE, CMP_GE };

__u64 result;
__u32 executed;

/* The comparison opcode 0x8N: the accumulator becomes 1 or 0 (a function of its own: .text). */
static __attribute__((noinline)) __u64 compare(__u32 how, __u64 acc, __u64 arg)
{
	switch (how) {
	case CMP_EQ: return acc == arg;
	case CMP_LT: return acc < arg;
	case CMP_GT: return acc > arg;
	case CMP_NE: return acc != arg;
	case CMP_LE: return acc <= arg;
	case CMP_GE: return acc >= arg;
	default: return 0;
	}
}

SEC("xdp")
int opcode_vm(struct xdp_md *ctx)
{
	__u8 *code = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	__u64 acc = 0;
	__u32 steps = 0;

	for (int pc = 0; pc < MAX_STEPS; pc++) {
		__u8 *insn = code + 2 * pc;
		if (insn + 2 > end)
			break;
		__u8 op = insn[0], arg = insn[1];
		steps++;
		if (op & 0x80) {
			acc = compare(op & 0x7f, acc, arg);
			continue;
		}
		switch (op) {
		case OP_HALT: goto out;
		case OP_LOAD: acc = arg; break;
		case OP_ADD: acc += arg; break;
		case OP_SUB: acc -= arg; break;
		case OP_MUL: acc *= arg; break;
		case OP_XOR: acc ^= arg; break;
		case OP_SHL: acc <<= arg & 63; break;
		case OP_SHR: acc >>= arg & 63; break;
		case OP_AND: acc &= arg; break;
		case OP_OR: acc |= arg; break;
		case OP_NOT: acc = ~acc; break;
		default:
			executed = steps;
			return XDP_DROP;
		}
	}
out:
	result = acc;
	executed = steps;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
