"""Dispatching queued runs to worker processes: process slots and GPUs of their own.

No worker really starts here: subprocess.Popen is replaced by a recorder whose "worker" is this
test process (alive, and older than the run), so the dispatcher's bookkeeping is what is tested.
"""

import os
import subprocess

import pytest
import torch

from divebatch import jobs
from divebatch.config import RunConfig
from divebatch.store import RunStore


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


def queue(store, **config):
    return store.create_run(RunConfig(**config).to_dict())


def test_each_gpu_run_gets_gpus_of_its_own(isolated_store, spawned, monkeypatch):
    monkeypatch.setattr(jobs, "gpu_ids", lambda: ["0", "1", "2"])
    store = RunStore(isolated_store)
    pair, single, waiting = (queue(store, nproc=2), queue(store), queue(store, device="cuda"))
    assert jobs.dispatch(store) == [pair, single]  # 3 GPUs, 3 processes: the third waits
    assert [env["CUDA_VISIBLE_DEVICES"] for env in spawned] == ["0,1", "2"]
    assert store.get_run(pair)["info"]["gpus"] == ["0", "1"]
    assert store.get_run(waiting)["status"] == "queued"
    store.mark_finished(pair, "completed")
    assert jobs.dispatch(store) == [waiting]
    assert spawned[-1]["CUDA_VISIBLE_DEVICES"] == "0"


def test_a_run_needing_more_gpus_than_the_machine_fails_with_a_message(
        isolated_store, spawned, monkeypatch):
    monkeypatch.setattr(jobs, "gpu_ids", lambda: ["0", "1"])
    store = RunStore(isolated_store)
    too_big, fits = queue(store, nproc=4), queue(store)
    assert jobs.dispatch(store) == [fits]
    failed = store.get_run(too_big)
    assert failed["status"] == "failed"
    assert "nproc = 4 needs 4 GPUs, but this machine has 2" in failed["error"]


def test_cpu_and_pinned_device_runs_get_no_gpu(isolated_store, spawned, monkeypatch):
    monkeypatch.setattr(jobs, "gpu_ids", lambda: ["0", "1"])
    store = RunStore(isolated_store)
    run_ids = [queue(store, device="cpu"), queue(store, device="cuda:1")]
    assert jobs.dispatch(store) == run_ids
    assert all("CUDA_VISIBLE_DEVICES" not in env for env in spawned)
    assert all("gpus" not in store.get_run(run_id)["info"] for run_id in run_ids)


def test_processes_count_and_the_oldest_run_goes_first(isolated_store, spawned, monkeypatch):
    monkeypatch.setattr(jobs, "gpu_ids", lambda: [])
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", "2")
    store = RunStore(isolated_store)
    big, pair, single = queue(store, nproc=3), queue(store, nproc=2), queue(store)
    assert jobs.dispatch(store) == [big]  # larger than the limit: runs alone
    assert jobs.dispatch(store) == []
    store.mark_finished(big, "completed")
    assert jobs.dispatch(store) == [pair]  # 2 of 2 slots; the single run waits its turn
    store.mark_finished(pair, "completed")
    assert jobs.dispatch(store) == [single]


def test_gpu_ids_follow_the_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")
    assert jobs.gpu_ids() == ["3", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert jobs.gpu_ids() == ["0", "1"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert jobs.gpu_ids() == []
