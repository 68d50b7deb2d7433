"""The Ray backend on a two-CPU local cluster started here (no network): the same records as
the local backend, Stop, re-runs, a lost worker retried from its checkpoint, and errors.
Runs that a stop or a kill must find unfinished are held after each epoch (tests.helpers.gates)."""

import os
import signal
import subprocess
import threading
import time

import pytest
import ray  # scripts/test.sh installs the [ray] extra: these tests must run in CI, never skip

from tests.helpers.cli import ROOT, run_cli
from divebatch import cli
from divebatch.training import checkpoint
from divebatch.runs import groups
from divebatch.experiments import sweeps
from divebatch.runs import ray_backend
from divebatch.runs.ray_backend import RayBackend, RayOptions
from divebatch.runs.store import RunStore
from tests.helpers.interrupts import ctrl_c_in_epoch
from tests.helpers.gates import HELD, release, releasing_every_run, wait_for
from tests.helpers.records import comparable

BASE = {"problem": "least_squares", "n_samples": 320, "dim": 8, "epochs": 3,
        "batch_size": 16, **sweeps.SWEEP_DEFAULTS}
FLAGS = ["sweep", "--problem", "least_squares", "--n-samples", "320", "--dim", "8",
         "--epochs", "2", "--batch-size", "16", "--max-batch-size", "64", "--quiet"]


# Ray starts several processes per cluster and worker: slow on a shared two-core machine.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module", autouse=True)
def cluster():
    for attempt in range(3):  # a node that starts slower than Ray's 30 s (busy CPU) fails
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield
    ray.shutdown()


def spec(**grid) -> sweeps.SweepSpec:
    values = {"deltas": (0.1, 1.0), "max_batch_sizes": (64, 256), "resize_everys": (1,),
              "seeds": (0, 1), **grid}
    return sweeps.SweepSpec(base={**BASE, **values.pop("base", {})}, **values)


def on_ray() -> RayBackend:
    return RayBackend(RayOptions())


def outcome(store: RunStore, sweep: sweeps.SweepSpec) -> list[tuple]:
    """Per planned run: status, config and records without timing fields."""
    matched = groups.match_runs(store, sweep.group, sweep.plan())
    return [(run["status"], run["config"], comparable(store.records(run["id"])))
            for run in matched]


def test_ray_sweep_stores_the_same_runs_as_the_local_backend(tmp_path):
    sweep = spec(seeds=(0,))
    on_cluster, here = RunStore(tmp_path / "ray.db"), RunStore(tmp_path / "local.db")
    assert sweeps.run_here(on_cluster, sweep, backend=on_ray()) == 5  # 2 x 2 + the baseline
    assert sweeps.run_here(here, sweep) == 5
    assert outcome(on_cluster, sweep) == outcome(here, sweep)
    assert all(status == "completed" for status, _, _ in outcome(on_cluster, sweep))
    run = on_cluster.list_runs()[0]
    assert run["info"]["backend"] == "ray" and run["info"]["n_train"] == 256
    assert run["worker_pid"] is None and run["group"] == sweep.group


def test_the_driver_submits_no_more_tasks_than_the_cluster_trains_at_once(tmp_path,
                                                                          monkeypatch):
    assert [ray_backend.slots(RayOptions(cpus_per_run=cpus)) for cpus in (1, 0.5, 2, 3)] == \
        [2, 4, 1, 1]  # the cluster has 2 CPUs
    in_flight = []
    submit = ray_backend.Driver.submit

    def counted_submit(driver, run_id):
        in_flight.append(len(driver.refs) + 1)
        submit(driver, run_id)
    monkeypatch.setattr(ray_backend.Driver, "submit", counted_submit)
    assert sweeps.run_here(RunStore(tmp_path / "runs.db"), spec(seeds=(0,)),
                           backend=on_ray()) == 5
    assert len(in_flight) == 5 and max(in_flight) == 2  # each next task to a warm worker


def in_background(work, store, group: str) -> threading.Thread:
    """Run `work()` in a thread; if it fails, stop the group (its held runs would otherwise
    wait forever) and keep the error for `settle`."""
    def guarded():
        try:
            work()
        except BaseException as error:  # noqa: BLE001 (re-raised by settle)
            thread.error = error
            groups.stop_group(store, group)
    thread = threading.Thread(target=guarded, daemon=True)
    thread.error = None
    thread.start()
    return thread


def settle(thread: threading.Thread) -> None:
    thread.join()
    if thread.error:
        raise thread.error


def test_stop_keeps_finished_runs_and_a_rerun_trains_only_the_rest(tmp_path):
    store = RunStore(tmp_path / "runs.db")  # every run is held after its first epoch
    sweep = spec(deltas=(0.1,), max_batch_sizes=(64,), seeds=(0, 1, 2),
                 base={"epochs": 2, "pace_s": HELD})
    released, finished = [], []

    def release_the_first_held_run():
        run_id = wait_for(lambda: next((run["id"] for run in store.list_runs(status="running")
                                        if store.records(run["id"])), None), "a first epoch")
        release(store, run_id)
        released.append(run_id)

    def stop_after_the_first(planned, run):
        finished.append(run["id"])
        if len(finished) == 1:
            groups.stop_group(store, sweep.group)
    releaser = in_background(release_the_first_held_run, store, sweep.group)
    sweeps.run_here(store, sweep, on_run_done=stop_after_the_first, backend=on_ray())
    settle(releaser)
    statuses = {run["id"]: run["status"] for run in store.list_runs()}
    kept = [run_id for run_id, status in statuses.items() if status == "completed"]
    assert kept == released == finished[:1]  # the others were held when the stop came
    assert sorted(statuses.values()) == ["completed"] + ["stopped"] * (len(statuses) - 1)
    assert len(store.records(kept[0])) == 2

    with releasing_every_run(store):
        rerun = sweeps.run_here(store, sweep, backend=on_ray())
    assert rerun == len(statuses) - 1
    assert len(store.list_runs()) == len(statuses)  # the stopped runs continued in place
    matched = groups.match_runs(store, sweep.group, sweep.plan())
    assert all(run["status"] == "completed" for run in matched)
    assert set(kept) <= {run["id"] for run in matched}  # reused, not trained again


