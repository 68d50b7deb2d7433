"""Dispatching queued runs to worker processes: process slots and GPUs of their own.

No worker really starts here: subprocess.Popen is replaced by a recorder whose "worker" is this
test process (alive, and older than the run), so the dispatcher's bookkeeping is what is tested.
"""

import os
import subprocess

import pytest
import torch

from divebatch.runs import jobs, processes
from divebatch.config import RunConfig
from divebatch.runs.store import RunStore
from tests.helpers.gates import HELD
from tests.helpers.records import comparable


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


# --- pause, step, resume and pace through the store's control rows

def test_pause_step_and_resume_through_the_store(isolated_store):
    import threading
    import time
    store = RunStore(isolated_store)
    run_id = store.create_run(RunConfig(problem="least_squares", n_samples=300, dim=8,
                                        epochs=4, method="sgd").to_dict(), status="running")
    jobs.request_play(store, run_id, "pause")
    steps = []

    def drive():  # the dashboard: step once when paused, then resume when paused again
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(steps) < 2:
            done = len(store.records(run_id))
            if done not in steps and jobs.is_paused(store, run_id):
                # keyed by the record count, not by seeing the run unpause: a stepped
                # epoch of this tiny problem can end within one poll of the driver
                steps.append(done)
                jobs.request_play(store, run_id, "step" if len(steps) == 1 else "resume")
            time.sleep(0.02)
        if len(steps) < 2:  # fail, not hang: let the paused run end
            jobs.request_stop(store, run_id)
            jobs.request_play(store, run_id, "resume")
    driver = threading.Thread(target=drive)
    driver.start()
    jobs.execute_run(store, run_id)
    driver.join()
    assert steps == [1, 2]  # paused after epoch 1, stepped one epoch, paused after 2
    assert store.get_run(run_id)["status"] == "completed" and len(store.records(run_id)) == 4
    kinds = [event["kind"] for event in store.events(run_id)]
    assert kinds.count("paused") == 2 and kinds.count("resumed") == 2


def test_play_and_pace_requests_are_checked(isolated_store):
    store = RunStore(isolated_store)
    run_id = store.create_run(RunConfig().to_dict(), status="running")
    with pytest.raises(ValueError, match="kind should be one of pause, resume, step"):
        jobs.request_play(store, run_id, "rewind")
    with pytest.raises(ValueError, match="pace_s should be"):
        jobs.request_pace(store, run_id, -1.0)
    jobs.request_pace(store, run_id, 2.5)
    assert [(c["kind"], c["payload"]) for c in store.take_controls(run_id)] == [
        ("pace", {"pace_s": 2.5})]


# --- the warm pool (real worker processes)

def wait_for(predicate, timeout: float, what: str):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def one_ready_warm_worker(db, monkeypatch) -> tuple[RunStore, dict]:
    """A store with one worker slot and one warm worker, started and ready (its row)."""
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "1")
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", "1")
    monkeypatch.setattr(jobs, "gpu_ids", lambda: [])
    store = RunStore(db)
    jobs.keep_warm(store)
    return store, wait_for(lambda: [w for w in store.workers() if w["ready_at"]], 120,
                           "warm")[0]


def test_a_warm_worker_takes_queued_runs_and_a_dead_one_is_replaced(
        isolated_store, monkeypatch):
    import signal
    store, warm = one_ready_warm_worker(isolated_store, monkeypatch)
    tiny = RunConfig(problem="least_squares", n_samples=300, dim=8, epochs=3, method="sgd")
    first = jobs.submit(store, tiny)
    wait_for(lambda: store.get_run(first)["status"] == "completed", 60, "the first run")
    assert len(store.records(first)) == 3
    assert store.get_run(first)["info"]["background"]
    slow = jobs.submit(store, tiny.replace(epochs=5, pace_s=HELD))  # held after epoch 1
    wait_for(lambda: store.records(slow), 60, "the slow run's first epoch")
    assert store.get_run(slow)["worker_pid"] == warm["pid"]  # the same warm process
    assert niceness(warm["pid"]) == max(os.nice(0), jobs.WORKER_NICENESS)  # below the server
    os.kill(warm["pid"], signal.SIGKILL)
    wait_for(lambda: not processes.pid_alive(warm["pid"]), 10, "the kill")
    jobs.dispatch(store)  # reaps the run, forgets the worker, starts a new one
    assert store.get_run(slow)["status"] == "interrupted" and len(store.records(slow)) == 1
    new = wait_for(lambda: [w for w in store.workers() if w["pid"]], 10, "a new worker")[0]
    assert new["pid"] != warm["pid"]
    os.kill(new["pid"], signal.SIGKILL)


