"""How a viewer's page follows what the instructor starts (the read-only twin, dashboard.roles):
every FOLLOW_EVERY_S it looks for a run or race newer than the newest it has seen, and puts it
on the charts by its page's rule.

- A lab page follows always (`follow_newest`): runs a viewer picks stay until the next race.
- The Runs page follows only a selection it made itself (`follow_unless_picked`): a link's
  runs, the runs training when the page opened, or a race it followed. Runs a viewer picked
  or unticked there are a choice of theirs (to compare, to export) and stay.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from divebatch.runs.warm_pool import RACE_GROUP_PREFIX

FOLLOW_EVERY_S = 5.0  # how often a viewer's page looks for a run or race newer than its own
RUNS_LOOKED_AT = 60   # the newest runs a look reads (a race is a few of them)


def last_runs(candidates: list[dict]) -> list[int]:
    """The most recent run (`candidates` newest first), with the rest of its race: what a
    viewer follows once the instructor has started it, and what a lab shows on returning to
    it once it has finished."""
    if not candidates:
        return []
    group = candidates[0]["group"]
    if not group.startswith(RACE_GROUP_PREFIX):  # a lone run, or one of a sweep
        return [candidates[0]["id"]]
    return sorted(run["id"] for run in candidates if run["group"] == group)


def follow_newest(prefix: str, latest: list[int]) -> None:
    """A lab page puts its newest run or race (`latest`) on its charts once, when it appears
    (the picker stays the viewer's until the next one); not while a guided tour sets the
    charts (dashboard/tour.py follows that)."""
    seen = f"{prefix}_followed_latest"
    if st.session_state.get(seen) == latest:
        return
    known = seen in st.session_state
    st.session_state[seen] = latest
    if known and latest and not st.session_state.get(f"{prefix}_tour_followed"):
        st.session_state[f"{prefix}_shown"] = list(latest)
        st.session_state.pop(f"{prefix}_reopened", None)


def follow_unless_picked(prefix: str, runs: list[dict]) -> bool:
    """The Runs page puts a race newer than the newest it has seen (of `runs`, the runs it
    lists, newest first) on its charts while its selection is the one it made itself (the
    picker's first view, live.init_shown, comes before this); whether it still follows.
    Runs no longer listed (deleted, filtered out) leave both, as they leave the picker."""
    listed, latest = {run["id"] for run in runs}, last_runs(runs)
    shown_key, made_key, seen = (f"{prefix}_shown", f"{prefix}_shown_by_page",
                                 f"{prefix}_followed_latest")
    shown = [i for i in st.session_state[shown_key] if i in listed]
    made = [i for i in st.session_state.setdefault(made_key, shown) if i in listed]
    before = st.session_state.get(seen)
    st.session_state[seen] = latest  # a deleted newest run makes it older: nothing to follow
    following = shown == made
    if following and before is not None and latest and max(latest) > max(before, default=0):
        shown = made = list(latest)
    st.session_state[shown_key], st.session_state[made_key] = shown, made
    return following


def look_for_newer(prefix: str, newest: Callable[[], list[dict]]) -> None:
    """Every FOLLOW_EVERY_S, rerun the page when `newest()` (runs, newest first) begins with
    a run or race other than the one it has seen (its charts, sidebar and notes then show
    it)."""
    st.fragment(run_every=FOLLOW_EVERY_S)(_look)(prefix, newest)


def _look(prefix: str, newest: Callable[[], list[dict]]) -> None:
    if last_runs(newest()) != st.session_state.get(f"{prefix}_followed_latest"):
        st.rerun(scope="app")
