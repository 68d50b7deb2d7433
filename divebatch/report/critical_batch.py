"""The critical-batch measurement for readers: labels, the chart over training and the
sentence under it (divebatch.experiments.critical_batch holds the numbers)."""

from __future__ import annotations

import math


def critical_label(summary: dict) -> str:
    """B_crit of one checkpoint in words a table can hold: "~ 24", "> 1024" (steps still fell
    as 1 / B at the largest batch), "< 8" (they did not fall from the smallest), , "no decrease" when the
    smallest batch did not lower the loss (no target), "" with fewer than two branches
    reaching the target."""
    fit = summary.get("fit")
    if summary.get("loss") is not None and summary.get("target") is None:
        return "no decrease"  # the smallest batch did not lower the loss: nothing to reach
    if not fit:
        return ""
    sizes = [branch["batch_size"] for branch in summary["branches"]
             if branch["steps_to_target"] is not None]
    if fit["bound"] == "above":
        return f"> {max(sizes)}"
    if fit["bound"] == "below":
        return f"< {min(sizes)}"
    return f"~ {fit['critical_batch']:.3g}" if math.isfinite(fit["critical_batch"]) else ""
