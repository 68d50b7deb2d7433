"""Which runs compare, and the plain-words verdict under a comparison or a sweep
(docs/user-guide.md, "Verdicts").

- Runs compare only with runs of the same problem and dataset (`data_key`): a table of mixed
  runs is measured group by group, and the verdict says that the groups do not compare.
- The verdict names whoever reached the common target first, says how DiveBatch did, which
  run ended highest, and any method that beat DiveBatch on both counts.
- While a compared run is still queued or training it says "So far" and claims no final.
- A run stopped (or interrupted, or failed) before its planned epochs is named first, with
  where it ended as the legend says it ('stopped at epoch k of N'); its last values are where
  it stopped, never called its end, and it is never named highest.
- A common target near chance (`near_chance`) is flagged before anything else.
- It says who reached the baseline's accuracy (its final minus 1 point) and how soon, in
  training time and optimizer steps, and which runs never did.
- A sweep's verdict (`sweep_verdict`, in sweep_verdicts.py) opens with a warning when its
  baseline collapsed, not with a speed-up.
- Which runs compare (`data_key`, `group_by_data`) is comparable.py's.

Rows are `analysis.compare` rows, the baseline first.

>>> rows = [{"method": "SGD B=16", "time_to_common": 5.0, "final_acc": 0.95},
...         {"method": "DiveBatch", "time_to_common": 2.1, "final_acc": 0.942}]
>>> verdict(rows, 0.9)
'DiveBatch was first to 90.0 %, in 2.1 s, 2.4x sooner than SGD B=16, and ended 0.8 points lower.'
"""

from __future__ import annotations

import math

from divebatch.experiments.analysis import ACC_TOLERANCE, where_it_ended
from divebatch.experiments.comparable import (CLASSES, DATA_FIELDS, chance_level,  # noqa: F401
                                              data_key, group_by_data, group_names,
                                              near_chance)  # one import for callers
from divebatch.experiments.sweep_verdicts import (format_mean_se, format_speedup,  # noqa: F401
                                                  sweep_verdict)  # one import for callers
from divebatch.words import and_list


# --- the verdict

def verdict(rows: list[dict], common: float | None, lead: bool = False) -> str:
    """The verdict for runs of one problem (the baseline first); '' for fewer than two.
    `lead`: its first two sentences on the race only (who was first to the common target,
    where DiveBatch got), for a projector; while runs train, the first alone (the charts
    under it stay on a 1280x720 screen)."""
    if len(rows) < 2 or common is None:
        return ""
    rows = distinct_labels(rows)
    accuracy = any(r.get("final_acc") is not None for r in rows)
    level = f"{100 * common:.1f} %" if accuracy else f"a validation loss of {common:.4g}"
    live = any(r.get("active") for r in rows)
    sentences = [_chance_warning(rows, common)] if accuracy else []
    sentences.append(_stopped(rows))
    sentences += _race(rows, level, accuracy, live)[:(1 if live else 2) if lead else None]
    sentences.append(_first_epoch_caveat(rows, level, short=lead))
    if lead:
        text = " ".join(s for s in sentences if s)
        return ("So far (runs still training): " + text) if live else text
    sentences.append(_highest(rows, accuracy, live))
    sentences.append(_baseline_level(rows, accuracy, level))
    text = " ".join(s for s in sentences if s)
    text += "".join(f" Note: {r['method']} {r['flag']}." for r in (rows[0], *_subjects(rows))
                    if r.get("flag"))
    return ("So far (runs still training): " + text) if live else text


def groups_verdict(named: list[tuple[str, list[dict], float | None]]) -> str:
    """The verdict for runs of several problems: (group name, rows, common target) per
    group. Groups do not compare; each of two runs or more gets its own verdict."""
    if len(named) == 1:
        return verdict(named[0][1], named[0][2])
    listed = [f"{name} (run{'s' if len(rows) > 1 else ''} "
              f"{', '.join(str(r['id']) for r in rows)})" for name, rows, _ in named]
    text = (f"These runs are of different problems or data, which do not compare: "
            f"{and_list(listed)}. No speed-up, star or verdict crosses them.")
    for name, rows, common in named:
        line = verdict(rows, common)
        if line:
            text += f" {name}: {line}"
    return text


def distinct_labels(rows: list[dict]) -> list[dict]:
    """The rows, those whose label another row shares named with their run id as well
    ('SGD B=8 #3'), so that no sentence of a verdict could be about either run."""
    labels = [r["method"] for r in rows]
    return [{**r, "method": f"{r['method']} #{r['id']}"}
            if labels.count(r["method"]) > 1 and r.get("id") is not None else r for r in rows]


