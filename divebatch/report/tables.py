"""Which columns the run tables show, and their headings (CLI `list` / `compare`, Runs page),
and the Runs page's row for a run."""

from __future__ import annotations

import time

from divebatch.experiments import analysis

COMPARE_COLUMNS = [("id", "run"), ("method", "method"), ("status", "status"),
                   ("epochs", "epochs"), ("final_acc", "final acc"), ("best_acc", "best acc"),
                   ("final_val_loss", "final val loss"),
                   ("time_to_common", "train s to common"), ("speedup", "speed-up"),
                   ("epochs_to_target", "epochs to own-1pt"),
                   ("time_to_target", "train s to own-1pt"),
                   ("speedup_own_shown", "speed-up own-1pt"), ("train_time", "train s total"),
                   ("samples_seen", "samples"), ("final_batch_size", "next B"),
                   ("step_ms_measured", "ms/step measured"), ("step_ms_plain", "ms/step plain"),
                   ("measure_time", "measuring s"), ("speedup_own_flag", "note")]
LIST_COLUMNS = [("id", "id"), ("name", "name"), ("problem", "problem"),
                ("method", "method"), ("status", "status"), ("epochs", "epochs"),
                ("final_acc", "final acc"), ("final_val_loss", "val loss"),
                ("train_time", "train s")]


RUN_COLUMNS = ("run", "status", "name", "group", "problem", "method", "epochs", "duration s",
               "final acc", "final val loss", "train s to own-1pt", "note", "started")


def run_row(run: dict, records: list[dict], now: float | None = None) -> dict:
    """The Runs page's row for one stored run (keys: RUN_COLUMNS)."""
    summary = analysis.summarize(run, records)
    started, finished = run.get("started_at"), run.get("finished_at")
    return {
        "run": run["id"], "status": run["status"], "name": run.get("name") or "",
        "group": run.get("group") or "", "problem": summary["problem"],
        "method": summary["method"],
        "epochs": f"{len(records)}/{run['config'].get('epochs', '?')}",
        "duration s": None if started is None else (finished or now or time.time()) - started,
        "final acc": summary["final_acc"], "final val loss": summary["final_val_loss"],
        "train s to own-1pt": summary["time_to_target"],
        "note": summary["flag"],
        "started": None if started is None else time.strftime(
            "%Y-%m-%d %H:%M", time.localtime(started))}
