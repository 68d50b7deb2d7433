"""How often each viewer's live panel refreshes: every second while the server can afford it
for every viewer, a slower step while it cannot.

A page slows by a step once this process's CPU use over the last LOAD_WINDOW_S has stayed
over BUSY_LOAD of a core for BUSY_FOR_S (a burst, such as many pages drawn at once, passes
without slowing everyone down). It speeds up by a step only when the load predicted for
every current viewer at the faster step is under CALM_LOAD: the load now, scaled by the
live-panel updates that would be served (from the updates served over the same window).
The prediction does not depend on which viewers refresh at which step, so viewers that
slowed down in a burst (a class opening the link at once) speed up together once it has
passed, and viewers that would overload the server together stay slow together instead of
chasing each other's changes (each change is a full rerun of a page, which costs more than
an update).
"""

from __future__ import annotations

import threading
import time
from collections import deque

REFRESH_STEPS_S = (1.0, 2.0, 4.0)  # a viewer's update every ... s
BUSY_LOAD, CALM_LOAD = 0.8, 0.6    # this process's CPU-s per second: slow down, speed up
LOAD_WINDOW_S = 5.0                # at least the slowest step: every viewer shows in it
BUSY_FOR_S = 5.0                   # busy this long before pages slow down

_lock = threading.Lock()
_cpu_samples: deque = deque()  # (monotonic, process CPU seconds)
_updates: deque = deque()      # (monotonic, viewer) of each live-panel update served
_busy_since: float | None = None  # monotonic time the load went over BUSY_LOAD, if it is


def refresh_interval(current: float | None = None) -> float:
    """Seconds between a viewer's updates for a page refreshing every `current` s now (None:
    a page being drawn anew, which starts at the first step, or the second while busy)."""
    load = server_load()
    busy = is_busy(load)
    if current not in REFRESH_STEPS_S:
        return REFRESH_STEPS_S[busy]
    step = REFRESH_STEPS_S.index(current)
    if busy and step + 1 < len(REFRESH_STEPS_S):
        return REFRESH_STEPS_S[step + 1]
    if step > 0 and predicted_load(REFRESH_STEPS_S[step - 1], load) < CALM_LOAD:
        return REFRESH_STEPS_S[step - 1]
    return current


def is_busy(load: float) -> bool:
    """Whether this process's load, `load` now, has been over BUSY_LOAD for BUSY_FOR_S or
    more."""
    global _busy_since
    now = time.monotonic()
    with _lock:
        if load <= BUSY_LOAD:
            _busy_since = None
        elif _busy_since is None:
            _busy_since = now
        return _busy_since is not None and now - _busy_since >= BUSY_FOR_S


def predicted_load(every: float, load: float) -> float:
    """This process's CPU-s per second if each viewer of the last LOAD_WINDOW_S refreshed
    every `every` s: the load now, `load`, scaled by the updates that would be served."""
    rate, viewers = updates_served()
    return load * viewers / every / rate if rate else load


def note_update(viewer: str) -> None:
    """Count a live-panel update served to `viewer` (any id unique to one page session)."""
    now = time.monotonic()
    with _lock:
        _updates.append((now, viewer))
        while now - _updates[0][0] > LOAD_WINDOW_S:
            _updates.popleft()


def updates_served() -> tuple[float, int]:
    """Live-panel updates served per second over the last LOAD_WINDOW_S (or since the first
    one, if sooner, but at least 1 s), and how many viewers they went to."""
    now = time.monotonic()
    with _lock:
        recent = [(at, viewer) for at, viewer in _updates if now - at <= LOAD_WINDOW_S]
    if not recent:
        return 0.0, 0
    span = max(1.0, min(LOAD_WINDOW_S, now - recent[0][0]))
    return len(recent) / span, len({viewer for _, viewer in recent})


def server_load() -> float:
    """This process's CPU seconds per second over about the last LOAD_WINDOW_S."""
    now, cpu = time.monotonic(), time.process_time()
    with _lock:
        _cpu_samples.append((now, cpu))
        while len(_cpu_samples) > 2 and now - _cpu_samples[1][0] > LOAD_WINDOW_S:
            _cpu_samples.popleft()
        first_time, first_cpu = _cpu_samples[0]
    return 0.0 if now - first_time < 1.0 else (cpu - first_cpu) / (now - first_time)
