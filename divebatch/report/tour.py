"""The guided tour of a DiveBatch run: which steps a run's own records and events have
reached, what each says, and what the run must do to reach the next one.

A step's moment is an epoch found in the run itself (the first record, the first epoch whose
diversity rose while the loss fell, the first resize, the resize that hit B_max, the last
record), never a fixed epoch. Moments never go back: each is searched from the previous one,
so the steps come in the order of `STEPS`, and a run can only add steps to the end of its
list (a step the run never reaches is left out once it has ended). The last two steps come
after the run, from a race and a measurement of their own (`report.tour_sequel`).

A tour's state (in the store) is stamped with the time of its last step change
(`moved_to`); a tour on its last step, or not moved for `STALE_AFTER_S`, is over for a page
that did not take part in it (`is_over`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

TOUR_PRESET = "convex"  # the preset the tour runs: it grows the batch to B_max in a few epochs

# key: (title, the element of the lab page it highlights, by its key after the page's prefix:
# chart_<name of report.figures.CHARTS>, the race's verdict, the critical-batch chart)
STEPS = {
    "start": ("Start small", "chart_loss"),  # a flat batch size is a note, not a chart
    "diversity": ("Diversity rises as the loss falls", "chart_diversity"),
    "grows": ("The bound crosses the batch size: the batch grows", "chart_batch_size"),
    "cap": ("The cap at B_max", "chart_batch_size"),
    "end": ("What the run gained", "chart_loss"),
    "race": ("What the race verdict says", "verdict"),
    "critical": ("What the critical-batch chart says", "critical_chart"),
}
LAST_BEFORE_END = "cap"  # once this step is reached, the run may train on to its end
RESUMED = -1  # stepped_after once "resume" was sent
# A tour whose step has not changed for this long was left, not paused on: the whole tour
# (run, race and measurement of the tour preset) takes a few minutes, and a class reads a
# step in a minute or two, so half an hour without Next or Back means the instructor walked
# away (yesterday's class, a tab left open). Only pages that did not take part drop it.
STALE_AFTER_S = 30 * 60
clock = time.time  # the time a step changes, and "now" for is_over (tests replace it)


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    element: str  # the page element to highlight (a key of STEPS' second column)
    epoch: int  # the moment: the run's epoch at which the step applies
    text: str
    caption: str = ""  # where to look, under the text


def reached_steps(config: dict, n_train: int, records: list[dict], events: list[dict],
                  finished: bool) -> list[Step]:
    """The steps whose moment is among `records`, in tour order. `n_train` is the number of
    training samples (the run's info); `finished`: the run has ended (so "end" applies, and
    steps it never reached are skipped)."""
    if not records:
        return []
    by_epoch = {int(r["epoch"]): r for r in records}
    resizes = [e for e in events if e.get("kind") == "batch_size" and e.get("epoch")
               and (e.get("payload") or {}).get("new", 0) > (e.get("payload") or {}).get("old", 0)]
    finders = {"start": lambda after: int(records[0]["epoch"]),
               "diversity": lambda after: _diversity_moment(records, after),
               "grows": lambda after: _first_resize(resizes, after),
               "cap": lambda after: _cap_moment(resizes, by_epoch, config, after),
               "end": lambda after: int(records[-1]["epoch"]) if finished else None}
    steps, after = [], 0
    for key, find in finders.items():
        moment = find(after)
        if moment is None or moment not in by_epoch:
            if finished:
                continue  # never came: skipped
            break  # not yet: later steps wait for it
        title, element = STEPS[key]
        text = TEXTS[key](config, n_train, records, by_epoch[moment], resizes)
        steps.append(Step(key, title, element, moment, text,
                          f"Epoch {moment} of the run, on the outlined chart."))
        after = moment
    return steps


def run_action(steps: list[Step], index: int, finished: bool, paused_after: int | None,
               stepped_after: int | None) -> str | None:
    """What the instructor's page sends the run while the tour shows step `index`:
    "step" (paused short of the next moment: one more epoch, then paused again), "resume"
    (every step but the end was reached: train on to the end) or None (nothing to send:
    the step is reached, the run ended, or the last request is still on its way)."""
    if index < len(steps) or finished:
        return None
    if steps and steps[-1].key == LAST_BEFORE_END:
        return "resume" if stepped_after != RESUMED else None
    if paused_after is not None and paused_after != stepped_after:
        return "step"
    return None


def steps_in_all(steps: list[Step], finished: bool) -> int:
    """How many steps this tour has: all of STEPS until the tour has nothing more to wait
    for (its run, race and measurement ended), then those it reached."""
    return len(steps) if finished else len(STEPS)


def at_last_step(steps: list[Step], index: int, complete: bool) -> bool:
    """The tour shows its last step and nothing more will come (Next is disabled)."""
    return complete and index >= len(steps) - 1


def moved_to(state: dict, index: int) -> dict:
    """`state` showing step `index`, stamped with the time of this step change."""
    return {**state, "index": max(index, 0), "moved_at": clock()}


def is_over(state: dict, last_step: bool) -> bool:
    """Whether the tour of `state` is over for a page that did not take part in it: it shows
    its last step (`at_last_step`), or its step has not changed for STALE_AFTER_S. A state
    stored before steps were stamped counts as long unmoved."""
    return last_step or clock() - float(state.get("moved_at") or 0) >= STALE_AFTER_S


def waiting_for(steps: list[Step], index: int) -> str | None:
    """The key of the step shown at `index` while the tour waits for its moment (the steps
    before it are all reached); None if it is reached or beyond STEPS."""
    keys = list(STEPS)
    return keys[index] if len(steps) <= index < len(keys) else None


# --- moments

def _diversity_moment(records: list[dict], after: int) -> int | None:
    """The first epoch after `after` whose diversity reading is above the first one while
    the training loss is below the first epoch's."""
    measured = [r for r in records if _reading(r) is not None]
    if not measured:
        return None
    first_diversity, first_loss = _reading(measured[0]), records[0]["train_loss"]
    return next((int(r["epoch"]) for r in measured if int(r["epoch"]) > after
                 and _reading(r) > first_diversity and r["train_loss"] < first_loss), None)


