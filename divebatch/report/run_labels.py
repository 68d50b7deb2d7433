"""How a run is named on the charts and progress bars: its label (with the hot values in force
at its last epoch), its progress in words, and the words of a hot change.

`data` arguments are figures.RunData (or anything with `.run` and `.records`).

>>> run_label({"id": 12, "config": {"method": "divebatch", "delta": 0.1}})
'#12 DiveBatch (delta=0.1)'
"""

from __future__ import annotations

from divebatch.config import HOT_FIELDS
from divebatch.runs import analysis


def run_label(run: dict) -> str:
    """'#12 DiveBatch (delta=0.1)', or the run's name when it has one."""
    name = run.get("name") or analysis.method_label(run.get("config") or {})
    return f"#{run['id']} {name}"


def progress(run: dict, records: list[dict], live: dict | None) -> tuple[float, str]:
    """(fraction of the run done, words) from finished epochs plus the live mid-epoch row."""
    total = max(int((run.get("config") or {}).get("epochs") or 1), 1)
    done = len(records)
    text = f"{run_label(run)}: {done}/{total} epochs"
    fraction = done / total
    if live and live.get("epoch") == done + 1 and live.get("n_batches"):
        within = live["batch"] / live["n_batches"]
        fraction += within / total
        text += f" · epoch {done + 1}: batch {live['batch']}/{live['n_batches']}"
    return min(fraction, 1.0), text


def current_config(data) -> dict:
    """The run's config with the hot parameters in force at its last recorded epoch."""
    config = dict(data.run.get("config") or {})
    last = data.records[-1] if data.records else {}
    config.update({name: last[name] for name in HOT_FIELDS if last.get(name) is not None})
    return config


def chart_label(data) -> str:
    """run_label with the hot values in force: after delta 0.1 -> 0.5 it says delta=0.5."""
    return run_label({**data.run, "config": current_config(data)})


def hot_change_text(event: dict, records: list[dict], config: dict) -> str:
    """'delta 0.1 → 0.5 at epoch 7': the old value is the one the epoch before used."""
    payload, epoch = event.get("payload") or {}, event.get("epoch")
    before = next((r for r in reversed(records) if epoch and r["epoch"] < epoch), {})
    changes = [f"{name} {format_value(before.get(name, config.get(name)))} → "
               f"{format_value(value)}" for name, value in sorted(payload.items())]
    where = f" at epoch {epoch}" if epoch else ""
    return (", ".join(changes) or event["message"]) + where


def format_value(value) -> str:
    return "?" if value is None else f"{value:g}" if isinstance(value, (int, float)) \
        else str(value)
