"""How a run is named on the charts and progress bars: its label (with the hot values in force
at its last epoch), its progress in words, and the words of a hot change.

`data` arguments are figures.RunData (or anything with `.run` and `.records`).

>>> run_label({"id": 12, "config": {"method": "divebatch", "delta": 0.1}})
'#12 DiveBatch (delta=0.1)'
"""

from __future__ import annotations

from divebatch.report.hot_limits import hot_values_in_force
from divebatch.experiments import analysis


def run_label(run: dict, delta_in_force: float | None = None) -> str:
    """'#12 DiveBatch (delta=0.1)', or the run's name when it has one; with a delta in force
    other than the configured one, 'delta=0.1 -> 0.5' (as analysis.method_label names it)."""
    deltas = () if delta_in_force is None else (delta_in_force,)
    name = run.get("name") or analysis.method_label(run.get("config") or {}, deltas=deltas)
    return f"#{run['id']} {name}"


def progress(run: dict, records: list[dict], live: dict | None, events=()
             ) -> tuple[float, str]:
    """(fraction of the run done, words) from finished epochs plus the live mid-epoch row;
    the run named with its hot values in force, as in the legend."""
    total = max(int((run.get("config") or {}).get("epochs") or 1), 1)
    done = len(records)
    text = f"{labelled_with_hot_values(run, records, list(events))}: {done}/{total} epochs"
    fraction = done / total
    if live and live.get("paused"):
        return min(fraction, 1.0), text + f" · paused after epoch {live.get('epoch') or done}"
    if live and live.get("epoch") == done + 1 and live.get("n_batches"):
        within = live["batch"] / live["n_batches"]
        fraction += within / total
        text += f" · epoch {done + 1}: batch {live['batch']}/{live['n_batches']}"
    return min(fraction, 1.0), text


def current_config(run: dict, records: list[dict], events: list[dict]) -> dict:
    """The run's config with the hot parameters in force now (hot_values_in_force)."""
    config = dict(run.get("config") or {})
    config.update(hot_values_in_force(config, records, events))
    return config


def labelled_with_hot_values(run: dict, records: list[dict], events: list[dict]) -> str:
    """run_label with the hot values in force: after delta 0.1 -> 0.5 it says
    'delta=0.1 -> 0.5', as the Runs table and `compare` do (analysis.method_label)."""
    return run_label(run, current_config(run, records, events).get("delta"))


def stopped_note(runs: list[dict], records: dict[int, list[dict]],
                 events: dict[int, list[dict]]) -> str:
    """'Ended early: #3 DiveBatch (delta=0.1) stopped at epoch 6 of 60. ...' for the runs
    stopped (or interrupted, or failed) before their planned epochs ('' for none): their
    curves end there, not at a finish."""
    stopped = [analysis.where_it_ended(
                   labelled_with_hot_values(run, records[run["id"]], events[run["id"]]),
                   len(records[run["id"]]), run["config"].get("epochs"), run["status"])
               for run in runs if analysis.stopped_early(run, records[run["id"]])]
    if not stopped:
        return ""
    many = len(stopped) > 1
    return (f"Ended early: {'; '.join(stopped)}. "
            f"{'Their curves end' if many else 'Its curves end'} there, not at a finish.")


def chart_label(data) -> str:
    """labelled_with_hot_values of a figures.RunData."""
    return labelled_with_hot_values(data.run, data.records, data.events)


def legend_label(data) -> str:
    """chart_label, then, for a run that ended before its planned epochs, where it ended in
    the verdict's words on a line of its own: '#3 DiveBatch (delta=0.1)<br>stopped at epoch
    6 of 60' (two short lines keep a projector's legend three entries wide). Its traces keep
    chart_label, for their hover."""
    label = chart_label(data)
    if not analysis.stopped_early(data.run, data.records):
        return label
    return label + LINE_BREAK + analysis.how_it_ended(
        len(data.records), data.run["config"].get("epochs"), data.run.get("status"))


LINE_BREAK = "<br>"  # plotly's, in a legend entry


def hot_change_text(event: dict, records: list[dict], config: dict) -> str:
    """'delta 0.1 → 0.5 at epoch 7': the old value is the one the epoch before used."""
    payload, epoch = event.get("payload") or {}, event.get("epoch")
    before = next((r for r in reversed(records) if epoch and r["epoch"] < epoch), {})
    changes = [f"{name} {format_value(before.get(name, config.get(name)))} → "
               f"{format_value(value)}" for name, value in sorted(payload.items())]
    where = f" at epoch {epoch}" if epoch else ""
    return (", ".join(changes) or event["message"]) + where


SHORT_NAMES = {"delta": "δ", "max_batch_size": "B_max", "resize_every": "R",
               "lr_multiplier": "LR ×"}  # a hot change's mark on a chart


def hot_change_short(event: dict) -> str:
    """'δ 0.05 · B_max 256': the new values alone, short enough for a mark inside a chart
    half a 1280 px page wide (hot_change_text says the rest, on hover)."""
    payload = event.get("payload") or {}
    parts = [f"{SHORT_NAMES.get(name, name)} {format_value(value)}"
             for name, value in sorted(payload.items(), key=lambda item: _order(item[0]))]
    return " · ".join(parts) or "hot change"


def _order(name: str) -> int:
    return list(SHORT_NAMES).index(name) if name in SHORT_NAMES else len(SHORT_NAMES)


def format_value(value) -> str:
    return "?" if value is None else f"{value:g}" if isinstance(value, (int, float)) \
        else str(value)
