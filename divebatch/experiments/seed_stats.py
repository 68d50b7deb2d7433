"""Statistics over the seeds of a planned group (a sweep's cells, a reproduction's methods).

One row per finished planned run (`seed_results`: its own-final metric, time and examples to
target, from `analysis`), what it gained over the baseline run of the same seed
(`with_speedups`), and per cell the mean and standard error of each metric over its seeds
(`aggregate`, `mean_se`).

>>> mean_se([1.0, 2.0, 3.0])[0], mean_se([4.0, None]), mean_se([])
(2.0, (4.0, None), (None, None))
"""

from __future__ import annotations

import math
import statistics
from typing import Callable, Hashable, Iterable

from divebatch.experiments import analysis
from divebatch.runs.groups import FINISHED, PlannedRun


def mean_se(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and standard error (sample standard deviation / sqrt(k)) of the known values;
    the standard error is None with fewer than two values."""
    known = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not known:
        return None, None
    if len(known) == 1:
        return known[0], None
    return statistics.fmean(known), statistics.stdev(known) / math.sqrt(len(known))


def seed_results(planned: list[PlannedRun], matched: list[dict | None],
                 records_by_run: dict[int, list[dict]]) -> list[dict]:
    """One row per planned run that has finished: its metric, time and examples to target."""
    rows = []
    for p, run in zip(planned, matched):
        if run is None or run["status"] not in FINISHED:
            continue
        records = records_by_run.get(run["id"], [])
        epoch, seconds = analysis.time_to_own_final(records)
        diverged = run["status"] == "diverged"
        at_target = next((r for r in records if r["epoch"] == epoch), None)
        drop = None if diverged else analysis.drop_points(records)
        rows.append({
            "cell": p.cell, "seed": p.seed, "run_id": run["id"], "status": run["status"],
            "final": None if diverged else analysis.final_value(records),
            "time_to_target": None if diverged else seconds,
            "epochs_to_target": None if diverged else epoch,
            "samples_to_target": at_target["samples_seen"] if at_target and not diverged
            else None,
            "train_time": sum(float(r.get("train_time") or 0.0) for r in records),
            "final_batch_size": records[-1].get("batch_size") if records else None,
            "drop_points": drop, "flagged": bool(analysis.flag_note(drop)),
            "measure_share": analysis.measuring_share(records),
        })
    return rows


def with_speedups(rows: list[dict], is_baseline: Callable[[dict], bool],
                  same: Callable[[dict], Hashable] = lambda row: None) -> list[dict]:
    """Add, per row, what it gained over the baseline run (`is_baseline(row)`) of the same
    seed: `speedup` = the baseline's time to target / the row's, and `final_change` = the row's
    final value - the baseline's.

    `same(row)` names what else a row shares with its baseline (reproduce: the benchmark).
    None where either value is unknown.
    """
    baseline = {(same(r), r["seed"]): r for r in rows if is_baseline(r)}
    out = []
    for row in rows:
        reference = baseline.get((same(row), row["seed"]))
        own_time = row["time_to_target"]
        base_time = reference["time_to_target"] if reference else None
        base_final = reference["final"] if reference else None
        out.append({**row,
                    "speedup": base_time / own_time if base_time and own_time else None,
                    # from a run whose own-final target is not meaningful (analysis.flag_note)
                    "speedup_flagged": bool(row.get("flagged") or (reference or {}).get(
                        "flagged")) and bool(base_time and own_time),
                    "final_change": row["final"] - base_final
                    if row["final"] is not None and base_final is not None else None})
    return out


AGGREGATED = ("speedup", "final", "final_change", "time_to_target", "epochs_to_target",
              "samples_to_target", "final_batch_size", "measure_share")


def aggregate(rows: list[dict], cells: list[Hashable], planned_per_cell: int) -> list[dict]:
    """Per cell: finished / diverged counts and mean and standard error of each metric."""
    summary = []
    for cell in cells:
        mine = [r for r in rows if r["cell"] == cell]
        row = {"cell": cell, "finished": len(mine), "planned": planned_per_cell,
               "diverged": sum(r["status"] == "diverged" for r in mine),
               "flagged": sum(r.get("speedup_flagged", False) for r in mine),
               "run_ids": [r["run_id"] for r in mine]}
        for name in AGGREGATED:
            row[name], row[name + "_se"] = mean_se(r.get(name) for r in mine)
        summary.append(row)
    return summary
