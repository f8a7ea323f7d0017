"""Verdicts kept in the object-code cache, so that a program loaded before is not verified again.

Verification costs far more than a cache hit's lowering and link (tens to hundreds of
milliseconds on a clang -O2 loop), and its verdict is a function of the program, its type, the
helpers' prototypes and the maps its instructions name (``verifier.verify.inputs``) and of the
verifier's own code (part of ``jit.cache.code_digest``). Only acceptances at log level 0 or 1 are
kept: a rejection is verified again to give its log, and a level-2 log is what the user asked for.
"""
from __future__ import annotations

import hashlib
import json

from .jit import cache
from .verifier.check import Verdict
from .verifier.log import Stats


def key(inputs: str) -> str:
    digest = hashlib.sha256()
    for part in (cache.code_digest() or "", inputs):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def lookup(verdict_key: str) -> Verdict | None:
    data = cache.read_entry(f"{verdict_key}.verdict")
    if data is None:
        return None
    try:
        fields = json.loads(data)
        return Verdict(Stats(**fields["stats"]), "", frozenset(fields["checked_accesses"]),
                       bool(fields["helper_args_proven"]), frozenset(map(tuple, fields["uninit_stack_reads"])),
                       frozenset(fields["dead"]), {int(k): v for k, v in fields["pointer_moves"].items()},
                       ctx_accesses=frozenset(fields["ctx_accesses"]),
                       callx_sites={int(k): frozenset(v) for k, v in fields["callx_sites"].items()},
                       bounded_loops=frozenset(fields["bounded_loops"]),
                       pointer_compares=frozenset(fields["pointer_compares"]))
    except (ValueError, KeyError, TypeError):
        return None


def store(verdict_key: str, verdict: Verdict) -> None:
    fields = {"stats": vars(verdict.stats), "checked_accesses": sorted(verdict.checked_accesses),
              "helper_args_proven": verdict.helper_args_proven,
              "uninit_stack_reads": sorted(verdict.uninit_stack_reads), "dead": sorted(verdict.dead),
              "pointer_moves": verdict.pointer_moves, "ctx_accesses": sorted(verdict.ctx_accesses),
              "callx_sites": {index: sorted(starts) for index, starts in verdict.callx_sites.items()},
              "bounded_loops": sorted(verdict.bounded_loops), "pointer_compares": sorted(verdict.pointer_compares)}
    cache.write_entry(f"{verdict_key}.verdict", json.dumps(fields).encode())
