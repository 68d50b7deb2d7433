"""The time-to-target table as a person reads it: four columns that answer "who got there
first, and what did it cost", the rest behind an expander, the winner marked, a one-line
verdict, and text in every cell (never None).

>>> runs = [{"id": 1, "config": {"method": "sgd", "batch_size": 16, "max_batch_size": 64}},
...         {"id": 2, "config": {"method": "divebatch", "batch_size": 16, "delta": 0.1}}]
>>> records = {1: [{"epoch": 1, "train_time": 2.0, "val_acc": 0.8},
...                {"epoch": 2, "train_time": 2.0, "val_acc": 0.9}],
...            2: [{"epoch": 1, "train_time": 1.0, "val_acc": 0.9}]}
>>> table = build(runs, records)
>>> [row["speed-up"] for row in table.rows], table.winner
(['1.00x (baseline)', '4.00x'], 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from divebatch.experiments import analysis, verdicts
from divebatch.presets import race_sorted
from divebatch.report.run_labels import labelled_with_hot_values

MISSING = "—"
NOT_REACHED = "not reached"
TIME_COLUMN = "train s to common target"


@dataclass
class TargetTable:
    rows: list[dict]       # the four main columns, formatted
    details: list[dict]    # every other column, formatted (the same runs, same order)
    winner: int | None     # index of the row that reached the common target first (None
                           # when the runs are of several problems: they do not compare)
    verdict: str           # plain words (verdicts.verdict / groups_verdict)
    verdict_lead: str      # its first two sentences on the race (the whole verdict for runs
                           # of several problems), for a projector
    caption: str           # what the columns mean
    common: float | None   # the common target (of the first problem's runs)


def run_label(run: dict, row: dict, records: list[dict] = (), events: list[dict] = ()) -> str:
    """A run named as the charts' legend names it (its id, the hot values in force), then
    the batch sizes it trained with when they changed: '#2 DiveBatch (delta=0.1) [B 16 ->
    541]', '#1 SGD B=16'."""
    name = labelled_with_hot_values(run, list(records), list(events))
    first, last = row.get("batch_sizes") or (None, None)
    return name if first == last else f"{name} [B {first} -> {last}]"


def labelled_rows(runs: list[dict], records_by_run: dict[int, list[dict]],
                  target: float | None = None, events_by_run: dict[int, list[dict]] | None = None
                  ) -> tuple[list[dict], float | None]:
    """analysis.compare with SGD at the small batch first (the speed-up baseline) and each
    run named as the legend names it, with the batch sizes it trained with (run_label).
    The runs should be of one problem and dataset (verdicts.group_by_data)."""
    ordered = race_sorted(runs)
    rows, common = analysis.compare(ordered, records_by_run, target)
    for row, run in zip(rows, ordered):
        row["method"] = run_label(run, row, records_by_run.get(run["id"], []),
                                  (events_by_run or {}).get(run["id"], []))
    return rows, common


def build(runs: list[dict], records_by_run: dict[int, list[dict]],
          target: float | None = None, events_by_run: dict[int, list[dict]] | None = None
          ) -> TargetTable:
    """The table, measured within each problem: runs of different problems or data get
    their own baseline, common target and verdict, no star, and their problem before the
    method. `events_by_run`: the runs' events, for a hot change made while a run waits."""
    groups = verdicts.group_by_data(runs)
    names = verdicts.group_names(groups)
    named = [(name, *labelled_rows(group, records_by_run, target, events_by_run))
             for name, group in zip(names, groups)]
    verdict = verdicts.groups_verdict(named)
    lead = verdicts.verdict(named[0][1], named[0][2], lead=True) if len(named) == 1 else verdict
    main, details, captions = [], [], []
    for name, rows, common in named:
        accuracy = any(row["final_acc"] is not None for row in rows)
        shown = [{**row, "method": f"{name} · {row['method']}"} if len(named) > 1 else row
                 for row in rows]
        main += [_main(row, i == 0, accuracy) for i, row in enumerate(shown)]
        details += [_details(row, accuracy) for row in shown]
        text = caption(common, accuracy, any(row["flag"] for row in rows))
        captions.append(text if len(named) == 1 else f"{name}: {text}")
    rows = named[0][1] if named else []
    reached = [i for i, row in enumerate(rows) if row["time_to_common"] is not None]
    winner = min(reached, key=lambda i: rows[i]["time_to_common"]) \
        if reached and len(named) == 1 else None
    return TargetTable(_filled(main), _filled(details), winner, verdict, lead,
                       " ".join(captions) if captions else caption(None, False),
                       named[0][2] if named else None)


