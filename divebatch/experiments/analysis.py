"""Time-to-target metrics, their warning flag, and run summaries, from plain record dicts.

Time to the common target (what comparisons lead with): the training time (evaluation
excluded) until a run's validation accuracy first reaches the lowest best accuracy among the
compared runs minus 1 point, a level every run reached at some epoch (runs stopped before their
planned epochs do not set it unless all were, and may not reach it). Regression problems use
validation loss: the highest best loss times (1 + LOSS_TOLERANCE).

Time to own final (the DiveBatch paper's metric): the first epoch whose validation accuracy is
at least the run's own final accuracy minus 1 point. A run that ended far below its best
(unstable, collapsing) reaches that low target early, so the metric would reward it: such a
run is flagged (`drop_points` > FLAG_POINTS) and its own-final speed-up is never shown without
the flag.

>>> recs = [{"epoch": 1, "train_time": 2.0, "val_acc": 0.5},
...         {"epoch": 2, "train_time": 2.0, "val_acc": 0.9},
...         {"epoch": 3, "train_time": 2.0, "val_acc": 0.905}]
>>> time_to_own_final(recs)
(2, 4.0)
"""

from __future__ import annotations

import math

from divebatch.runs.store import ACTIVE_STATUSES

ACC_TOLERANCE = 0.01   # one accuracy point
LOSS_TOLERANCE = 0.05  # regression: within 5% of the final validation loss
FLAG_POINTS = 2.0      # a run ending more than this many points below its best is flagged


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


def measuring_time(records: list[dict]) -> float:
    """Seconds the diversity meter's own work took over these epochs (``measure_time``)."""
    return sum(float(r.get("measure_time") or 0.0) for r in records)


def measuring_share(records: list[dict]) -> float | None:
    """The share of the training time that measuring diversity took; None when unknown (no
    training time, or a measured epoch stored before ``measure_time`` was recorded)."""
    train = sum(float(r.get("train_time") or 0.0) for r in records)
    unknown = any(r.get("diversity") is not None and "measure_time" not in r for r in records)
    return None if unknown or train <= 0 else measuring_time(records) / train


def _mean_ms(groups: dict[int, list[float]], shared: set) -> float | None:
    values = [v for key, group in groups.items() if not shared or key in shared for v in group]
    return sum(values) / len(values) if values else None


def best_value(records: list[dict]) -> float | None:
    """The run's best validation accuracy (or lowest validation loss, for regression)."""
    accuracy = uses_accuracy(records)
    values = [v for r in records
              if (v := _number(r.get("val_acc" if accuracy else "val_loss"))) is not None]
    if not values:
        return None
    return max(values) if accuracy else min(values)


def drop_points(records: list[dict]) -> float | None:
    """Accuracy points between the run's best and its final epoch (None for regression)."""
    best, final = best_value(records), final_value(records)
    if not uses_accuracy(records) or best is None or final is None:
        return None
    return 100.0 * (best - final)


def flag_note(drop: float | None) -> str:
    """The warning a run gets when it ended more than FLAG_POINTS below its best, else ''."""
    if drop is None or drop <= FLAG_POINTS:
        return ""
    return f"ended {drop:.1f} points below its best: its own-final target is not meaningful"


def common_target(records_by_run: dict[int, list[dict]]) -> float | None:
    """A target every compared run reached: the lowest best accuracy minus 1 point (for
    regression: the highest best validation loss plus LOSS_TOLERANCE)."""
    runs = [r for r in records_by_run.values() if r]
    accuracy = any(uses_accuracy(r) for r in runs)
    bests = [b for r in runs if uses_accuracy(r) == accuracy
             and (b := best_value(r)) is not None]
    if not bests:
        return None
    return min(bests) - ACC_TOLERANCE if accuracy else max(bests) * (1.0 + LOSS_TOLERANCE)


def steps_at(records: list[dict], epoch: int | None) -> int | None:
    """Optimizer steps taken up to the end of `epoch` (the records' cumulative `step`)."""
    record = next((r for r in records if r.get("epoch") == epoch), None)
    return None if record is None or record.get("step") is None else int(record["step"])


# Ends that come before a run's planned epochs without saying anything about the method: the
# user stopped it, its worker died, or it failed (a diverged run is a result, judged as one).
EARLY_ENDS = ("stopped", "interrupted", "failed")


def stopped_early(run: dict, records: list[dict]) -> bool:
    """Whether the run was stopped (or interrupted, or failed) before its planned epochs: its
    last values are where it stopped, not where it would have ended."""
    planned = int((run.get("config") or {}).get("epochs") or 0)
    return run.get("status") in EARLY_ENDS and len(records) < planned


def how_it_ended(epochs: int, planned: int, status: str | None) -> str:
    """'stopped at epoch 6 of 60' ('failed at', 'interrupted at'): how verdicts, the note
    above the charts and the charts' legend say where a run that ended early ended."""
    return f"{status or 'stopped'} at epoch {epochs} of {planned}"


def where_it_ended(label: str, epochs: int, planned: int, status: str | None) -> str:
    """'#3 DiveBatch (delta=0.1) stopped at epoch 6 of 60' (how_it_ended)."""
    return f"{label} {how_it_ended(epochs, planned, status)}"