# --- a race in one worker: its runs take turns, an epoch each, and hold one slot

RACE = RunConfig(problem="least_squares", n_samples=64, dim=4, epochs=3, batch_size=4,
                 max_batch_size=32, lr=0.05, seed=5, progress_every=60.0)
RACE_RUNS = [RACE.replace(method="divebatch"), RACE.replace(method="sgd"),
             RACE.replace(method="sgd", batch_size=32), RACE.replace(method="adabatch")]


def queue_race(store, configs=RACE_RUNS, group="race least_squares seed 5 12:00:00"):
    return store.create_runs([config.to_dict() for config in configs],
                             names=[""] * len(configs), group=group)


def test_a_group_trains_each_run_as_it_would_train_alone(isolated_store):
    from divebatch.training.trainer import train
    store = RunStore(isolated_store)
    run_ids = queue_race(store)
    results = jobs.execute_group(store, run_ids)
    assert [result.status for result in results] == ["completed"] * 4
    for config, run_id in zip(RACE_RUNS, run_ids):
        alone = [record.to_dict() for record in train(config).records]
        assert store.get_run(run_id)["status"] == "completed"
        assert store.get_run(run_id)["worker_pid"] is None  # cleared when it finished
        assert comparable(store.records(run_id)) == comparable(alone)


def test_an_error_in_one_run_of_a_group_fails_only_that_run(isolated_store, monkeypatch):
    store = RunStore(isolated_store)
    run_ids = queue_race(store)
    broken = store.create_run({**RACE.to_dict(), "epochs": 0})  # fails before training
    bad = run_ids[1]
    real_poll = jobs.StoreControl.poll

    def poll(control):
        if control.run_id == bad and store.records(bad):
            raise RuntimeError("lost the disk")
        return real_poll(control)
    monkeypatch.setattr(jobs.StoreControl, "poll", poll)
    results = jobs.execute_group(store, [*run_ids, broken])
    failed = store.get_run(bad)
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: lost the disk"
    assert len(store.records(bad)) == 1 and results[1] is None
    assert "Traceback" in store.events(bad)[-1]["payload"]["traceback"]
    assert store.get_run(broken)["status"] == "failed"
    assert "epochs" in store.get_run(broken)["error"]
    for run_id in (run_ids[0], *run_ids[2:]):
        assert store.get_run(run_id)["status"] == "completed"
        assert len(store.records(run_id)) == 3


def test_a_paused_run_of_a_group_lets_the_others_finish_then_stops(isolated_store):
    import threading
    store = RunStore(isolated_store)
    paused, *others = run_ids = queue_race(store)
    jobs.request_play(store, paused, "pause")

    def stop_when_the_others_are_done():
        wait_for(lambda: all(store.get_run(i)["status"] == "completed" for i in others)
                 and jobs.is_paused(store, paused), 120, "the others to complete")
        jobs.request_stop(store, paused)
    driver = threading.Thread(target=stop_when_the_others_are_done)
    driver.start()
    jobs.execute_group(store, run_ids)
    driver.join()
    assert store.get_run(paused)["status"] == "stopped" and len(store.records(paused)) == 1
    assert all(len(store.records(run_id)) == 3 for run_id in others)


def test_a_warm_worker_claims_a_whole_race_at_once_and_it_holds_one_slot(isolated_store):
    import threading
    store = RunStore(isolated_store)
    race = queue_race(store)
    single = queue(store)
    claims = []

    def claimer(pid):
        claims.append(store.claim_many(lambda running, queued:
                                       jobs.warm_claim(running, queued, [], 2), pid=pid))
    threads = [threading.Thread(target=claimer, args=(pid,)) for pid in (101, 102, 103, 104)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claims) == [[], [], race, [single]]  # never one run twice, never over 2
    running = store.list_runs(status="running")
    assert jobs.background_busy(running) == 2
    assert len({run["worker_pid"] for run in running if run["id"] in race}) == 1