def _subjects(rows: list[dict]) -> list[dict]:
    """The runs a race verdict speaks of: the first to the target and DiveBatch."""
    first = min(rows, key=_time_key)
    if first["time_to_common"] is None:
        first = rows[0]
    dive = [r for r in rows[1:] if _is_dive(r) and r is not first]
    return ([] if first is rows[0] else [first]) + dive


def _race(rows: list[dict], level: str, accuracy: bool, live: bool) -> list[str]:
    base = rows[0]
    first = min(rows, key=_time_key)
    if first["time_to_common"] is None:
        return [f"No run {'has reached' if live else 'reached'} {level}."]
    head = f"{first['method']} was first to {level}, in {_seconds(first['time_to_common'])}"
    if first is base:
        sentences = [head + "."]
    else:
        ending = _ending(first, base, accuracy)
        sentences = [head + f", {_speed(first, base)}" + (f", and {ending}" if ending else "")
                     + "."]
    for dive in [r for r in rows[1:] if _is_dive(r) and r is not first]:
        sentences.append(_reached(dive, base, accuracy, level) + ".")
        sentences += [_beat(other, dive, accuracy, live, level) for other in rows[1:]
                      if not _is_dive(other) and _beats(other, dive, accuracy)]
    return sentences


def _first_epoch_caveat(rows: list[dict], level: str, short: bool = False) -> str:
    """When a time the race's sentences set against the baseline's was that of a first epoch
    on both sides, the ratio is what one epoch cost each (measuring diversity included), not
    how the methods train: say so, with DiveBatch's measuring seconds in it (`short`: for a
    projector's lead, without the names, which the sentences before it gave)."""
    base, first = rows[0], min(rows, key=_time_key)
    compared = [first] + [r for r in rows[1:] if _is_dive(r) and r is not first]
    runs = [r for r in rows if r.get("epochs_to_common") == 1]  # all such, as the table shows
    if base not in runs or not any(r in runs for r in compared if r is not base):
        return ""
    dives = [r for r in runs if _is_dive(r)]
    measured = [f"{_seconds(r['measure_to_common'])} of "
                f"{'DiveBatch' if len(dives) == 1 else r['method']}'s went to measuring "
                f"diversity" for r in dives if r.get("measure_to_common")]
    cost = f" ({'; '.join(measured)})" if measured else ""
    if short:
        return (f"{len(runs)} of these runs met it in their first epoch: their times are one "
                f"epoch's cost{cost}, not the methods'.")
    return (f"{and_list([r['method'] for r in runs])} reached {level} in their first epoch, so "
            f"their times compare what one epoch cost each{cost}, not how the methods train: "
            f"a target this easy does not separate them.")


def _reached(row: dict, base: dict, accuracy: bool, level: str) -> str:
    """How a DiveBatch run did in the race, the target named again (never 'it': the
    baseline's own target comes later in the verdict)."""
    if row["time_to_common"] is None:
        return _not_reached([row["method"]], _state(row), level)
    ending = _ending(row, base, accuracy)
    return (f"{row['method']} reached {level} in {_seconds(row['time_to_common'])}, "
            f"{_speed(row, base)}" + (f", and {ending}" if ending else ""))


def _speed(row: dict, base: dict) -> str:
    own, ref = row["time_to_common"], base["time_to_common"]
    if ref is None:
        return f"which {base['method']} " + {"active": "has not done yet", "never": "never did",
                                             "queued": "has not done yet (it is queued)",
                                             "stopped": "had not done when it was stopped"
                                             }[_state(base)]
    ratio = ref / own if own > 0 else math.inf
    shown = f"{max(ratio, 1.0 / ratio):.1f}x"
    if shown == "1.0x":  # within 5 %: '1.0x later' read as a difference
        return f"about as soon as {base['method']}"
    return f"{shown} {'sooner' if ratio >= 1.0 else 'later'} than {base['method']}"


