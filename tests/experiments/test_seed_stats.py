"""Statistics over seeds: mean and standard error, same-seed speed-ups, per-cell summaries,
each checked against numbers worked out by hand."""

import doctest
import math

import pytest

from divebatch.experiments import seed_stats


def test_mean_and_standard_error_by_hand():
    assert seed_stats.mean_se([1.0, 2.0, 3.0]) == (2.0, pytest.approx(1.0 / math.sqrt(3)))
    assert seed_stats.mean_se([4.0, None, float("nan")]) == (4.0, None)
    assert seed_stats.mean_se([]) == (None, None)


def row(cell, seed, time, final, status="completed", flagged=False, bench="a"):
    return {"cell": cell, "seed": seed, "run_id": hash((cell, seed, bench)), "status": status,
            "time_to_target": time, "final": final, "flagged": flagged, "bench": bench}


def test_speedups_pair_each_run_with_the_baseline_of_its_own_seed_and_benchmark():
    rows = [row("sgd", 0, 4.0, 0.90), row("sgd", 1, 6.0, 0.80), row("dive", 0, 2.0, 0.85),
            row("dive", 1, 2.0, None), row("dive", 2, 1.0, 0.9),  # seed 2 has no baseline
            row("sgd", 0, 1.0, 0.5, bench="b"), row("dive", 0, 4.0, 0.7, bench="b")]
    out = seed_stats.with_speedups(rows, is_baseline=lambda r: r["cell"] == "sgd",
                                   same=lambda r: r["bench"])
    by = {(r["bench"], r["cell"], r["seed"]): r for r in out}
    assert by["a", "dive", 0]["speedup"] == 2.0  # 4 s / 2 s
    assert by["a", "dive", 0]["final_change"] == pytest.approx(-0.05)
    assert by["a", "dive", 1]["speedup"] == 3.0 and by["a", "dive", 1]["final_change"] is None
    assert by["a", "dive", 2]["speedup"] is None
    assert by["b", "dive", 0]["speedup"] == 0.25  # its own benchmark's baseline: 1 s / 4 s
    assert by["a", "sgd", 0]["speedup"] == 1.0


def test_a_flagged_baseline_flags_the_speedups_over_it():
    rows = [row("sgd", 0, 4.0, 0.9, flagged=True), row("dive", 0, 2.0, 0.9),
            row("dive", 1, 2.0, 0.9)]
    out = seed_stats.with_speedups(rows, is_baseline=lambda r: r["cell"] == "sgd")
    assert [r["speedup_flagged"] for r in out] == [True, True, False]  # seed 1: no speed-up


def test_aggregate_counts_and_averages_each_cell_by_hand():
    rows = seed_stats.with_speedups(
        [row("sgd", 0, 4.0, 0.9), row("sgd", 1, 6.0, 0.8), row("dive", 0, 2.0, 0.85),
         row("dive", 1, 1.0, 0.75), row("dive", 2, None, None, status="diverged")],
        is_baseline=lambda r: r["cell"] == "sgd")
    sgd, dive, empty = seed_stats.aggregate(rows, ["sgd", "dive", "none"], planned_per_cell=3)
    assert (dive["finished"], dive["planned"], dive["diverged"]) == (3, 3, 1)
    assert dive["speedup"] == pytest.approx(4.0)  # (4 / 2 + 6 / 1) / 2
    assert dive["speedup_se"] == pytest.approx(math.sqrt(8) / math.sqrt(2))  # stdev 2*sqrt(2)
    assert dive["final_change"] == pytest.approx(-0.05)
    assert sgd["speedup"] == 1.0 and sgd["speedup_se"] == 0.0
    assert empty["finished"] == 0 and empty["speedup"] is None and empty["run_ids"] == []


def test_doctest():
    assert doctest.testmod(seed_stats).failed == 0
