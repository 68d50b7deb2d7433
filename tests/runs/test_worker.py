"""The worker body: a group of runs in one process, an epoch each in turn, each trained and
recorded as it would be alone; an error or a pause in one run leaves the others alone."""

from divebatch.runs import control_requests, worker
from divebatch.runs.store import RunStore
from tests.helpers.gates import wait_for
from tests.helpers.records import comparable
from tests.helpers.races import TINY_RACE as RACE, TINY_RACE_RUNS as RACE_RUNS, queue_race


def test_a_group_trains_each_run_as_it_would_train_alone(isolated_store):
    from divebatch.training.trainer import train
    store = RunStore(isolated_store)
    run_ids = queue_race(store)
    results = worker.execute_group(store, run_ids)
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
    real_poll = control_requests.StoreControl.poll

    def poll(control):
        if control.run_id == bad and store.records(bad):
            raise RuntimeError("lost the disk")
        return real_poll(control)
    monkeypatch.setattr(control_requests.StoreControl, "poll", poll)
    results = worker.execute_group(store, [*run_ids, broken])
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
    control_requests.request_play(store, paused, "pause")

    def stop_when_the_others_are_done():
        wait_for(lambda: all(store.get_run(i)["status"] == "completed" for i in others)
                 and control_requests.is_paused(store, paused), "the others to complete")
        control_requests.request_stop(store, paused)
    driver = threading.Thread(target=stop_when_the_others_are_done)
    driver.start()
    worker.execute_group(store, run_ids)
    driver.join()
    assert store.get_run(paused)["status"] == "stopped" and len(store.records(paused)) == 1
    assert all(len(store.records(run_id)) == 3 for run_id in others)
