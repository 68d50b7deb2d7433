"""Sweeps: what if delta, B_max or the resize interval R were different?

A sweep is a grid over DiveBatch's delta x max_batch_size x resize_every (x seeds) for one
problem. Every cell is judged against the same fixed-batch SGD baseline of the same seed (SGD
at the base batch size B_0): its speed-up is the baseline's training time to within 1 point of
its own final accuracy (analysis.time_to_own_final) over the cell's.

Runs are ordinary stored runs in the group "sweep:<hash of the spec>". A run *is* a planned
run when it is in that group and its config equals the planned config (the name aside), so a
re-run of the same sweep reuses every finished run and redoes only the stopped, failed or
missing ones (`divebatch.runs.groups`, which serves `reproduce` too).

>>> spec = SweepSpec(base={"problem": "least_squares", "epochs": 3}, deltas=(0.1, 1.0),
...                  max_batch_sizes=(64,), resize_everys=(1,), seeds=(0, 1))
>>> [(p.cell, p.seed) for p in spec.plan()][:3]
[('baseline', 0), ('baseline', 1), ((0.1, 64, 1), 0)]
>>> spec.group.startswith("sweep:")
True
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable

from divebatch.experiments import analysis
from divebatch.config import RunConfig
from divebatch.runs.groups import (FINISHED, PlannedRun, match_runs, progress,
                                   run_missing, specs_in_store, submit_missing)

GRID_FIELDS = ("delta", "max_batch_size", "resize_every")  # the axes of a sweep
PER_RUN_FIELDS = GRID_FIELDS + ("seed", "method", "name")  # set per run, never by the base
BASELINE = "baseline"  # the cell of the fixed-batch SGD runs
# Sweeps compare training times, so diversity is measured only where the method needs it.
SWEEP_DEFAULTS = {"diversity_every_epoch": False}
MAX_RUNS = 400  # a bigger plan is almost surely a typo


@dataclass(frozen=True)
class SweepSpec:
    base: dict                          # RunConfig fields shared by every run
    deltas: tuple[float, ...]
    max_batch_sizes: tuple[int, ...]
    resize_everys: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self):
        base = {k: v for k, v in dict(self.base).items() if k not in PER_RUN_FIELDS}
        object.__setattr__(self, "base", base)
        deltas = (float(d) if isinstance(d, int) and not isinstance(d, bool) else d
                  for d in self.deltas)  # 1 and 1.0 are the same delta, and the same hash
        object.__setattr__(self, "deltas", tuple(deltas))
        for name in ("deltas", "max_batch_sizes", "resize_everys", "seeds"):
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))

    @property
    def key(self) -> str:
        """Ten hex digits of a hash of the spec: the same spec always gets the same key."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def group(self) -> str:
        return f"sweep:{self.key}"

    def cells(self) -> list[tuple[float, int, int]]:
        return [(d, b, r) for d in self.deltas for b in self.max_batch_sizes
                for r in self.resize_everys]

    def baseline_config(self, seed: int) -> RunConfig:
        batch = self.base.get("batch_size", RunConfig.batch_size)
        return RunConfig.from_dict({**self.base, "method": "sgd", "seed": seed,
                                    "max_batch_size": batch,
                                    "name": f"{self.group} SGD B={batch} seed={seed}"})

    def cell_config(self, cell: tuple[float, int, int], seed: int) -> RunConfig:
        delta, max_batch, every = cell
        name = f"{self.group} delta={delta} B_max={max_batch} R={every} seed={seed}"
        return RunConfig.from_dict({**self.base, "method": "divebatch", "delta": delta,
                                    "max_batch_size": max_batch, "resize_every": every,
                                    "seed": seed, "name": name})

    def plan(self) -> list[PlannedRun]:
        """Baselines first (every cell needs them), then the cells in grid order."""
        runs = [PlannedRun(BASELINE, s, self.baseline_config(s)) for s in self.seeds]
        runs += [PlannedRun(cell, s, self.cell_config(cell, s))
                 for cell in self.cells() for s in self.seeds]
        return runs

    def validate(self) -> None:
        """Raise ValueError listing every problem, one per line."""
        errors = [f"{name} should list at least one value, but got {name}=()"
                  for name in ("deltas", "max_batch_sizes", "resize_everys", "seeds")
                  if not getattr(self, name)]
        if errors:
            raise ValueError("\n".join(errors))
        size = (len(self.cells()) + 1) * len(self.seeds)
        if size > MAX_RUNS:
            raise ValueError(f"a sweep should have at most {MAX_RUNS} runs, but this grid "
                             f"has {size}")
        for planned in self.plan():
            try:
                planned.config.validate()
            except ValueError as error:
                errors += [e for e in str(error).splitlines() if e not in errors]
        if errors:
            raise ValueError("\n".join(errors))

    def to_dict(self) -> dict:
        return {"base": dict(sorted(self.base.items())), "deltas": list(self.deltas),
                "max_batch_sizes": list(self.max_batch_sizes),
                "resize_everys": list(self.resize_everys), "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, values: dict) -> "SweepSpec":
        return cls(base=values["base"], deltas=tuple(values["deltas"]),
                   max_batch_sizes=tuple(values["max_batch_sizes"]),
                   resize_everys=tuple(values["resize_everys"]), seeds=tuple(values["seeds"]))


def parse_values(text: str, kind: type, name: str) -> tuple:
    """'0.05, 0.1 0.2' -> (0.05, 0.1, 0.2); ValueError naming the field on a bad value."""
    values = []
    for part in text.replace(",", " ").split():
        try:
            values.append(kind(part))
        except ValueError:
            kind_name = "ints" if kind is int else "numbers"
            raise ValueError(f"{name} should be a list of {kind_name} separated by commas, "
                             f"but got {part!r}") from None
    if not values:
        raise ValueError(f"{name} should list at least one value, but got nothing")
    return tuple(values)


# --- aggregation

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


def with_speedups(rows: list[dict],
                  is_baseline: Callable[[dict], bool] = lambda row: row["cell"] == BASELINE,
                  same: Callable[[dict], Hashable] = lambda row: None) -> list[dict]:
    """Add, per row, what it gained over the baseline run of the same seed:
    `speedup` = the baseline's time to target / the row's, and `final_change` = the row's
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


@dataclass
class SweepResults:
    spec: SweepSpec
    matched: list[dict | None]      # per planned run, in plan order
    seeds: list[dict]               # one row per finished run (with speedup)
    cells: list[dict]               # one row per cell, baseline first, then grid order
    metric: str                     # "accuracy" or "validation loss"

    @property
    def progress(self) -> dict:
        return progress(self.matched)

    @property
    def done(self) -> bool:
        counts = self.progress
        return counts["running"] == 0 and counts["queued"] == 0


def results(store, spec: SweepSpec) -> SweepResults:
    """Everything the CLI table and the page draw, read from the store."""
    planned = spec.plan()
    matched = match_runs(store, spec.group, planned)
    records = store.records_many([run["id"] for run in matched if run])
    seeds = with_speedups(seed_results(planned, matched, records))
    cells = aggregate(seeds, [BASELINE] + spec.cells(), len(spec.seeds))
    for row in cells:
        row.update(cell_fields(spec, row["cell"]))
    accuracy = any(analysis.uses_accuracy(r) for r in records.values())
    return SweepResults(spec, matched, seeds, cells,
                        "accuracy" if accuracy else "validation loss")


def cell_fields(spec: SweepSpec, cell: Hashable) -> dict:
    """The cell's grid values (the baseline's are its fixed batch size and no delta / R)."""
    if cell == BASELINE:
        batch = spec.base.get("batch_size", RunConfig.batch_size)
        return {"label": f"SGD B={batch} (baseline)", "delta": None,
                "max_batch_size": batch, "resize_every": None}
    delta, max_batch, every = cell
    return {"label": cell_label(cell), "delta": delta, "max_batch_size": max_batch,
            "resize_every": every}


def grid_values(spec: SweepSpec) -> dict[str, tuple]:
    return {"delta": spec.deltas, "max_batch_size": spec.max_batch_sizes,
            "resize_every": spec.resize_everys}


def default_axes(spec: SweepSpec) -> tuple[str, str]:
    """Heatmap axes: the grid fields with most values (ties in GRID_FIELDS order)."""
    values = grid_values(spec)
    ordered = sorted(GRID_FIELDS, key=lambda name: -len(values[name]))
    return ordered[0], ordered[1]


def cell_table(result: SweepResults) -> list[dict]:
    """The page's sortable table: one row per cell, numbers kept numeric."""
    accuracy = result.metric == "accuracy"
    final = "final acc (%)" if accuracy else "final val loss"
    scale = 100.0 if accuracy else 1.0
    rows = []
    for cell in result.cells:
        rows.append({
            "cell": cell["label"], "delta": cell["delta"], "B_max": cell["max_batch_size"],
            "R": cell["resize_every"], "finished": f"{cell['finished']}/{cell['planned']}",
            "diverged": cell["diverged"],
            "speed-up": cell["speedup"], "speed-up se": cell["speedup_se"],
            "speed-up flagged seeds": cell["flagged"],
            final: _scaled(cell["final"], scale), final + " se": _scaled(cell["final_se"], scale),
            "train s to own-1pt": cell["time_to_target"],
            "train s se": cell["time_to_target_se"],
            "examples to own-1pt": cell["samples_to_target"],
            "examples se": cell["samples_to_target_se"],
            "final B": cell["final_batch_size"]})
    return rows


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def cell_label(cell: tuple[float, int, int]) -> str:
    delta, max_batch, every = cell
    return f"delta={delta:g}, B_max={max_batch}, R={every}"


