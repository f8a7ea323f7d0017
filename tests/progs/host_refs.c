// SPDX-License-Identifier: MIT
/*
 * Host objects and their references (host_tasks.h: the kfuncs tests/test_kptrs.py registers):
 * the host sees each object once, through the release function of `struct task_info`, when its
 * last reference goes. One host task is one object for as long as it has references, however
 * many times it is acquired.
 *
 *   stash   acquires the task pid_in names and exchanges it into key_in's slot of `tasks`,
 *           releasing the task the slot held; XDP_DROP when there is no such task.
 *   empty   overwrites key_in's slot with an empty one (bpf_map_update_elem), or deletes it
 *           (bpf_map_delete_elem) when delete_in is set.
 *   twice   acquires the task pid_in names twice: same_out is 1 when both acquires give one
 *           pointer; uid_out is its uid, read through the second after the first is released.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "host_tasks.h"

__u32 pid_in;
__u32 key_in;
__u32 delete_in;
__u32 same_out;
__u32 uid_out;

SEC("xdp")
int stash(struct xdp_md *ctx)
{
	struct task_info *task = host_task_acquire(pid_in);

	if (!task)
		return XDP_DROP;
	return stash_task(task, key_in);
}

SEC("xdp")
int empty(struct xdp_md *ctx)
{
	__u32 key = key_in;
	struct slot nothing = {};
	long err;

	if (delete_in)
		err = bpf_map_delete_elem(&tasks, &key);
	else
		err = bpf_map_update_elem(&tasks, &key, &nothing, BPF_EXIST);
	return err ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int twice(struct xdp_md *ctx)
{
	struct task_info *first, *second;

	first = host_task_acquire(pid_in);
	if (!first)
		return XDP_DROP;
	second = host_task_acquire(pid_in);
	if (!second) {
		host_task_release(first);
		return XDP_DROP;
	}
	same_out = first == second;
	host_task_release(first);
	uid_out = second->uid;
	host_task_release(second);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
