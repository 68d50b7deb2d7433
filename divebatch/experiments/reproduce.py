"""Reproduce the paper's comparison at a scale this machine can run.

DiveBatch against SGD at the small batch B_0, SGD at the large batch B_max and AdaBatch, each
with and without linear LR scaling, on benchmarks that run anywhere (synthetic convex,
synthetic non-convex, scikit-learn's digits) and on scaled-down CIFAR-10/100 and
Tiny-ImageNet where their files and a GPU are present. Every method runs once per seed; like
the paper we report the training time to within 1 point of each run's own final accuracy,
as a speed-up over SGD at B_0 of the same seed (absolute seconds differ by machine), beside
the change in final accuracy. `findings()` says, from the numbers, where ours agree with the
paper's and where they do not.

>>> spec = ReproSpec(scale="tiny", benchmarks=("convex",), seeds=(0,))
>>> len(spec.plan()), spec.plan()[0].cell
(7, ('convex', 'sgd_small'))
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from divebatch.runs import groups
from divebatch.experiments import sweeps
from divebatch.config import RunConfig

SCALES = ("tiny", "quick", "full")  # tiny: a smoke test in seconds, numbers meaningless
DEFAULT_SEEDS = {"tiny": 1, "quick": 3, "full": 5}

# DESIGN.md section 1: time to within 1 point of own final accuracy (s), final accuracy (%),
# no LR rescaling; ResNet-18, B_0 = 128 (Tiny-ImageNet 256), B_max = 2048, 200 epochs.
PAPER = {
    "CIFAR-10": {"sgd_small": (3189, 95.5), "adabatch": (1361, 94.9), "divebatch": (638, 93.8)},
    "CIFAR-100": {"sgd_small": (2808, 74.9), "adabatch": (1263, 73.0),
                  "divebatch": (1192, 71.8)},
    "Tiny-ImageNet": {"sgd_small": (9703, 55.5), "adabatch": (7146, 53.7),
                      "divebatch": (6478, 51.7)},
}
PAPER_BASELINE = {"CIFAR-10": "SGD B=128", "CIFAR-100": "SGD B=128",
                  "Tiny-ImageNet": "SGD B=256"}

METHODS = {  # key -> label; "_linear": LR multiplied by B_new / B_old on every batch change
    "sgd_small": "SGD, small batch B0", "sgd_large": "SGD, large batch B_max",
    "sgd_large_linear": "SGD, large batch, linear LR", "adabatch": "AdaBatch",
    "adabatch_linear": "AdaBatch, linear LR", "divebatch": "DiveBatch",
    "divebatch_linear": "DiveBatch, linear LR"}

# Shared by every benchmark: the paper's delta, cosine schedule, and diversity measured only
# where the method needs it (the runs are timed).
COMMON = dict(delta=0.1, schedule="cosine", diversity_every_epoch=False)


@dataclass(frozen=True)
class Benchmark:
    key: str
    title: str
    paper: str | None                    # the paper's dataset it is, if any
    scales: dict = field(default_factory=dict)  # scale -> RunConfig fields
    needs_gpu: bool = False


def _scales(problem: str, sizes: dict, **fields) -> dict:
    """tiny / quick / full settings: B_max / B_0 = 16 as in the paper (2048 / 128) and R
    about a tenth of the epochs (paper: 20 of 200). `sizes`: per-scale problem sizes."""
    schedule = {"tiny": dict(epochs=3, batch_size=8, max_batch_size=128, resize_every=1),
                "quick": dict(epochs=20, batch_size=32, max_batch_size=512, resize_every=2),
                "full": dict(epochs=50, batch_size=32, max_batch_size=512, resize_every=5)}
    return {scale: {**COMMON, "problem": problem, **steps, **fields, **sizes.get(scale, {})}
            for scale, steps in schedule.items()}


def _image(problem: str) -> dict:
    """The paper's recipe (ResNet-18, B_0 128 or 256, B_max 2048) on fewer images and
    epochs: `presets.scaled_down` for full, a third of it for quick."""
    from divebatch.presets import scaled_down
    full = {**scaled_down(problem), "diversity_every_epoch": False}
    quick = {**full, "epochs": 10, "resize_every": 2, "n_samples": 5000}
    return {"tiny": quick, "quick": quick, "full": full}


SYNTHETIC_SIZES = {"tiny": {"n_samples": 300, "dim": 8}, "quick": {"n_samples": 3000},
                   "full": {"n_samples": 12000}}

BENCHMARKS = {b.key: b for b in (
    Benchmark("convex", "synthetic convex: logistic regression", None,
              _scales("logistic", SYNTHETIC_SIZES, dim=32, lr=0.05, momentum=0.0)),
    Benchmark("nonconvex", "synthetic non-convex: 4-class MLP", None,
              _scales("classification", SYNTHETIC_SIZES, model="mlp", hidden=64, lr=0.05,
                      momentum=0.9)),
    Benchmark("digits", "digits 8x8, small CNN", None,
              _scales("digits", {}, model="cnn", lr=0.05, momentum=0.9)),
    Benchmark("cifar10", "CIFAR-10, ResNet-18 scaled down", "CIFAR-10", _image("cifar10"),
              needs_gpu=True),
    Benchmark("cifar100", "CIFAR-100, ResNet-18 scaled down", "CIFAR-100",
              _image("cifar100"), needs_gpu=True),
    Benchmark("tiny_imagenet", "Tiny-ImageNet, ResNet-18 scaled down", "Tiny-ImageNet",
              _image("tiny_imagenet"), needs_gpu=True),
)}
DEFAULT_BENCHMARKS = tuple(BENCHMARKS)


def method_config(fields: dict, method: str, seed: int) -> RunConfig:
    """The benchmark's fields run with one of METHODS."""
    values = {**fields, "seed": seed, "lr_scaling": "none"}
    small, large = fields["batch_size"], fields["max_batch_size"]
    if method == "sgd_small":
        values |= {"method": "sgd"}
    elif method.startswith("sgd_large"):
        values |= {"method": "sgd", "batch_size": large}
        if method.endswith("_linear"):
            values["lr"] = fields.get("lr", RunConfig.lr) * large / small
    else:
        values |= {"method": method.removesuffix("_linear"),
                   "lr_scaling": "linear" if method.endswith("_linear") else "none"}
    values["name"] = f"{METHODS[method]} seed={seed}"
    return RunConfig.from_dict(values)