def runs_of_cell(result: SweepResults, cell: Hashable) -> list[int]:
    """Stored run ids of a cell (any state), in seed order."""
    return [run["id"] for p, run in zip(result.spec.plan(), result.matched)
            if p.cell == cell and run]


def list_sweeps(store) -> list[SweepSpec]:
    """Sweeps found in the store, newest first."""
    return specs_in_store(store, "sweep:", "sweep", SweepSpec.from_dict)


def launch(store, spec: SweepSpec, backend=None) -> list[int]:
    """Validate and queue the sweep's missing runs in the background; their ids.
    `backend`: None for this machine's workers, or e.g. a ray_backend.RayBackend."""
    spec.validate()
    submit = backend.submit_missing if backend else submit_missing
    return submit(store, spec.group, spec.plan(), info={"sweep": spec.to_dict()})


def run_here(store, spec: SweepSpec, on_run_done=None, backend=None) -> int:
    """Validate and train the sweep's missing runs from this process (on `backend`, default
    here, one after the other); how many ran."""
    spec.validate()
    run = backend.run_missing if backend else run_missing
    return run(store, spec.group, spec.plan(), info={"sweep": spec.to_dict()},
               on_run_done=on_run_done)


def format_speedup(cell: dict) -> str:
    """A cell's mean speed-up, with a warning when some seeds' speed-ups came from a run
    that ended more than analysis.FLAG_POINTS below its best."""
    text = format_mean_se(cell["speedup"], cell["speedup_se"], suffix="x")
    if text and cell.get("flagged"):
        text += (f" ⚠ {cell['flagged']} of {cell['finished']} seeds: a run ended more than "
                 f"{analysis.FLAG_POINTS:g} points below its best")
    return text


def format_mean_se(mean: float | None, se: float | None, digits: int = 3,
                   scale: float = 1.0, suffix: str = "") -> str:
    """'2.31 ± 0.12x', '2.31x' (one seed) or '' (nothing finished)."""
    if mean is None:
        return ""
    text = f"{mean * scale:.{digits}g}"
    if se is not None:
        text += f" ± {se * scale:.{max(digits - 1, 1)}g}"
    return text + suffix
