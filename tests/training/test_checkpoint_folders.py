"""Each run store keeps its checkpoints and logs in folders of its own: two stores in one folder
never read, overwrite or prune each other's files. A store made before that still resumes
from a checkpoint in the folder stores used to share when it is the run's own; a checkpoint
that is not the run's is refused, and the stored epochs are never dropped for it."""

import os
import shutil

import pytest

from tests.helpers.cli import cli_in_process
from divebatch.config import RunConfig
from divebatch.runs import processes, queue, worker
from divebatch.runs.store import RunStore
from divebatch.training import checkpoint
from divebatch.training.trainer import train
from tests.helpers.records import comparable

TINY = dict(problem="least_squares", n_samples=200, dim=4, epochs=5, batch_size=8,
            max_batch_size=32)


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """Two stores side by side in one folder; workers run in this process."""
    monkeypatch.setattr(queue, "dispatch", lambda store, limit=None: [])
    return RunStore(tmp_path / "a.db"), RunStore(tmp_path / "b.db")


def stopped_run(store, seed: int, after: int) -> int:
    """A run of TINY with `seed`, stopped at the end of epoch `after` (its checkpoint kept)."""
    run_id = store.create_run(RunConfig(**TINY, seed=seed).to_dict())
    worker.execute_run(store, run_id, on_epoch=lambda record: store.send_control(
        run_id, "stop") if record.epoch == after else None)
    assert store.get_run(run_id)["status"] == "stopped"
    return run_id


def test_two_stores_in_one_folder_keep_their_own_checkpoints_and_logs(stores):
    a, b = stores
    assert stopped_run(a, seed=0, after=3) == stopped_run(b, seed=1, after=2) == 1
    path_a, path_b = (checkpoint.run_checkpoint_path(s.path, 1) for s in stores)
    assert path_a != path_b and path_a.parent.name == "a.db" and path_b.parent.name == "b.db"
    assert checkpoint.load(path_a)["epoch"] == 3 and checkpoint.load(path_b)["epoch"] == 2
    assert processes.log_folder(a.path) != processes.log_folder(b.path)
    assert queue.resume(a, 1) == 3
    worker.execute_run(a, 1)
    assert comparable(a.records(1)) == comparable(train(RunConfig(**TINY, seed=0)).records)
    assert len(b.records(1)) == 2 and checkpoint.load(path_b)["epoch"] == 2


def test_an_older_store_resumes_from_its_own_checkpoint_in_the_shared_folder(stores):
    a, _ = stores
    run_id = stopped_run(a, seed=0, after=2)
    own, shared = (checkpoint.run_checkpoint_path(a.path, run_id),
                   checkpoint.shared_checkpoint_path(a.path, run_id))
    os.replace(own, shared)  # where a store made before per-store folders kept it
    assert queue.resume(a, run_id) == 2
    assert own.exists() and not shared.exists()  # moved: its records prove it is this run's
    worker.execute_run(a, run_id)
    assert comparable(a.records(run_id)) == comparable(train(RunConfig(**TINY)).records)


@pytest.mark.parametrize("where", ["shared", "own"])
def test_a_checkpoint_of_another_run_is_refused_and_no_epoch_is_lost(stores, where):
    """The user saw a.db's epochs 26-58 deleted: b.db's run 1 (another seed) had written the
    shared run-1.pt, resume dropped a.db's records after its epoch, then failed."""
    a, b = stores
    run_id = stopped_run(a, seed=0, after=4)
    other = checkpoint.run_checkpoint_path(b.path, stopped_run(b, seed=7, after=2))
    own = checkpoint.run_checkpoint_path(a.path, run_id)
    own.unlink()
    shutil.copyfile(other, own if where == "own" else
                    checkpoint.shared_checkpoint_path(a.path, run_id))
    before = a.records(run_id)
    result = cli_in_process("--db", str(a.path), "resume", str(run_id))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "is not this run's checkpoint (its config differs in seed)" in result.stderr
    assert "its 4 stored epochs are kept" in result.stderr
    assert a.records(run_id) == before and a.get_run(run_id)["status"] == "stopped"
    with pytest.raises(checkpoint.CheckpointError, match="differs in seed" if where == "own"
                       else "no checkpoint at"):
        worker.prepare_run(a, run_id)  # a worker refuses it too, whatever queued the run


def test_prune_deletes_only_its_own_stores_files(stores):
    a, b = stores
    for store in stores:
        stopped_run(store, seed=0, after=2)
        processes.log_folder(store.path).mkdir(parents=True, exist_ok=True)
        (processes.log_folder(store.path) / "run-1.log").write_text("log")
    shared = checkpoint.shared_checkpoint_path(a.path, 1)
    shutil.copyfile(checkpoint.run_checkpoint_path(b.path, 1), shared)
    result = cli_in_process("--db", str(a.path), "prune", "--status", "stopped")
    assert result.returncode == 0 and "deleted 1 runs" in result.stdout, result.stderr
    assert not checkpoint.run_checkpoint_path(a.path, 1).exists()
    assert not (processes.log_folder(a.path) / "run-1.log").exists()
    assert checkpoint.run_checkpoint_path(b.path, 1).exists() and shared.exists()
    assert (processes.log_folder(b.path) / "run-1.log").exists()