def test_only_a_race_a_warm_worker_can_take_whole_is_claimed_whole(isolated_store):
    store = RunStore(isolated_store)
    pair = queue_race(store, [RACE, RACE.replace(nproc=2)])
    sweep = queue_race(store, [RACE, RACE], group="sweep lr")

    def claim(limit):
        return store.claim_many(lambda running, queued:
                                jobs.warm_claim(running, queued, [], limit))
    assert claim(9) == [pair[0]]  # its partner needs two processes: a worker of its own
    assert claim(9) == []  # the oldest run is now the one a warm worker cannot take
    store.cancel_queued(pair[1])
    assert claim(9) == [sweep[0]]  # not a race: one run at a time
    assert claim(2) == []  # two slots held


def test_background_busy_counts_worker_processes_not_runs():
    def run(pid, nproc=1, background=True):
        return {"worker_pid": pid, "config": {"nproc": nproc},
                "info": {"background": True} if background else {}}
    running = [run(7), run(7), run(7),  # one worker interleaving a race
               run(None), run(None),  # claimed by a dispatcher, worker not yet started
               run(8, nproc=2), run(9, background=False)]  # torchrun pair; CLI run
    assert jobs.background_busy(running) == 1 + 2 + 2


def test_a_race_interleaves_where_a_warm_pool_can_take_all_its_runs(monkeypatch):
    monkeypatch.setattr(jobs, "gpu_ids", lambda: [])
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "1")
    assert jobs.race_interleaves(RACE_RUNS)
    assert not jobs.race_interleaves([*RACE_RUNS, RACE.replace(nproc=2)])
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "0")
    assert not jobs.race_interleaves(RACE_RUNS)
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "1")
    monkeypatch.setattr(jobs, "gpu_ids", lambda: ["0"])  # GPU machine: no warm pool
    assert not jobs.race_interleaves(RACE_RUNS)


def test_a_warm_worker_interleaves_a_race_and_its_kill_interrupts_every_run(
        isolated_store, monkeypatch):
    import signal
    store, warm = one_ready_warm_worker(isolated_store, monkeypatch)
    held = [config.replace(epochs=5, pace_s=HELD) for config in RACE_RUNS]
    run_ids = jobs.submit_race(store, held)  # each waits after its first epoch until killed
    wait_for(lambda: all(store.records(run_id) for run_id in run_ids), 60, "first epochs")
    running = store.list_runs(status="running")
    assert {run["worker_pid"] for run in running} == {warm["pid"]}
    assert jobs.background_busy(running) == 1
    os.kill(warm["pid"], signal.SIGKILL)
    wait_for(lambda: not processes.pid_alive(warm["pid"]), 10, "the kill")
    jobs.dispatch(store)  # reaps the runs, forgets the worker, starts a new one
    for run_id in run_ids:
        assert store.get_run(run_id)["status"] == "interrupted"
        assert len(store.records(run_id)) == 1
    new = wait_for(lambda: [w for w in store.workers() if w["pid"]], 10, "a new worker")[0]
    os.kill(new["pid"], signal.SIGKILL)


@pytest.mark.parametrize("cores,slots,threads", [(2, 1, 1), (16, 15, 1), (16, 3, 4), (1, 1, 1)])
def test_workers_share_the_cores_with_one_share_left_for_the_dashboard(
        monkeypatch, cores, slots, threads):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", str(slots))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert jobs.worker_env()["OMP_NUM_THREADS"] == str(threads)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert jobs.worker_env()["OMP_NUM_THREADS"] == "3"


def niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])  # field 19 of proc(5)


def test_workers_ask_for_a_lower_priority_and_a_bad_value_falls_back(monkeypatch):
    monkeypatch.delenv("DIVEBATCH_WORKER_NICE", raising=False)
    assert jobs.worker_env()["DIVEBATCH_WORKER_NICE"] == str(jobs.WORKER_NICENESS)
    increments = []
    monkeypatch.setattr(os, "nice", lambda inc: increments.append(inc) or 3)
    for value, expected in (("7", 4), ("x", jobs.WORKER_NICENESS - 3), ("0", 0), ("99", 16)):
        monkeypatch.setenv("DIVEBATCH_WORKER_NICE", value)
        increments.clear()
        jobs.lower_priority()
        assert increments == [0, expected], value
