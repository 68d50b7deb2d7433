"""Worker slots, GPUs and threads: what this machine runs at once."""

import torch

from divebatch.runs import capacity


def test_gpu_ids_follow_the_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")
    assert capacity.gpu_ids() == ["3", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert capacity.gpu_ids() == ["0", "1"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert capacity.gpu_ids() == []


def test_background_busy_counts_worker_processes_not_runs():
    def run(pid, nproc=1, background=True):
        return {"worker_pid": pid, "config": {"nproc": nproc},
                "info": {"background": True} if background else {}}
    running = [run(7), run(7), run(7),  # one worker interleaving a race
               run(None), run(None),  # claimed by a dispatcher, worker not yet started
               run(8, nproc=2), run(9, background=False)]  # torchrun pair; CLI run
    assert capacity.background_busy(running) == 1 + 2 + 2
