"""The paper's claims checked against our numbers, in words: per benchmark, whether DiveBatch
is faster than SGD at the small batch and than AdaBatch, and whether its final accuracy is
slightly lower; the paper's side judged by the same rules as ours (`speed_verdict`,
`accuracy_verdict`). `explanation` says why a benchmark's verdicts came out as they did.

>>> speed_verdict(1.3, se=0.2), accuracy_verdict(-1.7)
('no clear difference', 'slightly lower')
"""

from __future__ import annotations

from divebatch.experiments.paper_setup import BENCHMARKS, PAPER, paper_change, paper_speedup
from divebatch.experiments.reproduce import ReproResults

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
