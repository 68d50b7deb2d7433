"""The warm pool: warm workers take queued runs (real worker processes), a race is claimed
whole by one warm worker and holds one slot, a dead warm worker is replaced."""

import os

from divebatch.config import RunConfig
from divebatch.runs import capacity, processes, queue, warm_pool
from divebatch.runs.store import RunStore
from tests.helpers.gates import HELD
from tests.helpers.races import TINY_RACE as RACE, TINY_RACE_RUNS as RACE_RUNS, queue_race


def queued_run(store, **config):
    return store.create_run(RunConfig(**config).to_dict())


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
    monkeypatch.setattr(capacity, "gpu_ids", lambda: [])
    store = RunStore(db)
    warm_pool.keep_warm(store)
    return store, wait_for(lambda: [w for w in store.workers() if w["ready_at"]], 120,
                           "warm")[0]


def niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])  # field 19 of proc(5)


def test_a_warm_worker_takes_queued_runs_and_a_dead_one_is_replaced(
        isolated_store, monkeypatch):
    import signal
    store, warm = one_ready_warm_worker(isolated_store, monkeypatch)
    tiny = RunConfig(problem="least_squares", n_samples=300, dim=8, epochs=3, method="sgd")
    first = queue.submit(store, tiny)
    wait_for(lambda: store.get_run(first)["status"] == "completed", 60, "the first run")
    assert len(store.records(first)) == 3
    assert store.get_run(first)["info"]["background"]
    slow = queue.submit(store, tiny.replace(epochs=5, pace_s=HELD))  # held after epoch 1
    wait_for(lambda: store.records(slow), 60, "the slow run's first epoch")
    assert store.get_run(slow)["worker_pid"] == warm["pid"]  # the same warm process
    assert niceness(warm["pid"]) == max(os.nice(0), processes.WORKER_NICENESS)  # below the server
    os.kill(warm["pid"], signal.SIGKILL)
    wait_for(lambda: not processes.pid_alive(warm["pid"]), 10, "the kill")
    queue.dispatch(store)  # reaps the run, forgets the worker, starts a new one
    assert store.get_run(slow)["status"] == "interrupted" and len(store.records(slow)) == 1
    new = wait_for(lambda: [w for w in store.workers() if w["pid"]], 10, "a new worker")[0]
    assert new["pid"] != warm["pid"]
    os.kill(new["pid"], signal.SIGKILL)


def test_a_warm_worker_claims_a_whole_race_at_once_and_it_holds_one_slot(isolated_store):
    import threading
    store = RunStore(isolated_store)
    race = queue_race(store)
    single = queued_run(store)
    claims = []

    def claimer(pid):
        claims.append(store.claim_many(lambda running, queued:
                                       warm_pool.warm_claim(running, queued, [], 2), pid=pid))
    threads = [threading.Thread(target=claimer, args=(pid,)) for pid in (101, 102, 103, 104)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claims) == [[], [], race, [single]]  # never one run twice, never over 2
    running = store.list_runs(status="running")
    assert capacity.background_busy(running) == 2
    assert len({run["worker_pid"] for run in running if run["id"] in race}) == 1


def test_only_a_race_a_warm_worker_can_take_whole_is_claimed_whole(isolated_store):
    store = RunStore(isolated_store)
    pair = queue_race(store, [RACE, RACE.replace(nproc=2)])
    sweep = queue_race(store, [RACE, RACE], group="sweep lr")

    def claim(limit):
        return store.claim_many(lambda running, queued:
                                warm_pool.warm_claim(running, queued, [], limit))
    assert claim(9) == [pair[0]]  # its partner needs two processes: a worker of its own
    assert claim(9) == []  # the oldest run is now the one a warm worker cannot take
    store.cancel_queued(pair[1])
    assert claim(9) == [sweep[0]]  # not a race: one run at a time
    assert claim(2) == []  # two slots held


def test_a_race_interleaves_where_a_warm_pool_can_take_all_its_runs(monkeypatch):
    monkeypatch.setattr(capacity, "gpu_ids", lambda: [])
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "1")
    assert warm_pool.race_interleaves(RACE_RUNS)
    assert not warm_pool.race_interleaves([*RACE_RUNS, RACE.replace(nproc=2)])
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "0")
    assert not warm_pool.race_interleaves(RACE_RUNS)
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "1")
    monkeypatch.setattr(capacity, "gpu_ids", lambda: ["0"])  # GPU machine: no warm pool
    assert not warm_pool.race_interleaves(RACE_RUNS)


def test_a_warm_worker_interleaves_a_race_and_its_kill_interrupts_every_run(
        isolated_store, monkeypatch):
    import signal
    store, warm = one_ready_warm_worker(isolated_store, monkeypatch)
    held = [config.replace(epochs=5, pace_s=HELD) for config in RACE_RUNS]
    run_ids = queue.submit_race(store, held)  # each waits after its first epoch until killed
    wait_for(lambda: all(store.records(run_id) for run_id in run_ids), 60, "first epochs")
    running = store.list_runs(status="running")
    assert {run["worker_pid"] for run in running} == {warm["pid"]}
    assert capacity.background_busy(running) == 1
    os.kill(warm["pid"], signal.SIGKILL)
    wait_for(lambda: not processes.pid_alive(warm["pid"]), 10, "the kill")
    queue.dispatch(store)  # reaps the runs, forgets the worker, starts a new one
    for run_id in run_ids:
        assert store.get_run(run_id)["status"] == "interrupted"
        assert len(store.records(run_id)) == 1
    new = wait_for(lambda: [w for w in store.workers() if w["pid"]], 10, "a new worker")[0]
    os.kill(new["pid"], signal.SIGKILL)
