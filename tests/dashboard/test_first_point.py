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


def test_waits_for_a_claimed_run_until_its_start_is_measured(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run(TINY)
    store.mark_running(run_id, 1)
    timer = threading.Timer(0.4, lambda: store.update_info(run_id, initial={"epoch": 0}))
    timer.start()
    ok, seconds = waited(store, [run_id])
    timer.join()
    assert ok and 0.4 <= seconds < first_point.HOLD_S


def test_gives_up_on_an_unclaimed_run_and_at_the_hold_limit(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    queued, running = store.create_run(TINY), store.create_run(TINY)
    ok, seconds = waited(store, [queued])
    assert not ok and first_point.CLAIM_WAIT_S <= seconds < first_point.HOLD_S
    store.mark_running(running, 1)
    ok, seconds = waited(store, [running])
    assert not ok and first_point.HOLD_S <= seconds < first_point.HOLD_S + 0.5