def _ending(row: dict, base: dict, accuracy: bool) -> str:
    """How the row's last value compares with the baseline's: 'ended 0.8 points lower', or
    'is ...' while a run trains."""
    if row.get("stopped_early") or base.get("stopped_early"):
        return ""  # a stopped run's last value is no end to set against another's
    verb = "is" if row.get("active") or base.get("active") else "ended"
    if accuracy:
        own, ref = row.get("final_acc"), base.get("final_acc")
        if own is None or ref is None:
            return ""
        change = _shown_percent(own) - _shown_percent(ref)  # the table's subtraction
        if abs(change) < 0.05:
            return f"{verb} level with it"
        return f"{verb} {abs(change):.1f} points {'higher' if change > 0 else 'lower'}"
    own, ref = row.get("final_val_loss"), base.get("final_val_loss")
    if own is None or ref is None or ref == 0:
        return ""
    own, ref = float(f"{own:.4g}"), float(f"{ref:.4g}")  # as the table shows them
    verb = "has" if verb == "is" else "ended with"
    if own == ref:
        return f"{verb} the same validation loss ({own:.4g})"
    change = 100.0 * (own - ref) / abs(ref)
    shown = f"{abs(change):.0f}" if abs(change) >= 1 else f"{abs(change):.1g}"
    return f"{verb} a {shown} % {'higher' if change > 0 else 'lower'} validation loss"


def _beats(other: dict, dive: dict, accuracy: bool) -> bool:
    """Whether `other` reached the target sooner than `dive` (not both in their first epoch:
    then the times are one epoch's cost) and ended better, as the table shows the values."""
    own, ref = _final(other, accuracy), _final(dive, accuracy)
    if other["time_to_common"] is None or own is None or ref is None \
            or other.get("stopped_early") or dive.get("stopped_early") \
            or other.get("epochs_to_common") == dive.get("epochs_to_common") == 1:
        return False
    own, ref = (_shown_percent(own), _shown_percent(ref)) if accuracy else \
        (float(f"{own:.4g}"), float(f"{ref:.4g}"))
    better = own > ref if accuracy else own < ref
    return _time_key(other) < _time_key(dive) and better


def _beat(other: dict, dive: dict, accuracy: bool, live: bool, level: str) -> str:
    final = _final(other, accuracy)
    shown = f"{100 * final:.1f} %" if accuracy else f"a validation loss of {final:.4g}"
    return (f"{other['method']} did better than {dive['method']} on both counts: it reached "
            f"{level} sooner ({_seconds(other['time_to_common'])}) and "
            f"{'is' if live else 'ended'} {'higher' if accuracy else 'lower'} ({shown}).")


def _highest(rows: list[dict], accuracy: bool, live: bool) -> str:
    """Which run ended best, said when there are three runs or more."""
    known = [r for r in rows if _final(r, accuracy) is not None and not r.get("stopped_early")]
    if len(rows) < 3 or not known:
        return ""
    pick = max if accuracy else min
    best = pick(known, key=lambda r: _final(r, accuracy))
    value = _final(best, accuracy)
    shown = f"{100 * value:.1f} %" if accuracy else f"a validation loss of {value:.4g}"
    verb = "is" if live else "ended"
    return f"{best['method']} {verb} {'highest' if accuracy else 'lowest'}, at {shown}."


def _baseline_level(rows: list[dict], accuracy: bool, common_level: str) -> str:
    """Who reached the baseline's own target (its final minus 1 point), how soon, and who
    never did; none for a baseline stopped early (its last value is no final). When every
    run that reached it did so at the epoch it reached the common target, the race's
    sentences gave those times already: the steps alone."""
    base = rows[0]
    level = base.get("base_level")
    if level is None or base.get("time_to_base_level") is None or base.get("stopped_early"):
        return ""
    last = "latest" if base.get("active") else "final"
    named = f"{100 * level:.1f} %" if accuracy else f"a validation loss of {level:.4g}"
    what = named + (f" (its {last} accuracy less 1 point)" if accuracy
                    else f" (its {last} one plus 5 %)")
    reached = sorted((r for r in rows[1:] if r.get("time_to_base_level") is not None),
                     key=lambda r: r["time_to_base_level"])
    first = min(rows, key=_time_key)  # the runs whose time the race's sentences gave
    said = {id(r) for r in rows if r["time_to_common"] is not None
            and (r is first or r is not base and _is_dive(r))}
    parts = [f"{r['method']}{' reached ' + what if r is base else ''}"
             f"{_cost_again(r, base, id(r) in said, named, common_level)}"
             for r in (base, *reached)]
    missing = [r for r in rows[1:] if r.get("time_to_base_level") is None]
    for state in ("never", "stopped", "active", "queued"):  # the level named again, never 'it': it
        names = [r["method"] for r in missing if _state(r) == state]  # could be read as
        parts += [_not_reached(names, state, named)] if names else []  # the common target
    return "; ".join(parts) + "."


