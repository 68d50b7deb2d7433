"""The paper's metric and run summaries, computed from plain record dicts.

Time to target (DiveBatch paper): the first epoch whose validation accuracy is at least the
run's own final accuracy minus 1 point, and the training time (evaluation excluded) summed up
to that epoch. Regression problems have no accuracy; for them the target is the run's own
final validation loss times (1 + LOSS_TOLERANCE).

>>> recs = [{"epoch": 1, "train_time": 2.0, "val_acc": 0.5},
...         {"epoch": 2, "train_time": 2.0, "val_acc": 0.9},
...         {"epoch": 3, "train_time": 2.0, "val_acc": 0.905}]
>>> time_to_own_final(recs)
(2, 4.0)
"""

from __future__ import annotations

import math

ACC_TOLERANCE = 0.01   # one accuracy point
LOSS_TOLERANCE = 0.05  # regression: within 5% of the final validation loss


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def uses_accuracy(records: list[dict]) -> bool:
    return any(_number(r.get("val_acc")) is not None for r in records)


def final_value(records: list[dict]) -> float | None:
    """The run's final validation accuracy (or loss, for regression)."""
    if not records:
        return None
    key = "val_acc" if uses_accuracy(records) else "val_loss"
    return _number(records[-1].get(key))


def own_target(records: list[dict]) -> float | None:
    final = final_value(records)
    if final is None:
        return None
    if uses_accuracy(records):
        return final - ACC_TOLERANCE
    return final * (1.0 + LOSS_TOLERANCE)


def time_to_value(records: list[dict], target: float | None,
                  higher_is_better: bool | None = None) -> tuple[int | None, float | None]:
    """(epoch, training seconds up to and including it) when the target is first met."""
    if target is None or not records:
        return None, None
    if higher_is_better is None:
        higher_is_better = uses_accuracy(records)
    key = "val_acc" if higher_is_better else "val_loss"
    elapsed = 0.0
    for record in records:
        elapsed += float(record.get("train_time") or 0.0)
        value = _number(record.get(key))
        if value is not None and (value >= target if higher_is_better else value <= target):
            return int(record["epoch"]), elapsed
    return None, None


def time_to_own_final(records: list[dict]) -> tuple[int | None, float | None]:
    """The paper's metric: epoch and training time to within 1 point of own final accuracy."""
    return time_to_value(records, own_target(records))


def measurement_cost(records: list[dict]) -> tuple[float | None, float | None]:
    """(mean ms per step in epochs that measured diversity, in epochs that did not): the cost
    of measuring. Over the batch sizes that occur both ways when there are any (like for
    like); (x, None) or (None, x) when the run has only one kind of epoch."""
    by_kind: dict[bool, dict[int, list[float]]] = {True: {}, False: {}}
    for record in records:
        step_ms = _number(record.get("step_ms"))
        if step_ms is not None:
            measured = record.get("diversity") is not None
            by_kind[measured].setdefault(record.get("batch_size"), []).append(step_ms)
    shared = set(by_kind[True]) & set(by_kind[False])
    return _mean_ms(by_kind[True], shared), _mean_ms(by_kind[False], shared)


def _mean_ms(groups: dict[int, list[float]], shared: set) -> float | None:
    values = [v for key, group in groups.items() if not shared or key in shared for v in group]
    return sum(values) / len(values) if values else None


def common_target(records_by_run: dict[int, list[dict]]) -> float | None:
    """A target every compared run reaches: the least demanding of their own targets."""
    targets = [own_target(r) for r in records_by_run.values() if r]
    targets = [t for t in targets if t is not None]
    if not targets:
        return None
    accuracy = any(uses_accuracy(r) for r in records_by_run.values())
    return min(targets) if accuracy else max(targets)


def summarize(run: dict, records: list[dict], common: float | None = None) -> dict:
    """One row of the comparison table."""
    config = run.get("config") or {}
    epoch, seconds = time_to_own_final(records)
    step_ms_measured, step_ms_plain = measurement_cost(records)
    common_epoch, common_seconds = time_to_value(records, common)
    return {
        "id": run.get("id"), "name": run.get("name") or "", "status": run.get("status"),
        "problem": config.get("problem"), "method": method_label(config),
        "epochs": len(records),
        "final_acc": _number(records[-1].get("val_acc")) if records else None,
        "final_val_loss": _number(records[-1].get("val_loss")) if records else None,
        "epochs_to_target": epoch, "time_to_target": seconds,
        "epochs_to_common": common_epoch, "time_to_common": common_seconds,
        "train_time": sum(float(r.get("train_time") or 0.0) for r in records),
        "samples_seen": records[-1].get("samples_seen") if records else 0,
        "final_batch_size": records[-1].get("next_batch_size") if records else None,
        "step_ms_measured": step_ms_measured, "step_ms_plain": step_ms_plain,
    }


def method_label(config: dict) -> str:
    """e.g. 'DiveBatch (delta=0.1)', 'SGD B=128', 'AdaBatch'."""
    method = config.get("method")
    if method == "sgd":
        return f"SGD B={config.get('batch_size')}"
    if method == "adabatch":
        return "AdaBatch"
    if method == "divebatch":
        return f"DiveBatch (delta={config.get('delta')})"
    return str(method)


def compare(runs: list[dict], records_by_run: dict[int, list[dict]],
            target: float | None = None) -> tuple[list[dict], float | None]:
    """Summary rows for several runs and the common target they were measured against.

    `speedup` is the first run's time to its own target over each run's (the first run is
    the baseline, as SGD at the small batch is in the paper).
    """
    common = target if target is not None else common_target(records_by_run)
    rows = [summarize(run, records_by_run.get(run["id"], []), common) for run in runs]
    baseline = rows[0]["time_to_target"] if rows else None
    for row in rows:
        row["speedup"] = (baseline / row["time_to_target"]
                          if baseline and row["time_to_target"] else None)
    return rows, common
