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

struct task_info {
	__u32 pid;
	__u32 uid;
	char comm[16];
};

extern struct task_info *host_task_acquire(__u32 pid) __ksym;
extern void host_task_release(struct task_info *task) __ksym;

struct slot {
	struct task_info __kptr *task;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct slot);
} tasks SEC(".maps");

__u32 pid_in;
__u32 uid_out;

SEC("xdp")
int remember(struct xdp_md *ctx)
{
	__u32 pid = pid_in;
	struct slot empty = {}, *s;
	struct task_info *task;

	task = host_task_acquire(pid);
	if (!task)
		return XDP_DROP;
	uid_out = task->uid;
	bpf_map_update_elem(&tasks, &pid, &empty, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&tasks, &pid);
	if (!s) {
		host_task_release(task);
		return XDP_ABORTED;
	}
	task = bpf_kptr_xchg(&s->task, task);
	if (task)
		host_task_release(task);
	return XDP_PASS;
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