def _cost_again(row: dict, base: dict, said: bool, named: str, common_level: str) -> str:
    """' in 3.0 s and 300 steps (2.0x sooner)'; when the race's sentences gave the run's
    time to the common target and it met the baseline's at the same epoch, its steps alone
    (a two-run verdict said the same time and speed-up twice)."""
    steps = row.get("steps_to_base_level")
    if said and row["time_to_base_level"] == row["time_to_common"]:
        if named == common_level:
            return f" in {steps} steps, as above" if steps else " as above"
        return (f" in the same epoch as it reached {common_level}"
                + (f" ({steps} steps)" if steps else ""))
    return f" in {_cost(row)}" + ("" if row is base else _sooner(row, base))


def _cost(row: dict) -> str:
    steps = row.get("steps_to_base_level")
    return _seconds(row["time_to_base_level"]) + (f" and {steps} steps" if steps else "")


def _sooner(row: dict, base: dict) -> str:
    ref, own = base.get("time_to_base_level"), row["time_to_base_level"]
    if not ref or not own:
        return ""
    ratio, shown = ref / own, f"{max(ref / own, own / ref):.1f}x"
    return " (about as soon)" if shown == "1.0x" else \
        f" ({shown} {'sooner' if ratio >= 1.0 else 'later'})"


def _stopped(rows: list[dict]) -> str:
    """Which runs were stopped (or interrupted, or failed) before their planned epochs, said
    before any ranking."""
    stopped = [where_it_ended(r["method"], r["epochs"], r["planned_epochs"], r.get("status"))
               for r in rows if r.get("stopped_early")]
    if not stopped:
        return ""
    one = len(stopped) == 1
    return (f"Ended early: {'; '.join(stopped)}. {'It is' if one else 'They are'} "
            f"compared only up to where {'it' if one else 'they'} stopped.")


def _chance_warning(rows: list[dict], common: float) -> str:
    problem = rows[0].get("problem")
    if not near_chance(common, problem):
        return ""
    text = (f"⚠ The common target, {100 * common:.1f} %, is near chance ("
            f"{100 * chance_level(problem):.1f} % on a {CLASSES[problem]}-class problem), so "
            f"reaching it does not separate learning from guessing")
    bests = [r for r in rows if r.get("best_acc") is not None]
    setter = min(bests, key=lambda r: r["best_acc"]) if bests else None
    if setter is not None and abs(setter["best_acc"] - ACC_TOLERANCE - common) < 1e-9:
        text += (f": {setter['method']} set it, its best accuracy being "
                 f"{100 * setter['best_acc']:.1f} %")
    return text + ". Compare the final accuracies."


def _seconds(value: float) -> str:
    """Training seconds as the table shows them below 1 s (0.07 s), else to 0.1 s."""
    return f"{value:.2f} s" if value < 1.0 else f"{value:.1f} s"


def _shown_percent(value: float) -> float:
    """An accuracy in points as the table shows it (one decimal): gaps in the text are
    subtractions of the shown values, so a reader's own subtraction agrees."""
    return round(100.0 * value, 1)


def _final(row: dict, accuracy: bool) -> float | None:
    return row.get("final_acc") if accuracy else row.get("final_val_loss")


def _state(row: dict) -> str:
    if row.get("status") == "queued":
        return "queued"
    return "active" if row.get("active") else "stopped" if row.get("stopped_early") else "never"


def _not_reached(names: list[str], state: str, level: str) -> str:
    """'X never reached L', or that X has not yet (training), had not when stopped, or is
    queued and has not started."""
    one = len(names) == 1
    if state == "queued":
        return f"{and_list(names)} {'is' if one else 'are'} queued and not started yet"
    if state == "active":
        return f"{and_list(names)} {'has' if one else 'have'} not reached {level} yet"
    if state == "stopped":
        return (f"{and_list(names)} had not reached {level} when {'it was' if one else 'they were'}"
                f" stopped")
    return f"{and_list(names)} never reached {level}"


def _is_dive(row: dict) -> bool:
    """By the run's method (`kind`, analysis.summarize), else by a label written out."""
    return row["kind"] == "divebatch" if "kind" in row else row["method"].startswith("DiveBatch")


def _time_key(row: dict) -> float:
    return row["time_to_common"] if row["time_to_common"] is not None else math.inf
