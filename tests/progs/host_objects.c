// SPDX-License-Identifier: MIT
/*
 * Host objects: kfuncs registered from Python (tests/test_kptrs.py registers
 * host_task_acquire and host_task_release) give the program objects of the host application,
 * typed by this program's `struct task_info` (matched by name). The program reads one, and keeps
 * it in a hash map's kptr field until another replaces it.
 *
 *   remember  acquires the task pid_in names, publishes its uid in uid_out, and stashes it
 *             under its pid (releasing the task it replaces); XDP_DROP when there is no such task.
 *   leak      (not autoloaded) acquires a task and returns without releasing it.
 *   scribble  (not autoloaded) writes into a host object.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "host_tasks.h"

__u32 pid_in;
__u32 uid_out;

SEC("xdp")
int remember(struct xdp_md *ctx)
{
	__u32 pid = pid_in;
	struct task_info *task;

	task = host_task_acquire(pid);
	if (!task)
		return XDP_DROP;
	uid_out = task->uid;
	return stash_task(task, pid);
}

SEC("?xdp")
int leak(struct xdp_md *ctx)
{
	struct task_info *task = host_task_acquire(1);

	if (!task)
		return XDP_DROP;
	return task->uid;
}

SEC("?xdp")
int scribble(struct xdp_md *ctx)
{
	struct task_info *task = host_task_acquire(1);

	if (!task)
		return XDP_DROP;
	task->uid = 0;
	host_task_release(task);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
