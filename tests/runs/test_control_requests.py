"""Pause, step, resume and pace through the store's control rows."""

import pytest

from divebatch.config import RunConfig
from divebatch.runs import control_requests, worker
from divebatch.runs.store import RunStore


def test_pause_step_and_resume_through_the_store(isolated_store):
    import threading
    import time
    store = RunStore(isolated_store)
    run_id = store.create_run(RunConfig(problem="least_squares", n_samples=300, dim=8,
                                        epochs=4, method="sgd").to_dict(), status="running")
    control_requests.request_play(store, run_id, "pause")
    steps = []

    def drive():  # the dashboard: step once when paused, then resume when paused again
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(steps) < 2:
            done = len(store.records(run_id))
            if done not in steps and control_requests.is_paused(store, run_id):
                # keyed by the record count, not by seeing the run unpause: a stepped
                # epoch of this tiny problem can end within one poll of the driver
                steps.append(done)
                control_requests.request_play(store, run_id,
                                              "step" if len(steps) == 1 else "resume")
            time.sleep(0.02)
        if len(steps) < 2:  # fail, not hang: let the paused run end
            control_requests.request_stop(store, run_id)
            control_requests.request_play(store, run_id, "resume")
    driver = threading.Thread(target=drive)
    driver.start()
    worker.execute_run(store, run_id)
    driver.join()
    assert steps == [1, 2]  # paused after epoch 1, stepped one epoch, paused after 2
    assert store.get_run(run_id)["status"] == "completed" and len(store.records(run_id)) == 4
    kinds = [event["kind"] for event in store.events(run_id)]
    assert kinds.count("paused") == 2 and kinds.count("resumed") == 2


def test_play_and_pace_requests_are_checked(isolated_store):
    store = RunStore(isolated_store)
    run_id = store.create_run(RunConfig().to_dict(), status="running")
    with pytest.raises(ValueError, match="kind should be one of pause, resume, step"):
        control_requests.request_play(store, run_id, "rewind")
    with pytest.raises(ValueError, match="pace_s should be"):
        control_requests.request_pace(store, run_id, -1.0)
    control_requests.request_pace(store, run_id, 2.5)
    assert [(c["kind"], c["payload"]) for c in store.take_controls(run_id)] == [
        ("pace", {"pace_s": 2.5})]
