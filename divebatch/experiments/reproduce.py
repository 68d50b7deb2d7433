"""Reproduce the paper's comparison at a scale this machine can run.

Every method of `paper_setup.METHODS` runs once per seed on each chosen benchmark that can run
here; like the paper we report the training time to within 1 point of each run's own final
accuracy, as a speed-up over SGD at B_0 of the same seed (absolute seconds differ by machine),
beside the change in final accuracy. `claims.findings()` says, from the numbers, where ours
agree with the paper's and where they do not.

>>> spec = ReproSpec(scale="tiny", benchmarks=("convex",), seeds=(0,))
>>> len(spec.plan()), spec.plan()[0].cell
(7, ('convex', 'sgd_small'))
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from divebatch.experiments import seed_stats
from divebatch.experiments.paper_setup import (BENCHMARKS, DEFAULT_BENCHMARKS, METHODS, SCALES,
                                               availability, method_config)
from divebatch.runs import groups


@dataclass(frozen=True)
class ReproSpec:
    scale: str = "quick"
    benchmarks: tuple[str, ...] = DEFAULT_BENCHMARKS
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self):
        object.__setattr__(self, "benchmarks", tuple(dict.fromkeys(self.benchmarks)))
        object.__setattr__(self, "seeds", tuple(dict.fromkeys(self.seeds)))

    def validate(self) -> None:
        errors = []
        if self.scale not in SCALES:
            errors.append(f"scale should be one of {', '.join(SCALES)}, but got "
                          f"scale={self.scale!r}")
        unknown = [b for b in self.benchmarks if b not in BENCHMARKS]
        if unknown or not self.benchmarks:
            errors.append(f"benchmarks should be some of {', '.join(BENCHMARKS)}, but got "
                          f"{', '.join(map(str, self.benchmarks)) or 'none'}")
        if not self.seeds or not all(isinstance(s, int) and s >= 0 for s in self.seeds):
            errors.append(f"seeds should be one or more ints >= 0, but got {list(self.seeds)}")
        if errors:
            raise ValueError("\n".join(errors))

    @property
    def group(self) -> str:
        text = json.dumps({"scale": self.scale, "benchmarks": list(self.benchmarks),
                           "seeds": list(self.seeds)}, sort_keys=True)
        return "reproduce:" + hashlib.sha256(text.encode()).hexdigest()[:10]

    def skipped(self) -> dict[str, str]:
        """{benchmark key: why it cannot run here} for the requested ones that cannot."""
        notes = {key: availability(BENCHMARKS[key], self.scale) for key in self.benchmarks}
        return {key: note for key, note in notes.items() if note}

    def runnable(self) -> list[str]:
        skipped = self.skipped()
        return [key for key in self.benchmarks if key not in skipped]

    def plan(self) -> list[groups.PlannedRun]:
        return [groups.PlannedRun((key, method), seed, method_config(
                    BENCHMARKS[key].scales[self.scale], method, seed))
                for key in self.runnable() for method in METHODS for seed in self.seeds]

    def to_dict(self) -> dict:
        return {"scale": self.scale, "benchmarks": list(self.benchmarks),
                "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, values: dict) -> "ReproSpec":
        return cls(scale=values["scale"], benchmarks=tuple(values["benchmarks"]),
                   seeds=tuple(values["seeds"]))


def list_reproductions(store) -> list[ReproSpec]:
    """Reproductions found in the store, newest first."""
    return groups.specs_in_store(store, "reproduce:", "reproduce", ReproSpec.from_dict)


def launch(store, spec: ReproSpec, backend=None) -> list[int]:
    """Queue the missing runs for background workers (or `backend`, see sweeps.launch)."""
    spec.validate()
    submit = backend.submit_missing if backend else groups.submit_missing
    return submit(store, spec.group, spec.plan(), info={"reproduce": spec.to_dict()})


def run_here(store, spec: ReproSpec, on_run_done=None, backend=None) -> int:
    """Train the missing runs from this process (here, or on `backend`); how many ran."""
    spec.validate()
    run = backend.run_missing if backend else groups.run_missing
    return run(store, spec.group, spec.plan(), info={"reproduce": spec.to_dict()},
               on_run_done=on_run_done)


# --- results

@dataclass
class ReproResults:
    spec: ReproSpec
    matched: list[dict | None]
    seeds: list[dict]                # one row per finished run, with speedup and final_change
    cells: dict[tuple, dict]         # (benchmark, method) -> aggregated row
    skipped: dict[str, str]          # benchmark -> note
    dive_vs_ada: dict[str, tuple]    # benchmark -> (mean, se) of AdaBatch time / DiveBatch's
    peak_bound: dict[str, float | None] = field(default_factory=dict)  # benchmark -> largest
    # delta * n * Delta_hat DiveBatch (no LR scaling) proposed, over its seeds

    @property
    def progress(self) -> dict:
        return groups.progress(self.matched)

    @property
    def done(self) -> bool:
        counts = self.progress
        return counts["running"] == 0 and counts["queued"] == 0

    def benchmarks(self) -> list[str]:
        return [key for key in self.spec.benchmarks if key not in self.skipped]


def results(store, spec: ReproSpec) -> ReproResults:
    planned = spec.plan()
    matched = groups.match_runs(store, spec.group, planned)
    records = store.records_many([run["id"] for run in matched if run])
    rows = seed_stats.seed_results(planned, matched, records)
    rows = seed_stats.with_speedups(rows, is_baseline=lambda r: r["cell"][1] == "sgd_small",
                                same=lambda r: r["cell"][0])
    cells = {row["cell"]: row for row in seed_stats.aggregate(
        rows, [(key, method) for key in spec.runnable() for method in METHODS],
        len(spec.seeds))}
    dive_vs_ada = {key: seed_stats.mean_se(_paired_ratios(rows, key, "adabatch", "divebatch"))
                   for key in spec.runnable()}
    peak = {key: _peak_bound([records.get(run["id"], []) for p, run in zip(planned, matched)
                              if run and p.cell == (key, "divebatch")])
            for key in spec.runnable()}
    return ReproResults(spec, matched, rows, cells, spec.skipped(), dive_vs_ada, peak)


def _peak_bound(runs_records: list[list[dict]]) -> float | None:
    """The largest proposal delta * n * Delta_hat in DiveBatch's measured epochs (n: the
    samples of its first epoch)."""
    proposals = [r["delta"] * records[0]["samples_seen"] * r["diversity"]
                 for records in runs_records if records for r in records
                 if r.get("diversity") is not None and r.get("delta") is not None]
    return max(proposals) if proposals else None


def _paired_ratios(rows: list[dict], benchmark: str, numerator: str, denominator: str):
    """Per seed: `numerator` method's time to target / `denominator` method's."""
    times = {(r["cell"][1], r["seed"]): r["time_to_target"] for r in rows
             if r["cell"][0] == benchmark}
    for seed in {r["seed"] for r in rows}:
        top, bottom = times.get((numerator, seed)), times.get((denominator, seed))
        if top and bottom:
            yield top / bottom


def curves_records(store, result: ReproResults, seed: int | None = None) -> dict:
    """{benchmark: [(method label, records)]} for one seed (default: the first)."""
    seed = result.spec.seeds[0] if seed is None else seed
    chosen = [(p.cell, run) for p, run in zip(result.spec.plan(), result.matched)
              if run and p.seed == seed]
    records = store.records_many([run["id"] for _, run in chosen])
    out: dict[str, list] = {}
    for (key, method), run in chosen:
        out.setdefault(key, []).append((METHODS[method], records[run["id"]]))
    return out
