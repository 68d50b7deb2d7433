"""divebatch.report.tables: the Runs page's row for a run."""

import pytest

from divebatch.report import tables


def run(run_id, **config):
    return {"id": run_id, "name": "", "group": "", "status": "completed",
            "config": {"method": "divebatch", "batch_size": 8, "max_batch_size": 64,
                       "delta": 0.1, "epochs": 3, "problem": "classification", **config},
            "info": {"n_train": 100}, "started_at": 1000.0, "finished_at": 1010.0}


RECORDS = [{"epoch": e, "step": 10 * e, "samples_seen": 100 * e, "train_time": 0.5,
            "batch_size": 8 * e, "val_loss": 1.2 / e, "val_acc": 0.5 + 0.1 * e}
           for e in (1, 2, 3)]


def test_run_row_has_duration_and_time_to_target():
    row = tables.run_row(run(1), RECORDS)
    assert set(row) == set(tables.RUN_COLUMNS)
    assert row["duration s"] == pytest.approx(10.0)
    assert row["epochs"] == "3/3"
    assert row["method"] == "DiveBatch (delta=0.1, B 8 -> 24)"  # what it did, not its start
    assert row["final acc"] == pytest.approx(0.8)
    assert row["train s to own-1pt"] == pytest.approx(1.5)
    active = {**run(2), "status": "running", "finished_at": None}
    assert tables.run_row(active, [], now=1004.0)["duration s"] == pytest.approx(4.0)


@pytest.mark.parametrize("status,error,note", [
    ("failed", "CUDA out of memory\nTraceback ...", "failed: CUDA out of memory"),
    ("diverged", "loss is nan at epoch 3", "diverged: loss is nan at epoch 3"),
    ("failed", None, "failed: no details recorded"),
    ("interrupted", None, "interrupted: its worker process ended unexpectedly"),
    ("stopped", None, ""), ("completed", None, "")])
def test_the_note_says_why_a_run_ended_badly(status, error, note):
    row = tables.run_row({**run(1), "status": status, "error": error}, RECORDS)
    assert row["note"] == note


def test_a_resumed_run_shows_its_first_start_and_all_its_starts_duration():
    resumed = {**run(1), "started_at": 5000.0, "finished_at": 5004.0,
               "info": {"first_started_at": 1000.0, "earlier_s": 10.0}}
    row = tables.run_row(resumed, RECORDS)
    assert row["duration s"] == pytest.approx(14.0)
    assert row["started"] == tables.run_row(run(2), RECORDS)["started"]  # the first start
    waiting = {**resumed, "status": "queued", "finished_at": None}
    assert tables.run_row(waiting, RECORDS, now=9000.0)["duration s"] == pytest.approx(10.0)
