"""Static branches: what a disabled site costs, and how fast a key toggles.

Variants of one hot XDP loop (bench/progs/static_branch.c, 64 iterations, 10 debug points each):
``none`` has no debug points, ``keys`` has 10 static-branch sites of one key, ``keys1`` a single
site, ``flag`` tests a global variable at each of the 10 points. Every variant is checked to compute
the same verdict first, and the key variant to count its debug points when the key is on. Run time
per invocation comes from test_run(repeat=...)'s native loop (duration_ns); toggle latency is
enable() + disable() of the 10-site key; "recompile" is what a toggle costs when the branch is a
compile-time constant.
"""
from __future__ import annotations

import pathlib

import pytest

import bpfjit

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
PACKET = bytes(range(64))
REPEAT = 20_000


def load(variant: str):
    return bpfjit.load(PROGS / f"static_branch_{variant}.o")


@pytest.fixture(scope="module")
def expected_verdict() -> int:
    verdicts = {variant: load(variant).programs["hot"].test_run(PACKET, engine="reference").retval
                for variant in ("none", "keys", "keys1", "flag")}
    assert len(set(verdicts.values())) == 1, f"the variants disagree: {verdicts}"
    return verdicts["none"]


@pytest.mark.parametrize("variant, key_on", [("none", False), ("keys1", False), ("keys", False), ("keys", True),
                                             ("flag", False)],
                         ids=["no-branch", "one-site-off", "ten-sites-off", "ten-sites-on", "flag-off"])
def test_run_time_per_invocation(benchmark, expected_verdict, variant, key_on):
    obj = load(variant)
    prog = obj.programs["hot"]
    if key_on:
        obj.static_keys["debug"].enable()
    result = prog.test_run(PACKET, engine="jit")
    assert result.retval == expected_verdict
    hits = obj.globals["debug_hits"]
    assert all(hits) if key_on else not any(hits), hits  # the debug points ran iff the key is on
    assert len(obj.static_keys["debug"].native_sites if obj.static_keys else []) >= (1 if variant == "keys1" else 0)
    durations = []

    def run():
        durations.append(prog.test_run(PACKET, repeat=REPEAT, engine="jit").duration_ns)

    benchmark.pedantic(run, rounds=15, warmup_rounds=2)
    durations.sort()
    benchmark.extra_info["ns_per_invocation_median"] = durations[len(durations) // 2]


def test_toggle_latency_of_a_10_site_key(benchmark):
    obj = load("keys")
    obj.programs["hot"].compile()
    key = obj.static_keys["debug"]
    assert len(key.native_sites) >= 10

    def toggle():
        key.enable()
        key.disable()

    benchmark.pedantic(toggle, rounds=200, warmup_rounds=5)
    assert not key.enabled
    benchmark.extra_info["sites"] = len(key.native_sites)


def test_recompile_per_toggle(benchmark):
    """The alternative to patching: a new program compiled for each key state."""
    def recompile():
        load("none").programs["hot"].compile()

    benchmark.pedantic(recompile, rounds=10, warmup_rounds=1)


def test_disabled_site_cost_interleaved(benchmark):
    """Relative cost of each variant, measured interleaved so that drift hits them alike.

    Reported (not asserted) in extra_info as the percentage over the no-branch program.
    """
    programs = {variant: load(variant).programs["hot"] for variant in ("none", "keys1", "keys", "flag")}
    samples: dict[str, list[float]] = {variant: [] for variant in programs}

    def one_round():
        for variant, prog in programs.items():
            samples[variant].append(prog.test_run(PACKET, repeat=REPEAT, engine="jit").duration_ns)

    benchmark.pedantic(one_round, rounds=21, warmup_rounds=2)
    medians = {variant: sorted(s)[len(s) // 2] for variant, s in samples.items()}
    for variant, median in medians.items():
        benchmark.extra_info[f"{variant}_ns"] = round(median, 1)
        benchmark.extra_info[f"{variant}_vs_none_percent"] = round((median / medians["none"] - 1) * 100, 2)
