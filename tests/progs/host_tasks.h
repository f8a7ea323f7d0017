/* The host tasks of tests/test_kptrs.py: `struct task_info` (what the host's kfuncs give,
 * matched by name), the kfuncs it registers (host_task_acquire; host_task_release, the
 * struct's release function), a hash map of slots that own tasks, and how a program stashes a
 * task there. Used by host_objects.c and host_refs.c (after linux/bpf.h and bpf/bpf_helpers.h).
 */
#ifndef HOST_TASKS_H
#define HOST_TASKS_H

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

/* Moves the reference to task into key's slot of `tasks` (made, empty, if it is not there),
 * releasing the task the slot held: XDP_PASS, or XDP_ABORTED (task released) when there is no
 * slot to be had. */
static __always_inline int stash_task(struct task_info *task, __u32 key)
{
	struct slot empty = {}, *s;

	bpf_map_update_elem(&tasks, &key, &empty, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&tasks, &key);
	if (!s) {
		host_task_release(task);
		return XDP_ABORTED;
	}
	task = bpf_kptr_xchg(&s->task, task);
	if (task)
		host_task_release(task);
	return XDP_PASS;
}

#endif
