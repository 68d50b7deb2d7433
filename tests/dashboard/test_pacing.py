"""The live panel's refresh pacing: the load predicted for every viewer at a step, and the
steps a page takes from it (trajectories written out by hand)."""

import pytest

from dashboard import pacing


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(pacing.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(pacing, "_updates", pacing.deque())
    return now


def test_updates_served_counts_the_window_and_its_viewers(clock):
    assert pacing.updates_served() == (0.0, 0)
    for second in range(5):  # viewer a every second, b twice in the window
        clock[0] = 1000.0 + second
        pacing.note_update("a")
    pacing.note_update("b")
    clock[0] = 1005.0
    pacing.note_update("b")
    assert pacing.updates_served() == (7 / 5, 2)  # 7 updates over the 5 s window
    clock[0] = 1009.5  # only the updates at 1005 and later remain
    assert pacing.updates_served() == (1 / 4.5, 1)


def test_updates_served_over_a_short_history_count_at_least_a_second(clock):
    pacing.note_update("a")
    pacing.note_update("b")
    assert pacing.updates_served() == (2.0, 2)


def test_predicted_load_scales_the_load_to_every_viewer_at_the_step(monkeypatch, clock):
    monkeypatch.setattr(pacing, "updates_served", lambda: (1.4, 2))
    assert pacing.predicted_load(1.0, 0.3) == pytest.approx(0.3 * 2 / 1.4)
    assert pacing.predicted_load(2.0, 0.3) == pytest.approx(0.3 * 1 / 1.4)
    monkeypatch.setattr(pacing, "updates_served", lambda: (0.0, 0))
    assert pacing.predicted_load(1.0, 0.3) == 0.3  # no update yet: the load as it is


def test_busy_means_over_the_threshold_for_busy_for_s(monkeypatch, clock):
    monkeypatch.setattr(pacing, "_busy_since", None)
    assert not pacing.is_busy(0.9)  # over since now
    clock[0] += pacing.BUSY_FOR_S - 0.1
    assert not pacing.is_busy(0.9)
    clock[0] += 0.1
    assert pacing.is_busy(0.9)
    assert not pacing.is_busy(0.5)  # calm again: the count starts over
    assert not pacing.is_busy(0.9)
    clock[0] += pacing.BUSY_FOR_S
    assert pacing.is_busy(0.9)


@pytest.mark.parametrize("busy, current, then", [
    (False, None, 1.0), (True, None, 2.0),
    (False, 1.0, 1.0), (True, 1.0, 2.0), (True, 2.0, 4.0), (True, 4.0, 4.0),
])
def test_a_page_slows_a_step_while_busy_and_a_new_one_starts_fast_unless_busy(
        monkeypatch, busy, current, then):
    monkeypatch.setattr(pacing, "is_busy", lambda load: busy)
    monkeypatch.setattr(pacing, "predicted_load", lambda every, load: 1.0)  # never calm
    assert pacing.refresh_interval(current) == then


@pytest.mark.parametrize("busy, cost, current, then", [
    # cost: the load predicted at 1 s (it halves with each step: 2 s -> cost / 2, ...);
    # calm (< 0.6) at the faster step speeds a page up a step, else it holds its step
    (False, 0.5, 2.0, 1.0), (False, 0.6, 2.0, 2.0), (False, 0.9, 2.0, 2.0),
    (False, 1.1, 4.0, 2.0), (False, 1.3, 4.0, 4.0), (False, 0.1, 1.0, 1.0),
    (True, 0.1, 2.0, 4.0),  # busy comes first
])
def test_a_page_speeds_up_a_step_when_every_viewer_at_it_would_be_calm(
        monkeypatch, busy, cost, current, then):
    monkeypatch.setattr(pacing, "is_busy", lambda load: busy)
    monkeypatch.setattr(pacing, "predicted_load", lambda every, load: cost / every)
    assert pacing.refresh_interval(current) == then


def test_server_load_is_cpu_seconds_per_second_over_the_window(monkeypatch, clock):
    cpu = [10.0]
    monkeypatch.setattr(pacing.time, "process_time", lambda: cpu[0])
    monkeypatch.setattr(pacing, "_cpu_samples", pacing.deque())
    assert pacing.server_load() == 0.0  # under a second of history
    clock[0] += 2.0
    cpu[0] += 1.0
    assert pacing.server_load() == 0.5
    clock[0] += 8.0  # the first sample falls out of the window: 2 CPU-s over the last 8 s
    cpu[0] += 2.0
    assert pacing.server_load() == 0.25
