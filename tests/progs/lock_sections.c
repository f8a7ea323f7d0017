/* Global sections that hold a bpf_spin_lock, counted under the lock from several threads while
 * Python writes the sections' other variables (tests/test_lock_sections.py):
 *
 *   .data.stats  a private section (hidden variables): its lock, packet and byte counts, and
 *                `hold`, a setting Python writes while traffic runs: the iterations of busy work
 *                between reading the packet count and storing it back (a window in which a
 *                second thread let in by a cleared lock would lose an update);
 *   .bss         the plain .bss: its lock and a packet count.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define private(name) SEC(".data." #name) __hidden __attribute__((aligned(8)))

private(stats) struct bpf_spin_lock stats_lock;
private(stats) __u64 packets;
private(stats) __u64 bytes;
private(stats) __u32 hold = 64;

struct bpf_spin_lock bss_lock;
__u64 bss_packets;

SEC("xdp")
int count(struct xdp_md *ctx)
{
	__u64 len = ctx->data_end - ctx->data, c, acc;
	__u32 n = hold, i;

	bpf_spin_lock(&stats_lock);
	c = packets;
	for (i = 0, acc = c; i < n && i < 64; i++)
		acc = acc * 6364136223846793005ULL + i;
	packets = c + 1 + (acc & 0);
	bytes += len;
	bpf_spin_unlock(&stats_lock);

	bpf_spin_lock(&bss_lock);
	bss_packets++;
	bpf_spin_unlock(&bss_lock);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