def _reading(record: dict) -> float | None:
    """The diversity the chart draws: the fixed probe's when the run has one (the same
    points every epoch), else the rule's own Δ̂ from the epoch's batches."""
    probe = _number(record.get("probe_diversity"))
    return probe if probe is not None else _number(record.get("diversity"))


def _first_resize(resizes: list[dict], after: int) -> int | None:
    return next((int(e["epoch"]) for e in resizes if int(e["epoch"]) >= after), None)


def _cap_moment(resizes: list[dict], by_epoch: dict, config: dict, after: int) -> int | None:
    """The first resize (at or after `after`) to B_max in force at its epoch."""
    for event in resizes:
        epoch = int(event["epoch"])
        cap = (by_epoch.get(epoch) or {}).get("max_batch_size") or config.get("max_batch_size")
        if epoch >= after and cap and event["payload"]["new"] >= int(cap):
            return epoch
    return None


# --- what each step says (one or two plain sentences, with the run's own numbers)

def _start_text(config, n_train, records, record, resizes) -> str:
    batch = int(records[0]["batch_size"])
    return (f"The run starts small, at B0 = {batch}: {math.ceil(n_train / batch):,} noisy "
            f"steps per epoch over its {n_train:,} training samples. In epoch "
            f"{int(record['epoch'])} the training loss fell to {record['train_loss']:.4g}.")


def _diversity_text(config, n_train, records, record, resizes) -> str:
    first = next(r for r in records if _reading(r) is not None)
    probe = _number(record.get("probe_diversity")) is not None
    return (f"As the loss falls (from {records[0]['train_loss']:.4g} to "
            f"{record['train_loss']:.4g} by epoch {int(record['epoch'])}), the per-sample "
            f"gradients agree less: the diversity Δ̂ "
            + ("on the chart (a fixed probe after each epoch) " if probe else "")
            + f"rose from {_reading(first):.3g} to {_reading(record):.3g}.")


def _grows_text(config, n_train, records, record, resizes) -> str:
    """The resize in the run's own numbers. Its Δ̂ is the rule's: summed over the epoch's own
    training batches (the record's `diversity`), which the diversity chart does not draw when
    the run has a probe: the text then gives the chart's value beside it, and points at the
    batch-size chart's dots, which draw δ·n·Δ̂ with the rule's Δ̂."""
    epoch = int(record["epoch"])
    event = next(e for e in resizes if int(e["epoch"]) == epoch)
    old, new = event["payload"]["old"], event["payload"]["new"]
    delta = record.get("delta") or config.get("delta")
    rule = _number(record.get("diversity"))
    if rule is None or not delta:
        return (f"At the end of epoch {epoch}, the bound δ·n·Δ̂ was above the batch size "
                f"{old}, so DiveBatch grew the batch to {new}. It never shrinks.")
    shown = float(f"{rule:.4g}")  # the product is of the numbers the text shows
    bound = delta * n_train * shown
    text = (f"At the end of epoch {epoch}, δ·n·Δ̂ = {delta:g} × {n_train:,} × {shown:.4g} = "
            f"{bound:,.1f} was above the batch size {old}, so DiveBatch grew the batch to "
            f"{new}" + (f" (capped at B_max = {new})" if new < math.floor(bound) else "")
            + ". ")
    probe = _number(record.get("probe_diversity"))
    if probe is not None:
        text += (f"This Δ̂ is summed over the epoch's batches; the diversity chart's fixed "
                 f"probe reads {probe:.3g} here. ")
    return text + "The batch never shrinks."


def _cap_text(config, n_train, records, record, resizes) -> str:
    epoch = int(record["epoch"])
    cap = int(record.get("max_batch_size") or config["max_batch_size"])
    grown = sum(1 for e in resizes if int(e["epoch"]) <= epoch)
    return (f"After {grown} resize(s) the batch reached the cap B_max = {cap} at the end of "
            f"epoch {epoch}. From here on the bound may keep rising, but the batch stays at "
            f"B_max.")


def _end_text(config, n_train, records, record, resizes) -> str:
    b0, last = int(records[0]["batch_size"]), records[-1]
    small_steps = len(records) * math.ceil(n_train / b0)
    loss = _number(last.get("val_loss"))
    return (f"The run ended after {int(last['epoch'])} epochs and {int(last['step']):,} "
            f"optimizer steps; at B0 = {b0} throughout, the same epochs take "
            f"{small_steps:,} steps ({small_steps / max(int(last['step']), 1):.1f}x as many)"
            + (f", and its validation loss is {loss:.4g}." if loss is not None else ".")
            + " Next: did fewer steps also mean less time?")


TEXTS = {"start": _start_text, "diversity": _diversity_text, "grows": _grows_text,
         "cap": _cap_text, "end": _end_text}


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
