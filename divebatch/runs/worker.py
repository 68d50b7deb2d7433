"""The worker body: train a stored run, writing what happens to the store.

`execute_run(store, run_id)` trains the run whose config is stored, appending each epoch's
record, live progress and events to the store, and reading stop / hot-change requests from
the store's control rows between steps (`control_requests.StoreControl`). The CLI's `run`,
background workers (`python -m divebatch worker`), warm workers and Ray tasks all run it.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from divebatch.config import RunConfig
from divebatch.runs import processes
from divebatch.runs.control_requests import StoreControl
from divebatch.runs.store import RunStore
from divebatch.training import checkpoint

if TYPE_CHECKING:  # the trainer (and torch) is imported only where a run is trained
    from divebatch.training.trainer import RunResult


def one_line(error: BaseException) -> str:
    text = str(error).strip().replace("\n", "; ")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def execute_run(store: RunStore, run_id: int, on_epoch=None) -> RunResult | None:
    """Train stored run `run_id` to its end; the store holds the outcome.

    A run that already has records (one re-queued by `queue.resume`) continues from its
    checkpoint; the checkpoint is rewritten after every epoch and deleted once the run has
    completed or diverged. Any exception ends the run as "failed" with a one-line error;
    records so far are kept.
    """
    stored_run(store, run_id)
    try:
        outcome = prepare_run(store, run_id, on_epoch).run()
    except Exception as error:  # the worker must record why it died, whatever it was
        outcome = error
    return finish_run(store, run_id, outcome)


def execute_group(store: RunStore, run_ids: list[int]) -> list[RunResult | None]:
    """Train several stored runs in this process, taking turns an epoch at a time
    (`divebatch.training.interleave`), each recorded as `execute_run` records it; an
    exception ends only the run it came from. Returns the results in order (None: failed)."""
    from divebatch.training.interleave import interleave
    results: dict[int, RunResult | None] = {}
    trainers, trained_ids = [], []
    for run_id in [run_id for run_id in run_ids if store.get_run(run_id) is not None]:
        try:
            trainers.append(prepare_run(store, run_id))
            trained_ids.append(run_id)
        except Exception as error:  # noqa: BLE001 - recorded as this run's failure
            results[run_id] = finish_run(store, run_id, error)

    def finish(index: int, outcome) -> None:
        results[trained_ids[index]] = finish_run(store, trained_ids[index], outcome)
    interleave(trainers, on_end=finish)
    return [results.get(run_id) for run_id in run_ids]


def prepare_run(store: RunStore, run_id: int, on_epoch=None):
    """Mark the run running in this process and build its Trainer, wired to the store
    (records, progress, events, control rows, checkpoint) and continuing from its
    checkpoint if it has records."""
    from divebatch.training.trainer import Trainer
    run = stored_run(store, run_id)
    store.mark_running(run_id, os.getpid())

    def record_epoch(record):
        store.append_record(run_id, record.to_dict())
        if on_epoch:
            on_epoch(record)

    def record_event(event):
        store.add_event(run_id, event["kind"], event["message"], epoch=event["epoch"],
                        payload=event["payload"])

    path = checkpoint.run_checkpoint_path(store.path, run_id)
    return Trainer(RunConfig.from_dict(run["config"]), on_epoch=record_epoch,
                   control=StoreControl(store, run_id),
                   on_progress=lambda progress: store.set_progress(run_id, progress),
                   on_event=record_event,
                   on_start=lambda info: store.update_info(run_id, **info),
                   checkpoint_path=path, resume_from=_resume_state(store, run_id, path))


def finish_run(store: RunStore, run_id: int, outcome: RunResult | Exception
               ) -> RunResult | None:
    """Store how the run ended: its result (the checkpoint removed once nothing is left to
    resume), or the exception that ended it as "failed" with a one-line error."""
    if isinstance(outcome, Exception):
        store.add_event(run_id, "error", one_line(outcome),
                        payload={"traceback": "".join(traceback.format_exception(outcome))})
        store.mark_finished(run_id, "failed", one_line(outcome))
        return None
    if outcome.status in ("completed", "diverged"):
        checkpoint.remove(checkpoint.run_checkpoint_path(store.path, run_id))
    store.mark_finished(run_id, outcome.status, outcome.message or None)
    return outcome


def stored_run(store: RunStore, run_id: int) -> dict:
    """The stored run; ValueError naming `run_id` if there is none."""
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"run_id should be the id of a stored run, but got run_id={run_id}")
    return run


def _resume_state(store: RunStore, run_id: int, path: Path) -> dict | None:
    """The checkpoint to continue from, None for a fresh start (no records yet)."""
    run, records = store.get_run(run_id), store.records(run_id)
    if not records:
        checkpoint.remove(path)  # a stale file (e.g. of a deleted store) must not be used
        return None
    state = checkpoint.load(path)
    reason = checkpoint.mismatch(state, run["config"], records)
    if reason:
        raise checkpoint.CheckpointError(f"the checkpoint {path} is not run {run_id}'s: "
                                         f"{reason}")
    if state["epoch"] != records[-1]["epoch"]:
        raise checkpoint.CheckpointError(
            f"the checkpoint is of epoch {state['epoch']} but the last stored record is of "
            f"epoch {records[-1]['epoch']}; resume the run again")
    return state


def resumable_epoch(store: RunStore, run_id: int) -> int:
    """The epoch a resumed run continues after: its checkpoint's, 0 when it has none (it
    starts again). ValueError, and nothing changed, when the only checkpoint there is belongs
    to another run: the stored epochs are never dropped for a file that is not the run's."""
    run, records = stored_run(store, run_id), store.records(run_id)
    path = checkpoint.run_checkpoint_path(store.path, run_id)
    if not records:
        checkpoint.remove(path)  # a stale file (e.g. of a deleted store): nothing to lose
        return 0
    shared_reason = checkpoint.adopt_shared(store.path, run_id, run["config"], records)
    if path.exists():
        reason, where = checkpoint.mismatch(checkpoint.load(path), run["config"], records), \
            f"delete {path} to start it again from epoch 1"
    elif shared_reason:
        reason, where = shared_reason, "it was written by another run store in " \
            f"{path.parent.parent}, which used to share its checkpoints folder"
        path = checkpoint.shared_checkpoint_path(store.path, run_id)
    else:
        return 0
    if reason:
        raise ValueError(f"run {run_id} cannot be resumed from {path}: it is not this run's "
                         f"checkpoint ({reason}); its {len(records)} stored epochs are kept "
                         f"({where})")
    return checkpoint.load(path)["epoch"]


def remove_run_files(store: RunStore, run_ids) -> None:
    """Delete the checkpoints and worker logs of runs that are no longer in the store: only
    the store's own files (those in the folder other stores used to share are left alone)."""
    for run_id in run_ids:
        checkpoint.remove(checkpoint.run_checkpoint_path(store.path, run_id))
        checkpoint.remove_kept(checkpoint.run_checkpoint_path(store.path, run_id))
        (processes.log_folder(store.path) / f"run-{int(run_id)}.log").unlink(missing_ok=True)


def follow_run(store: RunStore, run_id: int) -> None:
    """A rank > 0 of a run on several processes: train beside rank 0 (same config, same
    checkpoint to continue from) and write nothing; rank 0's `execute_run` records the run."""
    from divebatch.training.trainer import train
    run = store.get_run(run_id)
    path = checkpoint.run_checkpoint_path(store.path, run_id)
    train(RunConfig.from_dict(run["config"]), resume_from=_resume_state(store, run_id, path))
