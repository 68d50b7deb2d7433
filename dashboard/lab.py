"""The lower half of both lab pages: presets, the config form, Start / Race, and the live panel."""

from __future__ import annotations

import streamlit as st

from dashboard import follow, form, live, race_export, roles
from dashboard.store import open_store
from dashboard.instructor import (LIVE_ANCHOR, instructor_mode, scroll_to_charts,
                                  watch_from_open)
from dashboard.play import pace_picker
from divebatch.runs.store import ACTIVE_STATUSES

RUNS_TO_PICK_FROM = 60  # the newest runs of the lab's problems offered for the charts


def form_and_live_panel(prefix: str, problems: tuple[str, ...],
                        hidden: tuple[str, ...]) -> None:
    """Everything below a lab page's header, for runs of `problems`; `hidden` fields do not
    apply to them and stay off the form."""
    if roles.can_change():
        if instructor_mode():  # the buttons first: in view at 1280x720 before a run
            buttons = st.container()
            config = _folding_setup(prefix, problems, hidden)
            with buttons:
                form.start_buttons(prefix, config, form.runnable_problem(config)
                                   if config else None, with_pace=False)
        else:  # the preset, then Start / Race (in view at 1440x900), then the details
            form.preset_picker(prefix, problems)
            buttons = st.container()
            config = form.config_form(prefix, problems, hidden=hidden)
            with buttons:
                form.start_buttons(prefix, config,
                                   form.runnable_problem(config) if config else None)
    else:
        roles.read_only_banner()
    if not instructor_mode():
        form.show_the_code(prefix)

    st.header("Live", anchor=LIVE_ANCHOR)
    scroll_to_charts(prefix, LIVE_ANCHOR)
    store = open_store()
    newest = store.list_runs(limit=RUNS_TO_PICK_FROM)
    linked = [run for run in map(store.get_run, st.session_state.get("linked_runs", []))
              if run and run["id"] not in {r["id"] for r in newest}]
    candidates = [run for run in newest + linked
                  if run["config"].get("problem") in problems]
    latest = follow.last_runs(candidates)
    if not roles.can_change():  # the class follows what the instructor starts
        follow.follow_newest(prefix, latest)
        follow.look_for_newer(prefix, lambda: _newest_of(problems))
    first_view = form.key(prefix, "shown") not in st.session_state
    picked = live.run_picker(prefix, candidates, latest=latest)
    reopened = form.key(prefix, "reopened")  # the session opened on its last, finished race
    active = {run["id"] for run in candidates if run["status"] in ACTIVE_STATUSES}
    if first_view:
        st.session_state[reopened] = bool(picked) and picked == latest
        if roles.can_change() and active & set(picked):
            watch_from_open(prefix)  # a reload during a race still lands on its verdict
    if st.session_state.get(reopened) and picked == latest and not active & set(latest):
        what = f"race ({len(latest)} runs)" if len(latest) > 1 else "run"
        st.info(f"Your last {what} here, finished: start a new one above, or pick other "
                f"stored runs to overlay." if roles.can_change() else
                f"The last {what} here, finished: this page shows the next one the "
                f"instructor starts.", icon=":material/history:")
    else:  # a race of this session's, finished, needs no note (it would push the charts down)
        st.session_state[reopened] = False
    live.live_panel(prefix, picked)
    if picked:
        race_export.download_panel(prefix, picked)


def _newest_of(problems: tuple[str, ...]) -> list[dict]:
    return [run for run in open_store().list_runs(limit=RUNS_TO_PICK_FROM)
            if run["config"].get("problem") in problems]


def _folding_setup(prefix: str, problems: tuple[str, ...], hidden: tuple[str, ...]):
    """Instructor mode: the preset, the three knobs and the pace in an expander that folds
    once runs are on the charts (a new label makes Streamlit draw it folded); its label
    names what Start and Race run. A preset picked inside it (a new label too) leaves it
    open: ``form.load_preset`` notes that it was open, Start forgets it."""
    started = bool(st.session_state.get(form.key(prefix, "shown")))
    label = f"Setup: {form.describe_setup(prefix)} (open to change)" if started else "Setup"
    opened = bool(st.session_state.get(form.key(prefix, "setup_open")))
    with st.expander(label, expanded=not started or opened):
        form.preset_picker(prefix, problems)
        config = form.config_form(prefix, problems, hidden=hidden)
        pace_picker(prefix)
        return config
