"""The kernel's helper functions by id: the one table of their names.

The ids are the uapi's (``___BPF_FUNC_MAPPER`` in ``include/uapi/linux/bpf.h``, Linux 6.12): a
BPF program calls helper N by number, and the kernel's log names it ``bpf_<name>#N``. Users
register their own implementations by these names; the verifier's log prints them.
"""
from __future__ import annotations

import re

# Index = helper id. Id 0 is BPF_FUNC_unspec, which no program may call.
HELPER_NAMES: tuple[str, ...] = (
    "unspec", "map_lookup_elem", "map_update_elem", "map_delete_elem", "probe_read", "ktime_get_ns",
    "trace_printk", "get_prandom_u32", "get_smp_processor_id", "skb_store_bytes", "l3_csum_replace",
    "l4_csum_replace", "tail_call", "clone_redirect", "get_current_pid_tgid", "get_current_uid_gid",
    "get_current_comm", "get_cgroup_classid", "skb_vlan_push", "skb_vlan_pop", "skb_get_tunnel_key",
    "skb_set_tunnel_key", "perf_event_read", "redirect", "get_route_realm", "perf_event_output",
    "skb_load_bytes", "get_stackid", "csum_diff", "skb_get_tunnel_opt", "skb_set_tunnel_opt",
    "skb_change_proto", "skb_change_type", "skb_under_cgroup", "get_hash_recalc", "get_current_task",
    "probe_write_user", "current_task_under_cgroup", "skb_change_tail", "skb_pull_data", "csum_update",
    "set_hash_invalid", "get_numa_node_id", "skb_change_head", "xdp_adjust_head", "probe_read_str",
    "get_socket_cookie", "get_socket_uid", "set_hash", "setsockopt", "skb_adjust_room", "redirect_map",
    "sk_redirect_map", "sock_map_update", "xdp_adjust_meta", "perf_event_read_value", "perf_prog_read_value",
    "getsockopt", "override_return", "sock_ops_cb_flags_set", "msg_redirect_map", "msg_apply_bytes",
    "msg_cork_bytes", "msg_pull_data", "bind", "xdp_adjust_tail", "skb_get_xfrm_state", "get_stack",
    "skb_load_bytes_relative", "fib_lookup", "sock_hash_update", "msg_redirect_hash", "sk_redirect_hash",
    "lwt_push_encap", "lwt_seg6_store_bytes", "lwt_seg6_adjust_srh", "lwt_seg6_action", "rc_repeat",
    "rc_keydown", "skb_cgroup_id", "get_current_cgroup_id", "get_local_storage", "sk_select_reuseport",
    "skb_ancestor_cgroup_id", "sk_lookup_tcp", "sk_lookup_udp", "sk_release", "map_push_elem", "map_pop_elem",
    "map_peek_elem", "msg_push_data", "msg_pop_data", "rc_pointer_rel", "spin_lock", "spin_unlock",
    "sk_fullsock", "tcp_sock", "skb_ecn_set_ce", "get_listener_sock", "skc_lookup_tcp", "tcp_check_syncookie",
    "sysctl_get_name", "sysctl_get_current_value", "sysctl_get_new_value", "sysctl_set_new_value", "strtol",
    "strtoul", "sk_storage_get", "sk_storage_delete", "send_signal", "tcp_gen_syncookie", "skb_output",
    "probe_read_user", "probe_read_kernel", "probe_read_user_str", "probe_read_kernel_str", "tcp_send_ack",
    "send_signal_thread", "jiffies64", "read_branch_records", "get_ns_current_pid_tgid", "xdp_output",
    "get_netns_cookie", "get_current_ancestor_cgroup_id", "sk_assign", "ktime_get_boot_ns", "seq_printf",
    "seq_write", "sk_cgroup_id", "sk_ancestor_cgroup_id", "ringbuf_output", "ringbuf_reserve",
    "ringbuf_submit", "ringbuf_discard", "ringbuf_query", "csum_level", "skc_to_tcp6_sock", "skc_to_tcp_sock",
    "skc_to_tcp_timewait_sock", "skc_to_tcp_request_sock", "skc_to_udp6_sock", "get_task_stack",
    "load_hdr_opt", "store_hdr_opt", "reserve_hdr_opt", "inode_storage_get", "inode_storage_delete", "d_path",
    "copy_from_user", "snprintf_btf", "seq_printf_btf", "skb_cgroup_classid", "redirect_neigh", "per_cpu_ptr",
    "this_cpu_ptr", "redirect_peer", "task_storage_get", "task_storage_delete", "get_current_task_btf",
    "bprm_opts_set", "ktime_get_coarse_ns", "ima_inode_hash", "sock_from_file", "check_mtu",
    "for_each_map_elem", "snprintf", "sys_bpf", "btf_find_by_name_kind", "sys_close", "timer_init",
    "timer_set_callback", "timer_start", "timer_cancel", "get_func_ip", "get_attach_cookie", "task_pt_regs",
    "get_branch_snapshot", "trace_vprintk", "skc_to_unix_sock", "kallsyms_lookup_name", "find_vma", "loop",
    "strncmp", "get_func_arg", "get_func_ret", "get_func_arg_cnt", "get_retval", "set_retval",
    "xdp_get_buff_len", "xdp_load_bytes", "xdp_store_bytes", "copy_from_user_task", "skb_set_tstamp",
    "ima_file_hash", "kptr_xchg", "map_lookup_percpu_elem", "skc_to_mptcp_sock", "dynptr_from_mem",
    "ringbuf_reserve_dynptr", "ringbuf_submit_dynptr", "ringbuf_discard_dynptr", "dynptr_read", "dynptr_write",
    "dynptr_data", "tcp_raw_gen_syncookie_ipv4", "tcp_raw_gen_syncookie_ipv6", "tcp_raw_check_syncookie_ipv4",
    "tcp_raw_check_syncookie_ipv6", "ktime_get_tai_ns", "user_ringbuf_drain", "cgrp_storage_get",
    "cgrp_storage_delete",
)

