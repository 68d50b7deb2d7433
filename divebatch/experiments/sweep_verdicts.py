"""The plain-words verdict under a sweep, and its cells' mean speed-ups: a sweep whose
baseline collapsed (diverged, or ended more than FLAG_POINTS below its best) opens its verdict
with that warning, not with a speed-up. (verdicts.py holds the verdict under a comparison of
runs, and names these too.)

>>> format_mean_se(2.3125, 0.1234, suffix="x")
'2.31 ± 0.12x'
>>> format_mean_se(-0.28, 5.6e-15)  # an error below the mean's last shown digit
'-0.28 ± 0'
"""

from __future__ import annotations

import math

from divebatch.experiments import sweeps
from divebatch.experiments.analysis import FLAG_POINTS


def format_speedup(cell: dict) -> str:
    """A cell's mean speed-up, with a warning when some seeds' speed-ups came from a run
    that ended more than FLAG_POINTS below its best."""
    text = format_mean_se(cell["speedup"], cell["speedup_se"], suffix="x")
    if text and cell.get("flagged"):
        text += (f" ⚠ {cell['flagged']} of {seeds(cell['finished'])}: a run ended more than "
                 f"{FLAG_POINTS:g} points below its best")
    return text


def format_mean_se(mean: float | None, se: float | None, digits: int = 3,
                   scale: float = 1.0, suffix: str = "") -> str:
    """'2.31 ± 0.12x', '2.31x' (one seed) or '' (nothing finished)."""
    if mean is None:
        return ""
    text = f"{mean * scale:.{digits}g}"
    if se is not None:
        last_digit = 10.0 ** (math.floor(math.log10(abs(mean * scale) or 1.0)) - digits + 1)
        noise = se * scale < last_digit / 2  # rounding noise at the shown precision
        text += " ± 0" if noise else f" ± {se * scale:.{max(digits - 1, 1)}g}"
    return text + suffix


def seeds(count: int) -> str:
    """'1 seed', '3 seeds'."""
    return f"{count} seed{'' if count == 1 else 's'}"


def sweep_verdict(result: sweeps.SweepResults) -> str:
    """Plain words under a sweep: first a warning when the baseline collapsed, then its
    fastest DiveBatch cell against the baseline, "so far" until every planned run finished."""
    base = result.cells[0] if result.cells else None
    if base is None:
        return ""
    cells = [c for c in result.cells[1:] if c["speedup"] is not None]
    counts = result.progress
    so_far = counts["finished"] < counts["total"]
    lines = [_collapse_warning(base, result.metric)]
    if cells:
        best = max(cells, key=lambda c: c["speedup"])
        speed = format_mean_se(best["speedup"], best["speedup_se"], suffix="x")
        line = (f"{'the' if so_far else 'The'} fastest cell, {best['label']}, reached its own "
                f"target at {speed} the speed of {base['label']}")
        if result.metric == "accuracy" and best["final_change"] is not None:
            change = 100 * best["final_change"]
            line += f" and ended {abs(change):.1f} points {'higher' if change >= 0 else 'lower'}"
        line += f" (mean over {seeds(best['finished'])})."
        if best.get("flagged"):
            line += (f" ⚠ {best['flagged']} of its seeds compare a run that ended more than "
                     f"{FLAG_POINTS:g} points below its best: those speed-ups are "
                     f"not meaningful.")
        lines.append((f"So far ({counts['finished']} of {counts['total']} runs finished), "
                      if so_far else "") + line)
    return " ".join(line for line in lines if line)


def _collapse_warning(base: dict, metric: str) -> str:
    """'' unless some seeds of the baseline diverged or ended more than FLAG_POINTS below
    their best: then every speed-up over them is not meaningful (or not measured)."""
    how = [f"diverged in {base['diverged']}"] if base["diverged"] else []
    if base["flagged"]:
        how.append(f"ended more than {FLAG_POINTS:g} points below its best in "
                   f"{base['flagged']}")
    if not how:
        return ""
    name = base["label"].removesuffix(" (baseline)")
    return (f"⚠ The baseline, {name}, collapsed in {base['diverged'] + base['flagged']} of "
            f"{seeds(base['finished'])} ({' and '.join(how)}): a speed-up over a collapsed run "
            f"is not meaningful (it meets its own low final target early, or never has one). "
            f"Compare the final {'accuracies' if metric == 'accuracy' else 'losses'} instead.")