def summarize(run: dict, records: list[dict], common: float | None = None) -> dict:
    """One row of the comparison table. `active`: the run is still queued or training, so
    its numbers are so far, not final."""
    config = run.get("config") or {}
    epoch, seconds = time_to_own_final(records)
    step_ms_measured, step_ms_plain = measurement_cost(records)
    common_epoch, common_seconds = time_to_value(records, common)
    drop = drop_points(records)
    sizes = [r["batch_size"] for r in records if r.get("batch_size") is not None]
    return {
        "id": run.get("id"), "name": run.get("name") or "", "status": run.get("status"),
        "active": run.get("status") in ACTIVE_STATUSES,
        "stopped_early": stopped_early(run, records),
        "problem": config.get("problem"), "kind": config.get("method"),
        "method": method_label(config, (sizes[0], sizes[-1]) if sizes else None,
                               [r["delta"] for r in records if r.get("delta") is not None]),
        "epochs": len(records), "planned_epochs": config.get("epochs"),
        "final_acc": _number(records[-1].get("val_acc")) if records else None,
        "final_val_loss": _number(records[-1].get("val_loss")) if records else None,
        "best_acc": best_value(records) if uses_accuracy(records) else None,
        "drop_points": drop, "flag": flag_note(drop),
        "epochs_to_target": epoch, "time_to_target": seconds,
        "epochs_to_common": common_epoch, "time_to_common": common_seconds,
        "steps_to_common": steps_at(records, common_epoch),
        "train_time": sum(float(r.get("train_time") or 0.0) for r in records),
        "samples_seen": records[-1].get("samples_seen") if records else 0,
        "final_batch_size": records[-1].get("next_batch_size") if records else None,
        "batch_sizes": (sizes[0], sizes[-1]) if sizes else None,  # trained with: first, last
        "step_ms_measured": step_ms_measured, "step_ms_plain": step_ms_plain,
        "measure_time": measuring_time(records), "measure_share": measuring_share(records),
        "measure_to_common": None if common_epoch is None else measuring_time(
            [r for r in records if int(r.get("epoch") or 0) <= common_epoch]),
    }


def method_label(config: dict, batch_sizes: tuple[int, int] | None = None,
                 deltas: list[float] = ()) -> str:
    """e.g. 'DiveBatch (delta=0.1)', 'SGD B=128', 'AdaBatch'; with the first and last batch
    sizes a run trained with, what it did: 'DiveBatch (delta=0.1, B 16 -> 541)'; with the
    delta each epoch used, a hot change of it: 'DiveBatch (delta=0.1 -> 0.5, B 16 -> 541)'."""
    method = config.get("method")
    if method == "sgd":
        return f"SGD B={config.get('batch_size')}"
    first, last = batch_sizes or (None, None)
    path = f"B {first} -> {last}" if first != last else ""
    if method == "adabatch":
        return f"AdaBatch ({path})" if path else "AdaBatch"
    if method == "divebatch":
        delta = config.get("delta")
        changed = f"{delta} -> {deltas[-1]}" if deltas and deltas[-1] != delta else f"{delta}"
        return f"DiveBatch (delta={changed}" + (f", {path})" if path else ")")
    return str(method)


def compare(runs: list[dict], records_by_run: dict[int, list[dict]],
            target: float | None = None) -> tuple[list[dict], float | None]:
    """Summary rows for several runs and the common target they were measured against
    (set by the runs not stopped early, when there are some: `_target_setters`).

    The first run is the baseline (as SGD at the small batch is in the paper). `speedup`: the
    baseline's time to the common target over each run's. `speedup_own`: the same with the
    paper's own-final times; its `flag` says when either run's own-final target is not
    meaningful. `base_level`: the baseline's own target (its final accuracy minus 1 point),
    and per run the epoch, training time and optimizer steps to it (None: not reached).
    Runs should be of one problem and dataset (verdicts.group_by_data).
    """
    records_of = [records_by_run.get(run["id"], []) for run in runs]
    common = target if target is not None else common_target(_target_setters(runs, records_of))
    rows = [summarize(run, records, common) for run, records in zip(runs, records_of)]
    base = rows[0] if rows else {}
    base_level = own_target(records_of[0]) if rows else None
    higher = uses_accuracy(records_of[0]) if rows else True
    for row, records in zip(rows, records_of):  # a run alone has no speed-up: none is shown
        row["speedup"] = _ratio(base.get("time_to_common"), row["time_to_common"]) \
            if len(rows) > 1 else None
        row["speedup_own"] = _ratio(base.get("time_to_target"), row["time_to_target"]) \
            if len(rows) > 1 else None
        row["speedup_own_flag"] = _speedup_flag(row, base)
        epoch, seconds = time_to_value(records, base_level, higher)
        row.update(base_level=base_level, epochs_to_base_level=epoch,
                   time_to_base_level=seconds, steps_to_base_level=steps_at(records, epoch))
    return rows, common


def _target_setters(runs: list[dict], records_of: list[list[dict]]) -> dict[int, list[dict]]:
    """The records that set the common target: those of the runs not stopped early when
    any has an epoch (a run stopped at epoch 6 of 60 would set a target so low that every
    run meets it at once), else all of them."""
    every = {run["id"]: records for run, records in zip(runs, records_of)}
    kept = {run["id"]: records for run, records in zip(runs, records_of)
            if records and not stopped_early(run, records)}
    return kept or every


def _ratio(base: float | None, own: float | None) -> float | None:
    return base / own if base and own else None


def _speedup_flag(row: dict, base: dict) -> str:
    """Why the own-final speed-up of `row` over `base` is not meaningful, or ''."""
    if row is base or not (row["flag"] or base.get("flag")):
        return row["flag"]
    flagged = [r for r in (row, base) if r["flag"]]
    return "; ".join(f"{r['method']} {r['flag']}" for r in flagged)
