"""dashboard.first_point: a Start click's update waits for the new runs' first points."""

import threading
import time

from dashboard import first_point
from divebatch.config import RunConfig
from divebatch.runs.store import RunStore

TINY = RunConfig(problem="least_squares", n_samples=64, dim=4, epochs=2).to_dict()


def waited(store, run_ids):
    started = time.monotonic()
    return first_point.await_first_points(store, run_ids), time.monotonic() - started


def test_runs_with_a_point_or_ended_need_no_wait(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    measured, epoch, ended = (store.create_run(TINY) for _ in range(3))
    store.mark_running(measured, 1)
    store.update_info(measured, initial={"epoch": 0})
    store.mark_running(epoch, 1)
    store.append_record(epoch, {"epoch": 1})
    store.mark_finished(ended, "failed", "boom")
    ok, seconds = waited(store, [measured, epoch, ended, 999])  # 999: deleted meanwhile
    assert ok and seconds < first_point.CLAIM_WAIT_S


def test_waits_for_a_started_trainer_until_its_start_is_measured(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run(TINY)
    store.mark_running(run_id, 1)
    store.update_info(run_id, n_train=48)  # Trainer.info(): the trainer is built
    timer = threading.Timer(0.4, lambda: store.update_info(run_id, initial={"epoch": 0}))
    timer.start()
    ok, seconds = waited(store, [run_id])
    timer.join()
    assert ok and 0.4 <= seconds < first_point.HOLD_S


def test_gives_up_on_a_run_without_a_trainer_and_at_the_hold_limit(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    queued, starting, started = (store.create_run(TINY) for _ in range(3))
    store.mark_running(starting, 1)  # a worker of its own, still importing torch
    for run_ids in ([queued], [starting]):
        ok, seconds = waited(store, run_ids)
        assert not ok and first_point.CLAIM_WAIT_S <= seconds < first_point.HOLD_S
    store.mark_running(started, 1)
    store.update_info(started, n_train=48)
    ok, seconds = waited(store, [started])
    assert not ok and first_point.HOLD_S <= seconds < first_point.HOLD_S + 0.5
