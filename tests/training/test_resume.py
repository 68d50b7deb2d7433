"""Checkpoints and resume: a run continued from its checkpoint produces the same records as a
run that was never interrupted (timings aside), in the trainer, through the queue and the CLI."""

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.helpers.cli import cli_in_process
from divebatch.training import checkpoint
from divebatch.runs import queue, worker
from divebatch.config import RunConfig
from divebatch.runs.store import RunStore
from divebatch.training.controls import LocalControl
from divebatch.training.trainer import Trainer, train
from tests.helpers.dataset_files import make_cifar10_binary
from tests.helpers.records import comparable

TINY = dict(problem="least_squares", n_samples=300, dim=8, epochs=7, batch_size=4,
            max_batch_size=64, resize_every=2)


def hot_change_at(epoch, control, **hot):
    """on_epoch callback that requests a hot change at the end of `epoch`."""
    return lambda record: control.set(**hot) if record.epoch == epoch else None


@pytest.mark.parametrize("method, schedule, hot", [
    ("divebatch", "cosine", {"delta": 0.3, "lr_multiplier": 0.5}),
    ("adabatch", "step", {"max_batch_size": 32}),
    ("sgd", "constant", {"lr_multiplier": 2.0}),
])
def test_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path, method, schedule, hot):
    config = RunConfig(**TINY, method=method, schedule=schedule)
    reference_control = LocalControl()
    reference = train(config, hot_change_at(2, reference_control, **hot), reference_control)
    path = tmp_path / "run.pt"
    control = LocalControl()

    def on_epoch(record):
        hot_change_at(2, control, **hot)(record)
        if record.epoch == 4:
            control.stop()
    first = train(config, on_epoch, control, checkpoint_path=path)
    assert first.status == "stopped" and [r.epoch for r in first.records] == [1, 2, 3, 4]
    assert checkpoint.load(path)["epoch"] == 4
    rest = train(config, resume_from=path, checkpoint_path=path)
    assert rest.status == "completed"
    assert comparable(rest.records) == comparable(reference.records)
    assert [e["kind"] for e in rest.events] == [e["kind"] for e in reference.events]
    assert rest.records[4].wall_time >= rest.records[3].wall_time  # the clock continues


def test_crash_between_record_and_checkpoint_repeats_that_epoch_identically(tmp_path):
    config = RunConfig(**TINY, method="divebatch")
    reference = train(config)
    path = tmp_path / "run.pt"

    def crash(record):
        if record.epoch == 3:
            raise RuntimeError("killed")
    with pytest.raises(RuntimeError, match="killed"):
        train(config, on_epoch=crash, checkpoint_path=path)
    state = checkpoint.load(path)
    assert state["epoch"] == 2  # epoch 3's record went out, its checkpoint did not
    torch.rand(100)  # the global RNG moved on meanwhile; the checkpoint restores it
    rest = train(config, resume_from=state)
    assert comparable(rest.records) == comparable(reference.records)


def test_image_problem_resume_restores_the_augmentation_generator(tmp_path, monkeypatch):
    make_cifar10_binary(tmp_path)
    config = RunConfig(problem="cifar10", model="cnn", data_dir=str(tmp_path), n_samples=16,
                       epochs=2, method="sgd", batch_size=8, diversity_every_epoch=False)
    reference = train(config)
    path = tmp_path / "run.pt"
    control = LocalControl()
    train(config, on_epoch=lambda r: control.stop() if r.epoch == 1 else None,
          control=control, checkpoint_path=path)
    assert checkpoint.load(path)["rng"]["problem"] is not None
    rest = train(config, resume_from=path)
    assert comparable(rest.records) == comparable(reference.records)


def test_checkpoint_holds_every_piece_of_state_as_plain_values(tmp_path):
    path = tmp_path / "run.pt"
    train(RunConfig(**{**TINY, "epochs": 2}, schedule="cosine"), checkpoint_path=path)
    state = checkpoint.load(path)  # weights_only=True inside
    assert set(state) == {"epoch", "config", "lr_multiplier", "model", "optimizer",
                          "scheduler", "lr_schedule", "step", "samples_seen", "wall_time",
                          "records", "initial", "events", "rng"}
    assert state["initial"]["epoch"] == 0  # the charts' starting point survives a resume
    assert set(state["rng"]) == {"shuffle", "torch", "cuda", "problem"}
    assert state["epoch"] == 2 and len(state["records"]) == 2
    # the latest, the copies kept for the critical-batch measurement, no temp file
    assert {p.name for p in tmp_path.iterdir()} == {"run.pt", "run-epoch-0.pt",
                                                    "run-epoch-1.pt"}
    assert checkpoint.load(checkpoint.kept_path(path, 0))["epoch"] == 0


def test_atomic_save_keeps_the_old_checkpoint_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    checkpoint.save(path, {"epoch": 1})
    (tmp_path / ".run.pt.leftover.tmp").write_bytes(b"half a file")  # a killed writer's

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"epoch": 2})
    assert checkpoint.load(path) == {"epoch": 1}
    assert list(tmp_path.iterdir()) == [path]


