"""Run groups: which stored run stands for a planned run, what is missing, stopping a group."""

import subprocess

import pytest

from divebatch.config import RunConfig
from divebatch.runs import groups
from divebatch.runs.store import RunStore

GROUP = "sweep:test"


@pytest.fixture
def store():
    return RunStore(RunStore.default_path())


def plan(seeds=(0, 1, 2)) -> list[groups.PlannedRun]:
    base = RunConfig(problem="least_squares", n_samples=320, dim=8, epochs=3, batch_size=16)
    return [groups.PlannedRun("cell", seed, base.replace(seed=seed, name=f"seed={seed}"))
            for seed in seeds]


def finished_run(store, config, status="completed") -> int:
    run_id = store.create_run(config.to_dict(), name=config.name, group=GROUP)
    store.append_record(run_id, {"epoch": 1, "train_time": 1.0, "val_acc": 0.5})
    store.mark_finished(run_id, status)
    return run_id


def test_identity_ignores_the_name_and_nothing_else():
    config = plan()[1].config
    assert groups.identity(config) == groups.identity(config.replace(name="renamed"))
    assert groups.identity(config) != groups.identity(config.replace(seed=9))
    assert groups.identity(config.to_dict()) == groups.identity(config)
    assert groups.identity({"no_such_field": 1}) is None  # not a RunConfig


def test_finished_runs_stand_for_their_plan_before_active_then_stopped_ones(store):
    planned = plan()
    stopped = finished_run(store, planned[0].config, status="stopped")
    done = finished_run(store, planned[0].config)
    queued = store.create_run(planned[1].config.to_dict(), group=GROUP)
    store.create_run(planned[2].config.to_dict(), group="another group")
    matched = groups.match_runs(store, GROUP, planned)
    assert [run and run["id"] for run in matched] == [done, queued, None]
    assert stopped not in [run and run["id"] for run in matched]
    assert groups.missing(planned, matched) == [planned[2]]
    assert groups.progress(matched) == {"finished": 1, "running": 0, "queued": 1,
                                        "to_do": 1, "total": 3}


def test_stop_cancels_queued_runs_and_keeps_finished_ones(store):
    planned = plan()
    done = finished_run(store, planned[0].config)
    queued = [store.create_run(p.config.to_dict(), group=GROUP) for p in planned[1:]]
    assert sorted(groups.stop_group(store, GROUP)) == queued
    assert [store.get_run(i)["status"] for i in queued] == ["stopped", "stopped"]
    assert store.get_run(done)["status"] == "completed"
    assert groups.missing(planned, groups.match_runs(store, GROUP, planned)) == planned[1:]


def test_a_rerun_continues_runs_left_stopped_or_running_by_a_dead_sweep_in_place(store):
    """Ctrl-C leaves a run stopped; a sweep killed outright leaves one running with a dead
    worker: a re-run continues both (reaped first), training none beside them."""
    planned = plan(seeds=(0, 1))
    stopped = finished_run(store, planned[0].config, status="stopped")
    gone = subprocess.Popen(["true"])
    gone.wait()
    left_running = store.create_run(planned[1].config.to_dict(), group=GROUP)
    store.claim_run(left_running)
    store.mark_running(left_running, gone.pid)
    assert groups.run_missing(store, GROUP, planned) == 2
    runs = store.list_runs(group=GROUP)
    assert sorted(run["id"] for run in runs) == sorted([stopped, left_running])
    assert {run["status"] for run in runs} == {"completed"}
    assert all("resumed" in [e["kind"] for e in store.events(run_id)]
               for run_id in (stopped, left_running))
