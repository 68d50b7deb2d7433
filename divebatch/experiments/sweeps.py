"""Sweeps: what if delta, B_max or the resize interval R were different?

A sweep is a grid over DiveBatch's delta x max_batch_size x resize_every (x seeds) for one
problem. Every cell is judged against the same fixed-batch SGD baseline of the same seed (SGD
at the base batch size B_0): its speed-up is the baseline's training time to within 1 point of
its own final accuracy (analysis.time_to_own_final) over the cell's.

Runs are ordinary stored runs in the group "sweep:<hash of the spec>". A run *is* a planned
run when it is in that group and its config equals the planned config (the name aside), so a
re-run of the same sweep, here or on Ray, reuses every finished run, continues the stopped,
failed or interrupted ones from their checkpoints and trains the missing ones
(`divebatch.runs.groups`, which serves `reproduce` too).

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
from dataclasses import dataclass
from typing import Callable, Hashable

from divebatch.experiments import analysis
from divebatch.experiments.seed_stats import aggregate, seed_results, with_speedups
from divebatch.config import RunConfig
from divebatch.runs.groups import (PlannedRun, match_runs, progress, run_missing,
                                   specs_in_store, submit_missing)

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

    def validate(self, name_of: Callable[[str], str] = str) -> None:
        """Raise ValueError listing every problem, one per line; `name_of` names a RunConfig
        field as its user sees it (RunConfig.validate)."""
        errors = [f"{name_of(field)} should list at least one value, but got none"
                  for field, values in (("delta", self.deltas),
                                        ("max_batch_size", self.max_batch_sizes),
                                        ("resize_every", self.resize_everys),
                                        ("seed", self.seeds)) if not values]
        if errors:
            raise ValueError("\n".join(errors))
        size = (len(self.cells()) + 1) * len(self.seeds)
        if size > MAX_RUNS:
            raise ValueError(f"a sweep should have at most {MAX_RUNS} runs, but this grid "
                             f"has {size}")
        for planned in self.plan():
            try:
                planned.config.validate(name_of)
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
    seeds = with_speedups(seed_results(planned, matched, records),
                          is_baseline=lambda row: row["cell"] == BASELINE)
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
