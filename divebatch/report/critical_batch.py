"""The critical-batch measurement for readers: labels, the chart over training and the
sentence under it (divebatch.experiments.critical_batch holds the numbers)."""

from __future__ import annotations

import math

from divebatch.presets import VARIANTS, variant_of
from divebatch.report.figures import RunData
from divebatch.report.run_labels import run_label
from divebatch.report.series import proposals
from divebatch.words import and_list


def critical_label(summary: dict) -> str:
    """B_crit of one checkpoint in words a table can hold: "~ 24" (a batch size: a whole
    number, "< 1" below one sample), "> 1024" (steps still fell
    as 1 / B at the largest batch), "< 8" (they did not fall from the smallest), "no decrease"
    when no batch size lowered the loss (no target), "" with fewer than two branches
    reaching the target."""
    fit = summary.get("fit")
    if summary.get("loss") is not None and summary.get("target") is None:
        return "no decrease"  # no batch size lowered the loss: nothing to reach
    if not fit:
        return ""
    sizes = [branch["batch_size"] for branch in summary["branches"]
             if branch["steps_to_target"] is not None]
    if fit["bound"] == "above":
        return f"> {max(sizes)}"
    if fit["bound"] == "below":
        return f"< {min(sizes)}"
    value = fit["critical_batch"]
    if not math.isfinite(value):
        return ""
    return f"~ {round(value)}" if value >= 0.5 else "< 1"


def measured_points(summaries: list[dict]) -> list[dict]:
    """The checkpoints with a B_crit to draw: epoch, value (the fit's B_crit, or the range
    end it lies beyond), bound and label."""
    points = []
    for summary in summaries:
        label, fit = critical_label(summary), summary.get("fit")
        if not fit or label in ("", "no decrease"):
            continue
        reached = [b["batch_size"] for b in summary["branches"] if b["steps_to_target"] is not None]
        value = {"above": max(reached), "below": min(reached)}.get(fit["bound"],
                                                                  fit["critical_batch"])
        points.append({"epoch": summary["epoch"], "value": float(value), "bound": fit["bound"],
                       "label": label})
    return points


def batch_used(run: RunData, epoch: int) -> int | None:
    """The batch size `run` trained with just after `epoch` (its last one if it ended)."""
    sizes = [r["batch_size"] for r in run.records if r["epoch"] == epoch + 1]
    if sizes:
        return int(sizes[0])
    return int(run.records[-1]["next_batch_size"]) if run.records else None


def proposal_at(run: RunData, epoch: int) -> float | None:
    """DiveBatch's proposal delta * n * Delta_hat from its last measurement up to `epoch`
    (at epoch 0: its first, at the end of epoch 1)."""
    if not run.n_train or variant_of(run.run["config"]) != "divebatch":
        return None
    values = proposals(run.record_columns, run.n_train)
    epochs = run.record_columns["epoch"]
    seen = [v for e, v in zip(epochs.tolist(), values.tolist()) if e <= max(epoch, 1)
            and math.isfinite(v)]
    return seen[-1] if seen else None


def critical_batch_sentence(summaries: list[dict], runs: list[RunData]) -> str:
    """What the chart shows for this problem, in plain words: how the measured critical batch
    size moved over training, where each method's batch sat against it, and how DiveBatch's
    proposal and the noise scale B_simple compare with it."""
    points = measured_points(summaries)
    if not points:
        if summaries and all(critical_label(s) == "no decrease" for s in summaries):
            return ("At every measured checkpoint no batch size lowered the loss within its "
                    "budget at this learning rate (each sat at its noise floor): there was no "
                    "decrease to measure the critical batch size on. Branch from earlier "
                    "epochs.")
        return "No critical batch size measured yet: start a measurement."
    first, last = points[0], points[-1]
    peak = max(points, key=lambda p: p["value"])
    middle = peak is not first and peak is not last and peak["value"] > last["value"]
    trend = ("The measured critical batch size was "  # every point the chart draws
             + and_list([f"{p['label']} at epoch {p['epoch']}" for p in points]))
    parts = [trend + _trend_word(first, last, middle) + "."]
    if all(p["bound"] == "below" for p in points):
        parts.append("The steps to the target hardly fell as the batch grew: at this learning "
                     "rate the step size, not the gradient noise, limits progress.")
    elif all(p["bound"] == "above" for p in points):
        parts.append("The steps fell in proportion to 1/B up to the largest batch tried: "
                     "gradient noise limits progress, and every larger batch was worth it.")
    floored = [b["batch_size"] for s in summaries if s["epoch"] == last["epoch"]
               for b in s["branches"] if b.get("floor")]
    if floored:
        parts.append(f"At epoch {last['epoch']} batches below {max(floored) * 2} could not "
                     f"lower the loss at all in their budget: at this learning rate their "
                     f"gradient noise holds them at a higher loss (a noise floor), which only a "
                     f"larger batch (or a smaller LR) gets under.")
    stalled = [s["epoch"] for s in summaries if critical_label(s) == "no decrease"]
    if stalled:
        parts.append(f"At epoch{'s' if len(stalled) > 1 else ''} "
                     f"{', '.join(map(str, stalled))} no batch size lowered the loss by 1 % "
                     f"within its budget: at this learning rate the run had nothing left to "
                     f"gain there, whatever the batch.")
    parts += _placements(runs, last)
    parts.append(_estimates(summaries, runs, last))
    return " ".join(dict.fromkeys(p for p in parts if p))  # no sentence said twice


