"""One run on two CPU processes (torchrun, gloo) against the same run in one process.

Oracle: the single-process trainer. DDP (with the summing hook), sharding and the one
all-reduce of S must give the same diversity, batch sizes and losses up to float reduction
order, with and without micro-batches.
"""

import os
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers.cli import ROOT, run_cli
from divebatch.runs import control_requests, processes, queue
from divebatch.config import RunConfig
from divebatch.training.distributed import Distributed
from divebatch.meter.diversity import DiversityMeter
from divebatch.runs.store import RunStore
from divebatch.training.trainer import train

# 501 training samples: the 21st batch of epoch 1 (measured) has one sample: rank 1 has none
SYNTHETIC = dict(problem="least_squares", n_samples=626, dim=10, epochs=3, batch_size=25,
                 max_batch_size=301, delta=1.0, measure_every=2, lr=0.05)
DIGITS = dict(problem="digits", model="cnn", epochs=3, batch_size=25, max_batch_size=301,
              delta=1.0, lr=0.05)
EXACT = ("epoch", "step", "samples_seen", "batch_size", "next_batch_size", "measured_batches")
CLOSE = ("diversity", "train_loss", "val_loss", "val_acc", "lr")


def torchrun(db, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--standalone", "-m", "divebatch", "--db", str(db), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env,
                          cwd=ROOT)


def flags(config: dict) -> list[str]:
    return [f"--{key.replace('_', '-')}={value}" for key, value in config.items()]


def assert_same_trajectory(single: list[dict], several: list[dict], rel: float) -> None:
    assert len(single) == len(several) > 0
    for one, many in zip(single, several):
        assert {k: many[k] for k in EXACT} == {k: one[k] for k in EXACT}
        for key in CLOSE:
            if one[key] is None:
                assert many[key] is None
            else:
                assert many[key] == pytest.approx(one[key], rel=rel), (key, one["epoch"])