def availability(benchmark: Benchmark, scale: str) -> str | None:
    """None when the benchmark can run here, else a one-line note saying why not."""
    if benchmark.needs_gpu:
        import torch
        if not torch.cuda.is_available():
            return "needs a CUDA GPU to finish in reasonable time, and this machine has none"
    from divebatch.data.problems import check_available
    try:
        check_available(RunConfig.from_dict(benchmark.scales[scale]))
    except ValueError as error:
        return str(error)
    return None


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
    rows = sweeps.seed_results(planned, matched, records)
    rows = sweeps.with_speedups(rows, is_baseline=lambda r: r["cell"][1] == "sgd_small",
                                same=lambda r: r["cell"][0])
    cells = {row["cell"]: row for row in sweeps.aggregate(
        rows, [(key, method) for key in spec.runnable() for method in METHODS],
        len(spec.seeds))}
    dive_vs_ada = {key: sweeps.mean_se(_paired_ratios(rows, key, "adabatch", "divebatch"))
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


def paper_speedup(dataset: str, method: str) -> float:
    return PAPER[dataset]["sgd_small"][0] / PAPER[dataset][method][0]


def paper_change(dataset: str, method: str) -> float:
    """Final accuracy minus SGD small batch's, in points."""
    return PAPER[dataset][method][1] - PAPER[dataset]["sgd_small"][1]


# --- judging agreement from the numbers

SAME_ACCURACY_POINTS = 0.5   # |change| below this (or below 2 standard errors) is "about the same"
SLIGHT_LOSS_POINTS = 5.0     # a drop up to this many points is "slightly lower"


def accuracy_verdict(change_points: float, se_points: float | None = None) -> str:
    """'higher', 'about the same', 'slightly lower' or 'much lower'."""
    tolerance = max(SAME_ACCURACY_POINTS, 2 * (se_points or 0.0))
    if abs(change_points) <= tolerance:
        return "about the same"
    if change_points > 0:
        return "higher"
    return "slightly lower" if change_points >= -SLIGHT_LOSS_POINTS else "much lower"


UNCLEAR = "no clear difference"


def speed_verdict(speedup: float, se: float | None = None) -> str:
    """'faster', 'slower' or 'no clear difference' (1 within two standard errors)."""
    if se is not None and abs(speedup - 1.0) <= 2 * se:
        return UNCLEAR
    return "faster" if speedup > 1.0 else "slower"


def _range(values: list[float], fmt: str) -> str:
    low, high = min(values), max(values)
    return format(low, fmt) if low == high else f"{format(low, fmt)} to {format(high, fmt)}"


def _one_word(words: list[str]) -> str:
    return words[0] if len(set(words)) == 1 else "mixed"


def findings(result: ReproResults) -> list[dict]:
    """Claims of the paper checked against our numbers, per benchmark of ours: dicts with
    benchmark, claim, paper (text), ours (text) and agrees (True, False, or None while
    when ours shows no clear difference or nothing has finished). The paper's side is judged
    by the same rules as ours."""
    out = []
    for key in result.benchmarks():
        datasets = [BENCHMARKS[key].paper] if BENCHMARKS[key].paper else list(PAPER)
        dive = result.cells[(key, "divebatch")]
        speeds = [paper_speedup(d, "divebatch") for d in datasets]
        flag = (f" (⚠ {dive['flagged']} of {dive['finished']} seeds compare a run that ended "
                f"more than 2 points below its best)" if dive.get("flagged") else "")
        out.append(_over_collapse(result.cells[(key, "sgd_small")], _finding(
            key, "DiveBatch is faster than SGD at the small batch",
            _one_word([speed_verdict(s) for s in speeds]), f"{_range(speeds, '.2f')}x",
            dive["speedup"], dive["speedup_se"], speed_verdict, "{:.2f}", "x" + flag)))
        changes = [paper_change(d, "divebatch") for d in datasets]
        out.append(_finding(key, "DiveBatch's final accuracy is slightly lower than SGD's at "
                                 "the small batch",
                            _one_word([accuracy_verdict(c) for c in changes]),
                            f"{_range(changes, '+.1f')} points", _points(dive["final_change"]),
                            _points(dive["final_change_se"]), accuracy_verdict, "{:+.2f}",
                            " points", favourable=("about the same", "higher")))
        ratios = [PAPER[d]["adabatch"][0] / PAPER[d]["divebatch"][0] for d in datasets]
        mean, se = result.dive_vs_ada[key]
        out.append(_finding(key, "DiveBatch is faster than AdaBatch",
                            _one_word([speed_verdict(r) for r in ratios]),
                            f"{_range(ratios, '.2f')}x", mean, se, speed_verdict, "{:.2f}",
                            "x (AdaBatch's time / DiveBatch's)"))
    return [_so_far(result.cells[(f["benchmark"], "divebatch")], f) for f in out]


def _over_collapse(base: dict, finding: dict) -> dict:
    """A speed-up over SGD at the small batch, opened by a warning and left unclear when
    some of its seeds collapsed (diverged, or ended more than 2 points below their best)."""
    collapsed = base.get("diverged", 0) + base.get("flagged", 0)
    if not collapsed or finding["ours"] == NO_RUNS:
        return finding
    return {**finding, "agrees": None, "favourable": False,
            "ours": f"⚠ SGD at the small batch collapsed in {collapsed} of "
                    f"{base['finished']} seeds, so speed-ups over it are not meaningful; "
                    + finding["ours"]}


def _so_far(dive: dict, finding: dict) -> dict:
    """A finding from DiveBatch runs not all finished says so."""
    done, planned = dive.get("finished"), dive.get("planned")
    if done is None or planned is None or not done or done >= planned:
        return finding
    return {**finding, "ours": f"{finding['ours']} (so far: {done} of {planned} seeds)"}


def finding_line(finding: dict) -> str:
    word = ("DIFFERS, in DiveBatch's favour" if finding.get("favourable")
            else VERDICT_WORDS[finding["agrees"]])
    return (f"{word} - {BENCHMARKS[finding['benchmark']].title}: "
            f"{finding['claim']}? Paper: {finding['paper']}. Ours: {finding['ours']}"
            + (" (no accuracy loss: not a failure)" if finding.get("favourable") else "") + ".")


VERDICT_WORDS = {True: "AGREES", False: "DIFFERS", None: "UNCLEAR"}
NO_RUNS = "no finished runs yet"


def _points(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction


def _finding(benchmark: str, claim: str, paper_word: str, paper_numbers: str,
             mean: float | None, se: float | None, verdict, fmt: str, unit: str,
             favourable: tuple[str, ...] = ()) -> dict:
    """`favourable`: our verdicts that differ from the paper's in DiveBatch's favour."""
    finding = {"benchmark": benchmark, "claim": claim,
               "paper": f"{paper_word}, {paper_numbers}"}
    if mean is None:
        return {**finding, "ours": NO_RUNS, "agrees": None,
                "favourable": False}
    word = verdict(mean, se)
    numbers = fmt.format(mean) + ("" if se is None else f" ± {se:.2g}")
    agrees = None if word == UNCLEAR else word == paper_word
    return {**finding, "ours": f"{word}, {numbers}{unit}", "agrees": agrees,
            "favourable": agrees is False and word in favourable}


def explanation(result: ReproResults, key: str) -> str:
    """One line saying why the benchmark's verdicts came out as they did: whether the batch
    grew, and when the methods reached their targets."""
    fields = BENCHMARKS[key].scales[result.spec.scale]
    b0, b_max = fields["batch_size"], fields["max_batch_size"]
    every, epochs = fields["resize_every"], fields["epochs"]
    dive = result.cells[(key, "divebatch")]
    if dive["final_batch_size"] is None:
        return f"{BENCHMARKS[key].title}: no finished DiveBatch run yet."
    peak = result.peak_bound.get(key)
    bound = "no measurement" if peak is None else f"{peak:.3g}"
    if dive["final_batch_size"] <= b0:
        batch = (f"DiveBatch never grew the batch: its bound δ·n·Δ̂ peaked at {bound}, below "
                 f"B0 = {b0}, so it trained like SGD at B0 and paid for measuring diversity")
    elif dive["final_batch_size"] >= b_max:
        batch = (f"DiveBatch's bound δ·n·Δ̂ reached {bound}, so its batch went from B0 = {b0} "
                 f"to the cap B_max = {b_max}")
    else:
        batch = (f"DiveBatch grew the batch from B0 = {b0} to {dive['final_batch_size']:.0f} "
                 f"on average (bound δ·n·Δ̂ up to {bound}, cap {b_max})")
    reached = [result.cells[(key, m)]["epochs_to_target"] for m in
               ("sgd_small", "divebatch", "adabatch")]
    reached = [e for e in reached if e is not None]
    if not reached:
        return f"{BENCHMARKS[key].title}: {batch}."
    latest = max(reached)
    if latest <= every:
        timing = (f"every method reached its own target within {latest:.0f} of {epochs} "
                  f"epochs, before the first resize after epoch {every} could act, so the "
                  f"speed-ups mostly measure the cost of measuring, not larger batches")
    else:
        timing = (f"the methods reached their own targets after {min(reached):.0f} to "
                  f"{latest:.0f} of {epochs} epochs (resizes every {every})")
    return f"{BENCHMARKS[key].title}: {batch}; {timing}."


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