def _trend_word(first: dict, last: dict, middle: bool) -> str:
    if last is first or first["bound"] != "inside" and first["bound"] == last["bound"]:
        return ""
    ratio = last["value"] / first["value"] if first["value"] > 0 else math.inf
    return (": it grew as the loss fell, as Merrill et al. found, then fell back (a decaying "
            "learning rate lowers it again)" if ratio > 1.5 and middle else
            ": it grew as the loss fell, as Merrill et al. found" if ratio > 1.5 else
            ": it shrank" if ratio < 1 / 1.5 else
            ": it rose, then fell back" if middle else ": about flat")


def _placements(runs: list[RunData], point: dict) -> list[str]:
    """Where each method's batch sat against the measured value at `point`: one sentence per
    place, naming every method there (so no explanation is said twice)."""
    by_place: dict[str, list[tuple[str, int]]] = {}
    for run in runs:
        used = batch_used(run, point["epoch"])
        if used is not None:
            name = VARIANTS.get(variant_of(run.run["config"]), run_label(run.run))
            by_place.setdefault(_place(used, point), []).append((name, used))
    sentences = []
    for where, methods in by_place.items():
        sizes = {used for _, used in methods}
        if len(methods) > 1:
            where = where.replace("its steps", "their steps")
        if len(sizes) == 1:
            sentences.append(f"{and_list([name for name, _ in methods])} trained at B = "
                             f"{sizes.pop()} at epoch {point['epoch']}, {where}.")
        else:
            sentences.append(f"At epoch {point['epoch']} "
                             + and_list([f"{name} (B = {used})" for name, used in methods])
                             + f" trained {where}.")
    return sentences


def _place(used: int, point: dict) -> str:
    if point["bound"] == "above" and used <= point["value"] or used < point["value"] / 2:
        where = "below it: a larger batch would have cut its steps nearly in proportion"
    elif point["bound"] == "below" and used >= point["value"] or used > 2 * point["value"]:
        where = ("at or above it: a larger batch cuts few steps there and costs more examples "
                 "per step, so it pays off only where a large step takes little more time "
                 "than a small one")
    else:
        where = "near it"
    return where


def _estimates(summaries: list[dict], runs: list[RunData], point: dict) -> str:
    """How B_simple and DiveBatch's proposal compare with the measured value there."""
    if point["bound"] != "inside":
        return ""
    words = []
    summary = next(s for s in summaries if s["epoch"] == point["epoch"])
    if summary.get("noise_scale") is not None:
        words.append(f"the noise scale B_simple read {summary['noise_scale']:,.0f} "
                     f"({_times(summary['noise_scale'] / point['value'])})")
    proposal = next((p for run in runs if (p := proposal_at(run, point["epoch"])) is not None),
                    None)
    if proposal is not None:
        words.append(f"DiveBatch's proposal δ·n·Δ̂ was {proposal:,.0f} "
                     f"({_times(proposal / point['value'])})")
    return f"At epoch {point['epoch']} {' and '.join(words)}." if words else ""


def _times(ratio: float) -> str:
    return f"{ratio:.2g}x the measured value"