@pytest.mark.slow
@pytest.mark.parametrize("problem,extra,rel", [
    (SYNTHETIC, {}, 1e-5),  # launched by torchrun
    # `run --nproc 2` relaunches itself under torchrun; 2 ranks x micro-batches vs one batch
    (DIGITS, {"max_micro_batch": 8, "nproc": 2}, 1e-3),
], ids=["least_squares", "digits_micro_batches"])
def test_two_processes_match_one(tmp_path, problem, extra, rel):
    single = [r.to_dict() for r in train(RunConfig(**problem)).records]
    assert {r["batch_size"] for r in single} == {problem["batch_size"], 301}  # it did resize
    db = tmp_path / "runs.db"
    args = ["run", *flags({**problem, **extra}), "--quiet"]
    result = torchrun(db, *args) if "nproc" not in extra else run_cli("--db", str(db), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split()
    assert lines == [lines[0], lines[0]]  # only rank 0 prints: the run id, first and last
    store = RunStore(db)
    [run] = store.list_runs()  # only rank 0 stores
    assert run["status"] == "completed" and run["config"]["nproc"] == 2
    assert run["info"]["processes"] == 2
    assert_same_trajectory(single, store.records(run["id"]), rel)


def test_micro_batches_in_one_process_equal_the_unsplit_batch():
    config = RunConfig(problem="sine", n_samples=500, dim=6, epochs=3, batch_size=24,
                       max_batch_size=200, delta=0.5, measure_every=1)
    whole = [r.to_dict() for r in train(config).records]
    split = [r.to_dict() for r in train(config.replace(max_micro_batch=5)).records]
    assert_same_trajectory(whole, split, rel=1e-5)


@pytest.mark.slow
def test_dashboard_run_on_two_processes_takes_hot_changes_stops_and_resumes(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    config = RunConfig(problem="least_squares", n_samples=3000, dim=10, epochs=10,
                       batch_size=8, max_batch_size=8, method="sgd", nproc=2, lr=0.05,
                       progress_every=0.1)
    run_id = queue.submit(store, config)
    wait_for(lambda: len(store.records(run_id)) >= 1, store, run_id)
    control_requests.request_hot_change(store, run_id, lr_multiplier=0.5)
    # an epoch's lr is the one it started with: wait for a whole epoch at the new LR
    wait_for(lambda: store.records(run_id)[-1]["lr"] == pytest.approx(0.025), store, run_id)
    control_requests.request_stop(store, run_id)
    wait_for(lambda: store.get_run(run_id)["status"] != "running", store, run_id)
    assert store.get_run(run_id)["status"] == "stopped"
    stopped_after = len(store.records(run_id))
    assert queue.resume(store, run_id) == stopped_after  # both ranks continue from rank 0's file
    wait_for(lambda: store.get_run(run_id)["status"] == "completed", store, run_id)
    run, records = store.get_run(run_id), store.records(run_id)
    assert run["info"]["processes"] == 2 and run["config"]["nproc"] == 2
    assert [(r["epoch"], r["samples_seen"], r["step"]) for r in records] == \
        [(epoch, 2400 * epoch, 300 * epoch) for epoch in range(1, 11)]
    assert records[0]["lr"] == pytest.approx(0.05) and records[-1]["lr"] == pytest.approx(0.025)
    assert {"hot_change", "resumed"} <= {e["kind"] for e in store.events(run_id)}


def wait_for(condition, store, run_id, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        run = store.get_run(run_id)
        assert run["status"] in ("queued", "running", "stopped", "completed"), \
            (run, _log(store, run_id))
        time.sleep(0.2)
    raise AssertionError(f"timed out; worker log:\n{_log(store, run_id)}")


def _log(store, run_id) -> str:
    path = store.path.parent / "logs" / store.path.name / f"run-{run_id}.log"
    return path.read_text()[-3000:] if path.exists() else "(no log)"


def test_spawn_command_uses_torchrun_only_for_several_processes():
    assert processes.launch_command(1, ["worker", "3"])[1:] == ["-m", "divebatch", "worker", "3"]
    assert processes.launch_command(4, ["worker", "3"])[1:] == [
        "-m", "torch.distributed.run", "--nproc_per_node=4", "--standalone",
        "-m", "divebatch", "worker", "3"]


@pytest.mark.parametrize("batch_size", [1, 2, 7, 8, 301])
@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_are_disjoint_and_balanced(batch_size, world_size):
    batch = torch.arange(batch_size)
    shards = [Distributed(torch.device("cpu"), rank, world_size).shard(batch)
              for rank in range(world_size)]
    assert torch.equal(torch.cat(shards), batch)
    assert {len(s) for s in shards} <= {batch_size // world_size,
                                        batch_size // world_size + 1}


@pytest.mark.parametrize("n,cap,sizes", [(10, 0, [10]), (10, 4, [4, 4, 2]), (3, 4, [3]),
                                         (0, 4, [0])])
def test_micro_batches_cover_every_sample_once(n, cap, sizes):
    parts = list(Distributed(torch.device("cpu")).micro_batches(n, cap))
    assert [len(range(n)[p]) for p in parts] == sizes


def test_meter_sums_micro_batches_and_reduces_s():
    """Two micro-batches in one track equal the whole batch; `reduce` acts on S only."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x, y = torch.randn(12, 5), torch.randn(12)

    def measure(parts, reduce=None):
        meter = DiversityMeter(model, sample_every=1, reduce=reduce)
        model.zero_grad()
        with meter.track(12):
            for part in parts:
                (0.5 * (model(x[part]).squeeze(1) - y[part]) ** 2).sum().div(12).backward()
        return meter.diversity()

    whole = measure([slice(0, 12)])
    assert measure([slice(0, 5), slice(5, 12)]) == pytest.approx(whole, rel=1e-6)
    assert measure([slice(0, 12)], reduce=lambda s: 3 * s) == pytest.approx(3 * whole)


@pytest.mark.parametrize("name,shape", [("cnn", (1, 8, 8)), ("mlp", (5,))])
def test_meter_accepts_an_empty_share(name, shape):
    """A process whose share of a batch is empty (B < W, or the last batch) adds nothing."""
    from divebatch.models.registry import build_model
    model = build_model(name, input_shape=shape, n_outputs=3, hidden=8)
    meter = DiversityMeter(model, sample_every=1)
    with meter.track(4, samples=0):
        model(torch.zeros(0, *shape)).sum().backward()
    assert meter.samples_measured == 4 and meter.diversity() == 0.0  # S = 0, G = 0
