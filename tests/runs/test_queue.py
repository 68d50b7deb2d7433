"""Dispatching queued runs to worker processes: process slots and GPUs of their own.

No worker really starts here: subprocess.Popen is replaced by a recorder whose "worker" is this
test process (alive, and older than the run), so the dispatcher's bookkeeping is what is tested.
"""

import os
import subprocess

import pytest

from divebatch.config import RunConfig
from divebatch.runs import capacity, queue
from divebatch.runs.store import RunStore


@pytest.fixture
def spawned(monkeypatch):
    """The environment of every worker started, in order."""
    environments = []

    class RecordingPopen:
        def __init__(self, args, env, **kwargs):
            environments.append(env)
            self.pid = os.getpid()
    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    monkeypatch.delenv("DIVEBATCH_MAX_WORKERS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return environments


def queued_run(store, **config):
    return store.create_run(RunConfig(**config).to_dict())


def test_each_gpu_run_gets_gpus_of_its_own(isolated_store, spawned, monkeypatch):
    monkeypatch.setattr(capacity, "gpu_ids", lambda: ["0", "1", "2"])
    store = RunStore(isolated_store)
    pair, single, waiting = (queued_run(store, nproc=2), queued_run(store),
                             queued_run(store, device="cuda"))
    assert queue.dispatch(store) == [pair, single]  # 3 GPUs, 3 processes: the third waits
    assert [env["CUDA_VISIBLE_DEVICES"] for env in spawned] == ["0,1", "2"]
    assert store.get_run(pair)["info"]["gpus"] == ["0", "1"]
    assert store.get_run(waiting)["status"] == "queued"
    store.mark_finished(pair, "completed")
    assert queue.dispatch(store) == [waiting]
    assert spawned[-1]["CUDA_VISIBLE_DEVICES"] == "0"


def test_a_run_needing_more_gpus_than_the_machine_fails_with_a_message(
        isolated_store, spawned, monkeypatch):
    monkeypatch.setattr(capacity, "gpu_ids", lambda: ["0", "1"])
    store = RunStore(isolated_store)
    too_big, fits = queued_run(store, nproc=4), queued_run(store)
    assert queue.dispatch(store) == [fits]
    failed = store.get_run(too_big)
    assert failed["status"] == "failed"
    assert "nproc = 4 needs 4 GPUs, but this machine has 2" in failed["error"]


def test_cpu_and_pinned_device_runs_get_no_gpu(isolated_store, spawned, monkeypatch):
    monkeypatch.setattr(capacity, "gpu_ids", lambda: ["0", "1"])
    store = RunStore(isolated_store)
    run_ids = [queued_run(store, device="cpu"), queued_run(store, device="cuda:1")]
    assert queue.dispatch(store) == run_ids
    assert all("CUDA_VISIBLE_DEVICES" not in env for env in spawned)
    assert all("gpus" not in store.get_run(run_id)["info"] for run_id in run_ids)


def test_processes_count_and_the_oldest_run_goes_first(isolated_store, spawned, monkeypatch):
    monkeypatch.setattr(capacity, "gpu_ids", lambda: [])
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", "2")
    store = RunStore(isolated_store)
    big, pair, single = queued_run(store, nproc=3), queued_run(store, nproc=2), queued_run(store)
    assert queue.dispatch(store) == [big]  # larger than the limit: runs alone
    assert queue.dispatch(store) == []
    store.mark_finished(big, "completed")
    assert queue.dispatch(store) == [pair]  # 2 of 2 slots; the single run waits its turn
    store.mark_finished(pair, "completed")
    assert queue.dispatch(store) == [single]
