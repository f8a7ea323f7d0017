"""LLVM IR of the native helpers whose answer in userspace never changes: the socket helpers (no
socket exists here, so a lookup or cast finds none, a release has nothing to drop, a cookie is 0
and socket storage holds nothing) and ``bpf_csum_update`` (a test run's skb never carries a
CHECKSUM_COMPLETE sum). runtime/sock_helpers.py and runtime/skb_helpers.py say why each answer
is what it is, and stay the reference; a tc program that looks up a socket for every packet need
not call Python for it.

Their pointer arguments are the verifier's to check, as for every native helper (the Python
lookups also check theirs, for unverified programs, which keep the Python helpers).
"""
from __future__ import annotations

import errno

from bpfjit.runtime import skb_helpers, sock_helpers
from bpfjit.runtime.kernel_helpers import HELPER_IDS

from .native_maps import twins

# (the Python helper, its answer, the helpers it serves)
_CONSTANTS = (
    (sock_helpers.no_socket, 0, ("sk_fullsock", "tcp_sock", "get_listener_sock", "skc_to_tcp6_sock",
                                 "skc_to_tcp_sock", "skc_to_tcp_timewait_sock", "skc_to_tcp_request_sock",
                                 "skc_to_udp6_sock", "sk_storage_get")),
    (sock_helpers.sk_lookup, 0, ("sk_lookup_tcp", "sk_lookup_udp", "skc_lookup_tcp")),
    (sock_helpers.sk_release, 0, ("sk_release",)),
    (sock_helpers.get_socket_cookie, 0, ("get_socket_cookie",)),
    (sock_helpers.sk_storage_delete, -errno.ENOENT, ("sk_storage_delete",)),
    (skb_helpers.csum_update, -skb_helpers.ENOTSUPP, ("csum_update",)),
)

MODULE_IR = "".join(f"""
define i64 @bpfjit_native_{impl.__name__}(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{
  ret i64 {answer}
}}
""" for impl, answer, _ in _CONSTANTS)

FUNCTIONS = twins(*((HELPER_IDS[name], impl) for impl, _, names in _CONSTANTS for name in names))