HELPER_IDS: dict[str, int] = {name: id for id, name in enumerate(HELPER_NAMES) if id}


def helper_name(helper_id: int) -> str:
    """The kernel's name of a helper (without the ``bpf_`` prefix), or "unknown"."""
    return HELPER_NAMES[helper_id] if 0 < helper_id < len(HELPER_NAMES) else "unknown"


# Why bpfjit has no implementation of a helper the kernel has, by what the helper works on (the
# first pattern a name matches; re.match, so from the name's start).
_MISSING_WHY: tuple[tuple[str, str], ...] = (
    (r"(get_current_|get_ns_current_|current_task|send_signal|get_task_stack|task_|bprm_|copy_from_user|"
     r"find_vma|probe_write_user)", "it works on the kernel task running the program, which a userspace run has not"),
    (r"(sk_|skc_|tcp_|sock_|msg_|getsockopt|setsockopt|bind$|get_socket_|get_listener_sock|get_netns_cookie)",
     "it needs a kernel socket"),
    (r"(perf_event_read|perf_prog_read|get_stack|read_branch|get_branch|get_func_|get_attach_cookie|task_pt_regs|"
     r"override_return|kallsyms|get_retval|set_retval|get_cgroup_classid|probe_read$|probe_read_str$|"
     r"probe_read_user)", "it needs kernel tracing state (an attach point, perf events, stacks or process memory)"),
    (r".*cgroup|.*cgrp", "it needs a cgroup"),
    (r"(lwt_|rc_|sysctl_|inode_storage|ima_|d_path|seq_|snprintf_btf|sys_|btf_find)",
     "it needs a kernel object of a program type bpfjit does not run (a tunnel, IR device, sysctl, inode, "
     "seq file or the bpf() system call)"),
    (r"timer_", "bpfjit has no BPF timers"),
    (r"(dynptr|.*_dynptr|user_ringbuf)", "bpfjit's verifier does not track dynptrs"),
)


def missing_helper_message(helper_id: int) -> str:
    """What a load says of a call to a helper bpfjit does not provide: the kernel's "invalid func
    unknown#N" for an id the kernel does not know either; else the kernel's message for a helper a
    program may not call ("program of this type cannot use helper bpf_NAME#N"), why bpfjit has
    none, and how a user can provide one."""
    name = helper_name(helper_id)
    if name == "unknown":
        return f"invalid func unknown#{helper_id}"
    why = next((reason for pattern, reason in _MISSING_WHY if re.match(pattern, name)),
               "bpfjit does not implement it")
    return (f"program of this type cannot use helper bpf_{name}#{helper_id}: bpfjit does not provide it: "
            f"{why} (bpfjit.register_helper(\"bpf_{name}\", function) provides one)")


