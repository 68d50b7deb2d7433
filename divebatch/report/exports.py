"""A run's epoch records as CSV or JSON documents (the CLI's `export`, the Runs page's
downloads)."""

from __future__ import annotations

import csv
import io
import json
import math

EXPORT_COLUMNS = ("epoch", "step", "samples_seen", "train_time", "batch_size", "lr",
                  "diversity", "train_loss", "val_loss", "val_acc")


def records_csv(records: list[dict]) -> str:
    extra = sorted({k for r in records for k in r} - set(EXPORT_COLUMNS))
    columns = list(EXPORT_COLUMNS) + extra
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if record.get(k) is None else record.get(k) for k in columns})
    return out.getvalue()


def records_json(run: dict, records: list[dict], events: list[dict]) -> str:
    document = {"run": {k: run.get(k) for k in ("id", "name", "status", "created_at",
                                                "started_at", "finished_at", "error",
                                                "info", "config")},
                "records": records, "events": events}
    return json.dumps(_json_safe(document), indent=2)


def _json_safe(value):
    """Replace NaN / inf by None so the output is standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
