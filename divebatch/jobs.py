"""Running stored runs: the worker body shared by the CLI and background workers.

`execute_run(store, run_id)` trains the run whose config is stored, appending each epoch's
record, live progress and events to the store, and reading stop / hot-change requests from
the store's control rows between steps.
"""

from __future__ import annotations

import os
import traceback

from .config import RunConfig
from .store import RunStore
from .trainer import RunResult, train


class StoreControl:
    """The trainer's control channel backed by the store's control rows."""

    def __init__(self, store: RunStore, run_id: int):
        self.store, self.run_id = store, run_id

    def poll(self) -> list[dict]:
        return self.store.take_controls(self.run_id)


def one_line(error: BaseException) -> str:
    text = str(error).strip().replace("\n", "; ")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def execute_run(store: RunStore, run_id: int, on_epoch=None) -> RunResult | None:
    """Train stored run `run_id` to its end; the store holds the outcome.

    Any exception ends the run as "failed" with a one-line error; records so far are kept.
    """
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"run_id should be the id of a stored run, but got run_id={run_id}")
    store.mark_running(run_id, os.getpid())

    def record_epoch(record):
        store.append_record(run_id, record.to_dict())
        if on_epoch:
            on_epoch(record)

    def record_event(event):
        store.add_event(run_id, event["kind"], event["message"], epoch=event["epoch"],
                        payload=event["payload"])

    try:
        config = RunConfig.from_dict(run["config"])
        result = train(config, on_epoch=record_epoch, control=StoreControl(store, run_id),
                       on_progress=lambda p: store.set_progress(run_id, p),
                       on_event=record_event,
                       on_start=lambda info: store.update_info(run_id, **info))
    except Exception as error:  # the worker must record why it died, whatever it was
        store.add_event(run_id, "error", one_line(error),
                        payload={"traceback": traceback.format_exc()})
        store.mark_finished(run_id, "failed", one_line(error))
        return None
    store.mark_finished(run_id, result.status, result.message or None)
    return result
