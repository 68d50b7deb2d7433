"""The live panel's refresh interval: a fast poll until a just-started run's first point."""

import time

import pytest

from dashboard import live, live_cache, pacing
from divebatch.report.series import Columns


def snap(*runs):
    return live_cache.Snapshot(read_at=0.0, runs=tuple(run for run, _ in runs),
                           records={run["id"]: records for run, records in runs},
                           columns={run["id"]: Columns(records) for run, records in runs},
                           events={}, progress={}, version=())


def run(run_id, status="running", started_ago=1.0, info=None):
    now = time.time()
    return {"id": run_id, "status": status, "created_at": now - started_ago - 0.5,
            "started_at": None if status == "queued" else now - started_ago,
            "info": info or {}}


@pytest.fixture(autouse=True)
def calm_server(monkeypatch):
    monkeypatch.setattr(pacing, "refresh_interval", lambda current=None: 1.0)


def test_no_active_run_means_no_refresh():
    assert live._interval(snap((run(1, "completed"), ({"epoch": 1},)))) is None


def test_a_just_started_run_without_an_epoch_is_polled_fast():
    assert live._interval(snap((run(1), ()))) == live.FIRST_POINT_POLL_S
    assert live._interval(snap((run(1, "queued"), ()))) == live.FIRST_POINT_POLL_S


def test_the_fast_poll_ends_at_the_first_point_or_after_the_wait():
    assert live._interval(snap((run(1), ({"epoch": 1},)))) == 1.0
    assert live._interval(snap((run(1, info={"initial": {"epoch": 0}}), ()))) == 1.0
    late = run(1, started_ago=live.FIRST_POINT_WAIT_S + 1)
    assert live._interval(snap((late, ()))) == 1.0


def test_one_new_run_among_running_ones_is_enough():
    older = (run(1, started_ago=100), ({"epoch": 1},))
    assert live._interval(snap(older, (run(2), ()))) == live.FIRST_POINT_POLL_S


def test_a_queued_run_starting_waits_for_its_first_point_before_a_rerun():
    fast, queued, running = live.FIRST_POINT_POLL_S, {1: "queued"}, {1: "running"}
    assert not live._statuses_changed(queued, running, fast)
    assert live._statuses_changed(queued, running, 1.0)
    assert live._statuses_changed(running, {1: "completed"}, fast)
    assert live._statuses_changed(running, {}, fast)


def test_an_interval_change_waits_out_the_hold_since_the_last_one(monkeypatch):
    state, clock = {}, [100.0]
    monkeypatch.setattr(live.st, "session_state", state)
    monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pacing, "refresh_interval", lambda current=None: 2.0)
    growing = snap((run(1, started_ago=100), ({"epoch": 1},)))
    assert not live._interval_changed("p", 2.0, growing)  # wanted as it is
    assert live._interval_changed("p", 1.0, growing)
    clock[0] += live.INTERVAL_HOLD_S - 1
    assert not live._interval_changed("p", 1.0, growing)  # the rerun kept 1 s: still held
    clock[0] += 1
    assert live._interval_changed("p", 1.0, growing)