def test_a_lost_worker_is_interrupted_then_resumed_from_its_checkpoint(tmp_path):
    store = RunStore(tmp_path / "runs.db")  # held after epochs 1 and 2 until released
    sweep = spec(deltas=(0.1,), max_batch_sizes=(64,), seeds=(0,),
                 base={"epochs": 3, "pace_s": HELD, "keep_checkpoints": 0})  # none at epoch 0
    killed = []

    def kill_a_held_worker_then_release_its_retry():
        def held_with_a_checkpoint():  # written after epoch 1's record, before the wait
            return next((run for run in store.list_runs(status="running")
                         if "ray_pid" in run["info"] and checkpoint.run_checkpoint_path(
                             store.path, run["id"]).exists()), None)
        run = wait_for(held_with_a_checkpoint, "a held run with its checkpoint")
        os.kill(run["info"]["ray_pid"], signal.SIGKILL)
        killed.append(run["id"])
        wait_for(lambda: any(e["kind"] == "resumed" for e in store.events(run["id"])),
                 "the retry")  # requeued: controls sent before it would have been dropped
        for each in store.list_runs(status="running"):
            release(store, each["id"])
    killer = in_background(kill_a_held_worker_then_release_its_retry, store, sweep.group)
    sweeps.run_here(store, sweep, backend=on_ray())
    settle(killer)

    kinds = [event["kind"] for event in store.events(killed[0])
             if event["kind"] in ("interrupted", "resumed")]  # not DiveBatch's resizes
    assert kinds == ["interrupted", "resumed"]
    resumed = next(e for e in store.events(killed[0]) if e["kind"] == "resumed")
    assert resumed["epoch"] == 1  # continued from its checkpoint, not from scratch
    assert all(run["status"] == "completed" for run in store.list_runs())
    here = RunStore(tmp_path / "local.db")
    with releasing_every_run(here):
        sweeps.run_here(here, sweep)
    assert outcome(store, sweep) == outcome(here, sweep)  # the checkpoint kept every RNG


def test_a_rerun_on_ray_continues_a_stopped_sweeps_runs_in_place(tmp_path, monkeypatch):
    """As the local backend does: a run stopped by Ctrl-C continues from its checkpoint and a
    run left running by a dead driver from the beginning, both in place, none beside them."""
    store = RunStore(tmp_path / "runs.db")
    sweep = spec(deltas=(0.1,), max_batch_sizes=(64,), seeds=(0,))  # the baseline, one cell
    ctrl_c_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        sweeps.run_here(store, sweep)  # the baseline is stopped in epoch 2
    monkeypatch.undo()
    stopped = store.list_runs(group=sweep.group)[0]["id"]
    dead_driver = subprocess.Popen(["true"])
    dead_driver.wait()
    left_running = store.create_run(sweep.plan()[1].config.to_dict(), group=sweep.group)
    store.claim_run(left_running)
    store.mark_running(left_running, dead_driver.pid)

    assert sweeps.run_here(store, sweep, backend=on_ray()) == 2
    assert sorted(run["id"] for run in store.list_runs()) == sorted([stopped, left_running])
    resumed = [e["epoch"] for e in store.events(stopped) if e["kind"] == "resumed"]
    assert resumed == [1]  # its checkpoint: Ctrl-C came before epoch 2's was written
    assert store.get_run(stopped)["info"]["backend"] == "ray"
    here = RunStore(tmp_path / "local.db")
    sweeps.run_here(here, sweep)
    assert outcome(store, sweep) == outcome(here, sweep)  # the checkpoint kept every RNG


def test_errors_are_one_line_with_exit_code_2(monkeypatch, capsys):
    assert cli.main([*FLAGS, "--backend", "ray", "--gpus-per-run", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --gpus-per-run should be <= 0 (the most GPUs of any node of the Ray "
        "cluster), but got --gpus-per-run=1")
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if not installed
    assert cli.main([*FLAGS, "--backend", "ray"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        'error: the Ray backend needs Ray: pip install "divebatch[ray]"'


def test_an_unreachable_cluster_is_named_with_the_reason():
    result = run_cli(*FLAGS, "--backend", "ray", "--address", "127.0.0.1:1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        "error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"


def test_the_background_driver_writes_the_store_the_dashboard_reads(tmp_path):
    store, sweep = RunStore(tmp_path / "runs.db"), spec(deltas=(0.1,), max_batch_sizes=(64,),
                                                        seeds=(0,))
    ids = sweeps.launch(store, sweep, backend=RayBackend(RayOptions(address="auto")))
    assert len(ids) == 2 and {store.get_run(i)["status"] for i in ids} == {"running"}
    deadline = time.monotonic() + 240
    while store.list_runs(status="running") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [store.get_run(i)["status"] for i in ids] == ["completed", "completed"]
    here = RunStore(tmp_path / "local.db")
    sweeps.run_here(here, sweep)
    assert outcome(store, sweep) == outcome(here, sweep)


def test_the_sweep_page_sends_runs_to_ray_and_names_an_unreachable_cluster():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/sweep.py").run()
    at.radio(key="sweep_backend").set_value("ray")
    at.text_input(key="sweep_ray_address").set_value("127.0.0.1:1")
    at.button(key="sweep_start").click().run()
    assert not at.exception
    assert at.error[0].value == "cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"
