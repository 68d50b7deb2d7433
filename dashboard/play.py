"""Classroom pace and play / pause / step for runs, through the store's control rows.

`pace_picker` chooses the pace of new runs (the lab form); `play_controls` pauses, resumes,
steps one epoch and changes the pace of a running run (the live panel). Waiting only happens
between epochs and never counts as training time, so a paced run's results equal a real-time
run's.
"""

from __future__ import annotations

import time

import streamlit as st

from divebatch.runs import control_requests
from divebatch.runs.store import RunStore

from . import pacing, roles
from .instructor import instructor_mode
from .store import open_store

CLASSROOM_S = 60.0  # a classroom-paced run lasts about this long in all
SLOW_EPOCH_S = 3.0
MESSAGE_SHOWN_S = 8.0  # how long "Pause sent to run #3 ..." stays under the buttons
START_PACES = {"real": "Real time", "classroom": "Classroom pace (about 1 minute)",
               "step": "Step by step (pauses after each epoch)"}
RUN_PACES = {"real": "Real time", "classroom": "Classroom (about 1 minute in all)",
             "slow": f"Slow ({SLOW_EPOCH_S:g} s per epoch)"}


def pace_seconds(choice: str, epochs: int) -> float:
    """Seconds each epoch lasts at least under pace `choice` (0: as fast as it trains)."""
    if choice == "classroom":
        return round(CLASSROOM_S / max(epochs, 1), 2)
    return SLOW_EPOCH_S if choice == "slow" else 0.0


def pace_picker(prefix: str) -> str:
    """The pace of the runs Start / Race begins (state "<prefix>_start_pace"; the page's
    address holds it as `pace=`)."""
    refused = st.session_state.pop(f"{prefix}_pace_refused", None)
    if refused:
        st.error(refused)
    st.session_state.setdefault(f"{prefix}_start_pace", "real")
    return st.segmented_control(
        "Pace", list(START_PACES), format_func=START_PACES.get, key=f"{prefix}_start_pace",
        persist_state="session",
        help="Classroom pace spreads a short run over about a minute; step by step waits after "
             "each epoch for Step or Resume. Waiting is never counted as training time and "
             "changes no result.") or "real"


def pace_from_link(prefix: str, query: dict) -> None:
    """The pace a link's `pace=` names (real, classroom, step), into the picker's state;
    another value is refused with an error by the picker."""
    pace = query.get("pace")
    if pace in START_PACES:
        st.session_state[f"{prefix}_start_pace"] = pace
    elif pace is not None:
        st.session_state[f"{prefix}_pace_refused"] = (
            f"Pace in this link should be one of {', '.join(START_PACES)}, but got {pace!r}: "
            f"new runs go at real time.")


def pace_in_link(prefix: str) -> dict[str, str]:
    """{"pace": ...} for the address bar, or {} at real time (the default)."""
    pace = st.session_state.get(f"{prefix}_start_pace") or "real"
    return {} if pace == "real" else {"pace": pace}


def start_paced(store: RunStore, run_ids: list[int], choice: str) -> None:
    """Step-by-step runs pause after their first epoch (the rest is in their config)."""
    if choice == "step":
        for run_id in run_ids:
            control_requests.request_play(store, run_id, "pause")


def play_controls(prefix: str, run: dict) -> None:
    """Pause, Resume, Step one epoch and the pace of running run `run`, in a fragment that
    follows the run's paused state on every refresh while it runs (the state shown is at
    most one refresh old; every click reruns it at once)."""
    if run["status"] != "running":
        return
    st.fragment(run_every=pacing.refresh_interval())(_play_row)(prefix, run)


def _play_row(prefix: str, run: dict) -> None:
    store, run_id = open_store(), run["id"]
    progress = store.get_progress(run_id) or {}
    paused = bool(progress.get("paused"))
    if instructor_mode():  # larger type: the pace and the state on a row of their own
        cols = [*st.columns(3), *st.columns(2, vertical_alignment="bottom")]
    else:  # at 1280 px the buttons and the pace's longest choice uncut, the state below
        cols = [*st.columns([3, 3, 3, 7], vertical_alignment="bottom"), st.container()]
    cols[0].button("Pause", key=f"{prefix}_play_pause", width="stretch", disabled=paused,
                   on_click=_play, args=(prefix, run_id, "pause"), icon=":material/pause:",
                   help="Pauses at the end of the epoch under way.")
    cols[1].button("Resume", key=f"{prefix}_play_resume", width="stretch", disabled=not paused,
                   on_click=_play, args=(prefix, run_id, "resume"),
                   icon=":material/play_arrow:", type="primary" if paused else "secondary")
    cols[2].button("Step", key=f"{prefix}_play_step", width="stretch",
                   on_click=_play, args=(prefix, run_id, "step"), icon=":material/skip_next:",
                   help="One more epoch, then paused again (while running: pause at the end "
                        "of this epoch).")
    epochs = int(run["config"].get("epochs") or 1)
    cols[3].selectbox("Pace while it runs", list(RUN_PACES), format_func=RUN_PACES.get,
                      key=f"{prefix}_play_pace_{run_id}", index=_pace_index(run, epochs),
                      on_change=_pace, args=(prefix, run_id, epochs),
                      help="How fast its epochs go when it is not paused. A run started "
                           "step by step runs at real time between its pauses unless you "
                           "pick a pace here; Pause and Step stop it after an epoch.")
    state = (f"paused after epoch {int(progress.get('epoch') or 0)}" if paused
             else "running")
    cols[4].caption(f"Run #{run_id} is {state}. Pause and pace wait between epochs; the "
                    f"waiting is not training time.")
    sent_at, message = st.session_state.get(f"{prefix}_play_message", (0.0, ""))
    if time.monotonic() - sent_at < MESSAGE_SHOWN_S:
        st.caption(message)


def _pace_index(run: dict, epochs: int) -> int:
    pace_s = float(run["config"].get("pace_s") or 0.0)
    matches = [c for c in RUN_PACES if pace_seconds(c, epochs) == pace_s]
    return list(RUN_PACES).index(matches[0]) if matches else 0


def _play(prefix: str, run_id: int, kind: str) -> None:
    if not roles.require_instructor(kind):
        return
    control_requests.request_play(open_store(), run_id, kind)
    st.session_state[f"{prefix}_play_message"] = (time.monotonic(), {
        "pause": f"Pause sent to run #{run_id}: it pauses when this epoch ends.",
        "resume": f"Resume sent to run #{run_id}.",
        "step": f"Step sent to run #{run_id}: one epoch, then it pauses."}[kind])


def _pace(prefix: str, run_id: int, epochs: int) -> None:
    if not roles.require_instructor("pace"):
        return
    choice = st.session_state[f"{prefix}_play_pace_{run_id}"]
    seconds = pace_seconds(choice, epochs)
    control_requests.request_pace(open_store(), run_id, seconds)
    st.session_state[f"{prefix}_play_message"] = (time.monotonic(), (
        f"Pace sent to run #{run_id}: " + (f"each epoch lasts at least {seconds:g} s."
                                           if seconds else "real time.")))
