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


BAD_ENDS = {"failed": "no details recorded", "diverged": "no details recorded",
            "interrupted": "its worker process ended unexpectedly"}  # status: the default why


def why_it_ended(run: dict) -> str:
    """"failed: <the first line of its error>" for a run that failed, diverged or was
    interrupted (the Runs table's note, the Sweep page's list of failed runs), else ""."""
    if run["status"] not in BAD_ENDS:
        return ""
    lines = (run.get("error") or "").strip().splitlines()
    return f"{run['status']}: {lines[0] if lines else BAD_ENDS[run['status']]}"


def run_row(run: dict, records: list[dict], now: float | None = None) -> dict:
    """The Runs page's row for one stored run (keys: RUN_COLUMNS). A resumed run's "started"
    is its first start and its "duration s" adds up all its starts."""
    summary = analysis.summarize(run, records)
    info, started, finished = run.get("info") or {}, run.get("started_at"), run.get("finished_at")
    this_start = 0.0 if started is None or run["status"] == "queued" else (
        (finished or now or time.time()) - started)
    first_start = info.get("first_started_at", started)
    return {
        "run": run["id"], "status": run["status"], "name": run.get("name") or "",
        "group": run.get("group") or "", "problem": summary["problem"],
        "method": summary["method"],
        "epochs": f"{len(records)}/{run['config'].get('epochs', '?')}",
        "duration s": None if first_start is None else info.get("earlier_s", 0.0) + this_start,
        "final acc": summary["final_acc"], "final val loss": summary["final_val_loss"],
        "train s to own-1pt": summary["time_to_target"],
        "note": "; ".join(note for note in (why_it_ended(run), summary["flag"]) if note),
        "started": None if first_start is None else time.strftime(
            "%Y-%m-%d %H:%M", time.localtime(first_start))}