def _filled(rows: list[dict]) -> list[dict]:
    """Every row with every column (runs of a regression problem beside a classification
    one: each has the other's column, as MISSING)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return [{key: row.get(key, MISSING) for key in columns} for row in rows]


def _main(row: dict, baseline: bool, accuracy: bool) -> dict:
    final = _percent(row["final_acc"]) if accuracy else _number(row["final_val_loss"])
    if row.get("stopped_early"):  # its last value, not a final one
        ended = row.get("status") or "stopped"
        final += f" ({ended}, epoch {row['epochs']}/{row['planned_epochs']})"
    time = row["time_to_common"]
    return {"method": row["method"] + (" ⚠" if row["flag"] else ""),
            "final accuracy" if accuracy else "final val loss": final,
            TIME_COLUMN: NOT_REACHED if time is None
            else f"{time:.2f} s (epoch {row['epochs_to_common']})",
            "speed-up": _speedup(row["speedup"], baseline)}


def _details(row: dict, accuracy: bool) -> dict:
    own = row["time_to_target"]
    out = {"run": str(row["id"]), "method": row["method"], "status": row["status"] or MISSING,
           "epochs": str(row["epochs"])}
    if accuracy:
        out["best accuracy"] = _percent(row["best_acc"])
    out.update({
        "train s to own-1pt": MISSING if own is None
        else f"{own:.2f} s (epoch {row['epochs_to_target']})",
        "speed-up to own-1pt": _flagged(row["speedup_own"], row["speedup_own_flag"]),
        "train s total": f"{row['train_time']:.2f}",
        "samples": str(row["samples_seen"] or 0),
        "next B": MISSING if row["final_batch_size"] is None else str(row["final_batch_size"]),
        "ms/step measured": _number(row["step_ms_measured"]),
        "ms/step plain": _number(row["step_ms_plain"]),
        MEASURING_COLUMN: measuring_cell(row),
        "note": row["flag"] or ""})
    return out


MEASURING_COLUMN = "measuring s (share of train s)"


def measuring_cell(row: dict) -> str:
    """How much of the run's training time went to measuring diversity, e.g. '3.20 s (31 %)'."""
    share = row.get("measure_share")
    if share is None:
        return MISSING
    return f"{row['measure_time']:.2f} s ({100 * share:.0f} %)"


def _speedup(value: float | None, baseline: bool) -> str:
    if baseline:
        return "1.00x (baseline)" if value else MISSING
    return MISSING if value is None else f"{value:.2f}x"


def _flagged(value: float | None, flag: str) -> str:
    if value is None:
        return MISSING
    return f"{value:.2f}x" + (f" ⚠ {flag}" if flag else "")


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f} %"


def _number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4g}"


def caption(common: float | None, accuracy: bool, flagged: bool = False) -> str:
    if common is None:
        return "Common target: none yet (it needs a finished epoch of every run)."
    if accuracy:
        level = (f"{100 * common:.1f} %, the lowest best validation accuracy among these runs "
                 f"minus 1 point, which every run with an epoch reached (runs stopped early "
                 f"aside)")
    else:
        level = (f"a validation loss of {common:.4g}, the highest best loss among these runs "
                 f"plus 5 %, which every run with an epoch reached (runs stopped early aside)")
    text = (f"Common target: {level}. Time: training seconds up to the first epoch at the "
            f"target (evaluation and the chart's diversity probe excluded). Speed-up: the first "
            f"row's time over each run's.")
    if flagged:
        text += (f" ⚠: the run ended more than {analysis.FLAG_POINTS:g} points below its "
                 f"best, so the paper's own-final metric (in the details) would credit a "
                 f"collapse.")
    return text