def test_checkpoint_of_another_config_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    train(RunConfig(**{**TINY, "epochs": 1}), checkpoint_path=path)
    with pytest.raises(ValueError, match="another config: it differs in seed"):
        Trainer(RunConfig(**{**TINY, "epochs": 1}, seed=5), resume_from=path)


def test_corrupt_or_missing_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04 not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="cannot load the checkpoint"):
        checkpoint.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a divebatch checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


# --- through the store: queue.resume re-queues, the worker continues


@pytest.fixture
def store(isolated_store, monkeypatch):
    monkeypatch.setattr(queue, "dispatch", lambda store, limit=None: [])  # workers in-process
    return RunStore(isolated_store)


def stop_at(store, run_id, epoch):
    """on_epoch for execute_run: request a stop through the store at the end of `epoch`."""
    return lambda record: store.send_control(run_id, "stop") if record.epoch == epoch else None


def test_jobs_resume_continues_a_stopped_run_to_the_reference_records(store):
    config = RunConfig(**TINY, method="divebatch")
    reference = train(config)
    run_id = store.create_run(config.to_dict())
    worker.execute_run(store, run_id, on_epoch=stop_at(store, run_id, 3))
    assert store.get_run(run_id)["status"] == "stopped"
    path = checkpoint.run_checkpoint_path(store.path, run_id)
    assert path == store.path.parent / "checkpoints" / store.path.name / f"run-{run_id}.pt"
    store.send_control(run_id, "stop")  # stale: must not stop the resumed worker
    assert queue.resume(store, run_id) == 3
    assert store.get_run(run_id)["status"] == "queued"
    worker.execute_run(store, run_id)
    assert store.get_run(run_id)["status"] == "completed"
    assert comparable(store.records(run_id)) == comparable(reference.records)
    assert "resumed" in [e["kind"] for e in store.events(run_id)]
    assert not path.exists()  # a completed run has nothing left to resume


def test_resume_drops_records_newer_than_the_checkpoint(store):
    config = RunConfig(**TINY, method="adabatch")
    reference = train(config)
    run_id = store.create_run(config.to_dict())
    worker.execute_run(store, run_id, on_epoch=stop_at(store, run_id, 2))
    store.append_record(run_id, {"epoch": 3, "train_loss": -1.0})  # written, then killed
    store.set_status(run_id, "interrupted")
    assert queue.resume(store, run_id) == 2
    assert [r["epoch"] for r in store.records(run_id)] == [1, 2]
    worker.execute_run(store, run_id)
    assert comparable(store.records(run_id)) == comparable(reference.records)


def test_resume_without_a_checkpoint_starts_again(store):
    config = RunConfig(**{**TINY, "epochs": 2})
    run_id = store.create_run(config.to_dict(), status="interrupted")
    assert queue.resume(store, run_id) == 0
    worker.execute_run(store, run_id)
    assert [r["epoch"] for r in store.records(run_id)] == [1, 2]


def test_a_stale_checkpoint_of_another_store_is_never_used(store):
    config = RunConfig(**{**TINY, "epochs": 2})
    run_id = store.create_run(config.to_dict(), status="stopped")
    path = checkpoint.run_checkpoint_path(store.path, run_id)
    checkpoint.save(path, {"epoch": 5})  # left by a deleted store's run with the same id
    assert queue.resume(store, run_id) == 0  # no records reach epoch 5: start again
    assert not path.exists()


@pytest.mark.parametrize("status", ["queued", "running", "completed", "diverged"])
def test_only_interrupted_failed_or_stopped_runs_resume(store, status):
    run_id = store.create_run(RunConfig(**TINY).to_dict(), status=status)
    if status == "running":
        store.mark_running(run_id, 1)  # pid 1 is alive: not reaped
    with pytest.raises(ValueError, match=f"can be resumed, but run {run_id} is {status}"):
        queue.resume(store, run_id)
    with pytest.raises(ValueError, match="id of a stored run"):
        queue.resume(store, 999)


def test_cli_resume_refuses_with_one_line(store):
    run_id = store.create_run(RunConfig(**TINY).to_dict(), status="completed")
    result = cli_in_process("resume", str(run_id))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "can be resumed" in result.stderr


def test_runs_page_resume_button_requeues_the_selected_run(store):
    run_id = store.create_run(RunConfig(**TINY).to_dict())
    worker.execute_run(store, run_id, on_epoch=stop_at(store, run_id, 2))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"),
                           default_timeout=60).run()
    at.switch_page("app_pages/runs.py").run()
    at.multiselect(key="runs_shown").set_value([run_id]).run()
    at.button(key="runs_resume").click().run()
    assert not at.exception, at.exception
    assert f"Run #{run_id} continues after epoch 2." in [info.value for info in at.info]
    assert store.get_run(run_id)["status"] == "queued"  # dispatch is stubbed here