# The helpers of one family of program types, by the kernel types (enum bpf_prog_type without its
# prefix) whose func_proto offers them (net/core/filter.c, Linux 6.12: sk_filter_, tc_cls_act_,
# xdp_, cg_skb_, lwt_*_ and sk_skb_func_proto). A helper not listed here is offered to every type
# (map, ring-buffer, time and loop helpers, ...); raw programs, not a kernel type, may call any.
_TC = frozenset({"SCHED_CLS", "SCHED_ACT"})
_LWT = frozenset({"LWT_IN", "LWT_OUT", "LWT_XMIT"})
_SKB_READERS = _TC | _LWT | {"SOCKET_FILTER", "CGROUP_SKB", "SK_SKB"}
_SOCKET_USERS = _TC | {"XDP", "SK_SKB", "CGROUP_SKB"}
_TRACING = frozenset({"KPROBE", "TRACEPOINT", "PERF_EVENT", "RAW_TRACEPOINT"})
_PACKETS = _SKB_READERS | {"XDP"}  # bpf_sk_base_func_proto's users
_ALL_BUT_SYSCALL = _PACKETS | _TRACING
HELPER_SCOPE: dict[str, frozenset[str]] = {
    "skb_load_bytes": _SKB_READERS,
    "skb_load_bytes_relative": _TC | {"SOCKET_FILTER", "CGROUP_SKB"},
    "get_socket_cookie": _TC | {"SOCKET_FILTER", "CGROUP_SKB", "SK_SKB"},
    "skb_store_bytes": _TC | {"LWT_XMIT", "SK_SKB"},
    "skb_pull_data": _TC | _LWT | {"SK_SKB"},
    "skb_change_tail": _TC | {"LWT_XMIT", "SK_SKB"},
    "skb_change_head": _TC | {"LWT_XMIT", "SK_SKB"},
    "skb_adjust_room": _TC | {"SK_SKB"},
    "l3_csum_replace": _TC | {"LWT_XMIT"},
    "l4_csum_replace": _TC | {"LWT_XMIT"},
    "csum_update": _TC | {"LWT_XMIT"},
    "csum_diff": _TC | _LWT | {"XDP"},
    "skb_vlan_push": _TC,
    "skb_vlan_pop": _TC,
    "skb_get_tunnel_key": _TC | {"LWT_XMIT"},
    "skb_set_tunnel_key": _TC | {"LWT_XMIT"},
    "get_hash_recalc": _TC | _LWT,
    "redirect": _TC | {"XDP", "LWT_XMIT"},
    "redirect_map": frozenset({"XDP"}),
    "fib_lookup": _TC | {"XDP"},
    "xdp_adjust_head": frozenset({"XDP"}),
    "xdp_adjust_meta": frozenset({"XDP"}),
    "xdp_adjust_tail": frozenset({"XDP"}),
    "xdp_get_buff_len": frozenset({"XDP"}),
    "xdp_load_bytes": frozenset({"XDP"}),
    "xdp_store_bytes": frozenset({"XDP"}),
    "sk_lookup_tcp": _SOCKET_USERS,
    "sk_lookup_udp": _SOCKET_USERS,
    "skc_lookup_tcp": _SOCKET_USERS,
    "sk_release": _SOCKET_USERS,
    "sk_fullsock": _TC | {"CGROUP_SKB"},
    "tcp_sock": _TC | {"CGROUP_SKB"},
    "get_listener_sock": _TC | {"CGROUP_SKB"},
    "sk_storage_get": _TC | {"CGROUP_SKB"},
    "sk_storage_delete": _TC | {"CGROUP_SKB"},
    "probe_read": _TRACING,  # the compat helper: kernel or user memory, tracing programs only
    "perf_event_output": _ALL_BUT_SYSCALL,  # a syscall program's protos are the base ones
    **{name: _PACKETS for name in ("skc_to_tcp6_sock", "skc_to_tcp_sock", "skc_to_tcp_timewait_sock",
                                   "skc_to_tcp_request_sock", "skc_to_udp6_sock")},
}


def offered(name: str, kernel_type: str) -> bool:
    """Whether the kernel offers helper bpf_<name> to programs of this type ("": raw, any)."""
    scope = HELPER_SCOPE.get(name)
    return not kernel_type or scope is None or kernel_type in scope
