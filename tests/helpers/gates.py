"""Runs that wait for the test, so that no outcome depends on how fast a run trains.

A run whose config has `pace_s=HELD` waits after each epoch but its last until the test
releases it (a pace change to real time through the store's control rows, the way the
dashboard sends one). A stop, kill or pause then lands on a run known to be unfinished.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from divebatch.runs import control_requests, queue

HELD = 3600.0  # pace_s: the longest RunConfig allows; every test releases its runs long before
POLL_S = 0.02


def wait_for(condition, what, timeout: float = 120.0, poll_s: float = POLL_S):
    """`condition()`'s first true value; AssertionError after `timeout` s (a failure, not a
    hang: the event the test waits for did not happen). `what` is text, or a function giving
    it when the wait fails."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(poll_s)
    return value


def click_until(button, done, what, tries: int = 3, timeout: float = 30.0):
    """Click a page's `button` until `done()` (read from the store): Streamlit drops a
    button's trigger when a rerun it requested is interrupted by another (the typed value's,
    or a fragment's refresh), so on a loaded machine a click can be lost; a click that lands
    is never repeated, since `done` waits `timeout` s for it first."""
    for _ in range(tries):
        button.click()
        try:
            return wait_for(done, what, timeout=timeout, poll_s=0.2)
        except AssertionError:
            continue
    raise AssertionError(f"timed out waiting for {what} after {tries} clicks")


def release(store, run_id: int) -> None:
    """Let a held run go on at real time, to its end."""
    control_requests.request_pace(store, run_id, 0.0)


@contextmanager
def releasing_every_run(store):
    """Release every run of `store` once, as it starts running, until the block ends."""
    released: set[int] = set()
    done = threading.Event()

    def release_as_they_start():
        while not done.is_set():
            for run in store.list_runs(status="running"):
                if run["id"] not in released:
                    release(store, run["id"])
                    released.add(run["id"])
            done.wait(POLL_S)
    releaser = threading.Thread(target=release_as_they_start, daemon=True)
    releaser.start()
    try:
        yield released
    finally:
        done.set()
        releaser.join()


def stop_runs_and_wait(store, timeout: float = 30.0) -> None:
    """Stop every queued or running run in `store` and wait for their workers to exit."""
    for run in store.list_runs(status=("queued", "running")):
        control_requests.request_stop(store, run["id"])
    deadline = time.monotonic() + timeout
    while store.list_runs(status="running") and time.monotonic() < deadline:
        queue.reap(store)
        time.sleep(0.1)
