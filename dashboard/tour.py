"""The guided tour of a lab page: a card in the sidebar that walks through a real run of the
tour preset, step by step, with the step's chart highlighted on the page.

The tour's state (its run and the step shown) lives in the store (`RunStore.set_tour`), so
every viewer of the page, the read-only twin's included, shows the instructor's step within
one refresh. Only the instructor's page moves it (Start, Next, Back, Leave) and drives the
run to the next step's moment with the pause / step controls; the rest of the page stays
usable throughout. Which steps a run has reached, and their words, come from
`divebatch.report.tour`.
"""

from __future__ import annotations

import streamlit as st

from divebatch.presets import PRESETS
from divebatch.report import tour
from divebatch.runs import control_requests, queue
from divebatch.runs.store import ACTIVE_STATUSES

from . import pacing, roles
from .store import open_store
from .play import start_paced

IDLE_POLL_S = 5.0  # how often a page with no tour under way looks for one (the class's pages)
HIGHLIGHT = ("<style>.st-key-{prefix}_chart_{chart} {{ outline: 4px solid #f59e0b; "
             "outline-offset: 4px; border-radius: 6px; }}</style>")
# the card's text and buttons smaller than the page's (instructor mode enlarges everything)
COMPACT = ("<style>.st-key-{prefix}_tour p {{ font-size: 0.85rem; line-height: 1.35; }} "
           ".st-key-{prefix}_tour button {{ min-height: 2.2rem; font-size: 0.85rem; }}</style>")
# Bring the step's chart into view once drawn (within 2 minutes), and back whenever the page
# moves it out (a run that ends reruns the page without its controls above the charts), for
# 30 s from then or until the user scrolls.
SCROLL = ("<script>(() => {{ let waited = 0, kept = 0, user = false;"
          " const stop = () => {{ user = true; }};"
          " for (const kind of ['wheel', 'touchmove', 'keydown']) "
          "window.addEventListener(kind, stop, {{once: true}});"
          " const go = () => {{ if (user) return; const chart = document.querySelector("
          "'.st-key-{prefix}_chart_{chart}');"
          " if (!chart) {{ if (waited++ < 1200) setTimeout(go, 100); return; }}"
          " const box = chart.getBoundingClientRect();"
          " if (box.top < 60 || box.bottom > window.innerHeight)"
          " chart.scrollIntoView({{block: 'center'}});"
          " if (kept++ < 300) setTimeout(go, 100); }}; go(); }})();</script>")


def tour_panel(prefix: str) -> None:
    """The tour card in the sidebar; call before the page's run picker, which it sets to the
    toured run when a tour begins."""
    state = open_store().get_tour(prefix)
    _follow(prefix, state)
    every = pacing.refresh_interval() if state else IDLE_POLL_S  # a page rerun follows a start
    with st.sidebar:
        st.fragment(run_every=every)(_card)(prefix)


def _follow(prefix: str, state: dict | None) -> None:
    """Put the toured run on this session's charts once per tour."""
    followed_key = f"{prefix}_tour_followed"
    if state and state["run_id"] != st.session_state.get(followed_key):
        st.session_state[f"{prefix}_shown"] = [state["run_id"]]
        st.session_state[followed_key] = state["run_id"]


def _card(prefix: str) -> None:
    store = open_store()
    state = store.get_tour(prefix)
    run = store.get_run(state["run_id"]) if state else None
    with st.container(border=True, key=f"{prefix}_tour"):
        if run is None:
            _invitation(prefix)
            return
        if run["id"] != st.session_state.get(f"{prefix}_tour_followed"):
            st.rerun(scope="app")  # a tour began elsewhere: put its run on the charts
        finished = run["status"] not in ACTIVE_STATUSES
        steps = tour.reached_steps(run["config"], int(run["info"].get("n_train") or 0),
                                   store.records(run["id"]), store.events(run["id"]), finished)
        index = min(int(state["index"]), len(steps))
        st.html(COMPACT.format(prefix=prefix))
        if roles.can_change():
            _drive(prefix, store, state, run, steps, finished)
            _buttons(prefix, state, steps, index, finished)
        else:
            st.caption("The instructor moves the tour; this page follows it.")
        _show(prefix, steps, index, finished)


def _invitation(prefix: str) -> None:
    st.markdown("**Guided tour**")
    if roles.can_change():
        st.caption(f"Five short steps over a real run of the "
                   f"'{PRESETS[tour.TOUR_PRESET].title}' preset, pausing at each.")
        st.button("Take the guided tour", key=f"{prefix}_tour_start", width="stretch",
                  icon=":material/tour:", on_click=_start, args=(prefix,))
    else:
        st.caption("No guided tour under way.")


def _show(prefix: str, steps: list[tour.Step], index: int, finished: bool) -> None:
    total = tour.steps_in_all(steps, finished)
    if index >= len(steps):
        st.markdown(f"**Guided tour · step {index + 1} of {total}**")
        st.caption("The run trains on to the next step's moment…")
        return
    step = steps[index]
    st.markdown(f"**Guided tour · step {index + 1} of {total}**  \n**{step.title}**")
    st.markdown(step.text)
    st.caption(f"Epoch {step.epoch} of the run; the highlighted chart shows it.")
    st.html(HIGHLIGHT.format(prefix=prefix, chart=step.chart))
    shown_key = f"{prefix}_tour_scrolled"
    if st.session_state.get(shown_key) != (step.key, index):
        st.session_state[shown_key] = (step.key, index)
        st.html(SCROLL.format(prefix=prefix, chart=step.chart), unsafe_allow_javascript=True)


def _drive(prefix, store, state: dict, run: dict, steps: list[tour.Step],
           finished: bool) -> None:
    """Send the run what it needs to reach the step shown (once per paused epoch)."""
    progress = store.get_progress(run["id"]) or {}
    paused_after = int(progress["epoch"]) if progress.get("paused") else None
    action = tour.run_action(steps, int(state["index"]), finished, paused_after,
                             state.get("stepped_after"))
    if action:
        control_requests.request_play(store, run["id"], action)
        store.set_tour(prefix, {**state, "stepped_after": tour.RESUMED if action == "resume"
                                else paused_after})


def _buttons(prefix: str, state: dict, steps: list[tour.Step], index: int,
             finished: bool) -> None:
    back, forward = st.columns(2)  # the sidebar is narrow: Leave on a row of its own
    back.button("Back", key=f"{prefix}_tour_back", disabled=index == 0, width="stretch",
                on_click=_move, args=(prefix, state, index - 1))
    last = finished and index >= len(steps) - 1
    forward.button("Next", key=f"{prefix}_tour_next", type="primary", width="stretch",
                   disabled=last or index >= len(steps), on_click=_move,
                   args=(prefix, state, index + 1))
    st.button("Leave the tour", key=f"{prefix}_tour_leave", width="stretch",
              on_click=_leave, args=(prefix, state))


def _start(prefix: str) -> None:
    if not roles.require_instructor("tour"):
        return
    store = open_store()
    under_way = store.get_tour(prefix)
    if under_way and store.get_run(under_way["run_id"]):  # a second click, another tab
        run_id = under_way["run_id"]
    else:
        run_id = queue.submit(store, PRESETS[tour.TOUR_PRESET].config(), name="Guided tour")
        start_paced(store, [run_id], "step")  # paused after its first epoch: the first step
        store.set_tour(prefix, {"run_id": run_id, "index": 0, "stepped_after": None})
    # the card's next run sees a run it does not follow yet and reruns the whole page, which
    # puts it on the charts (a button in a fragment reruns only the fragment)


def _move(prefix: str, state: dict, index: int) -> None:
    if roles.require_instructor("tour"):
        store = open_store()
        current = store.get_tour(prefix) or state
        store.set_tour(prefix, {**current, "index": max(index, 0)})


def _leave(prefix: str, state: dict) -> None:
    if not roles.require_instructor("tour"):
        return
    store = open_store()
    store.set_tour(prefix, None)
    run = store.get_run(state["run_id"])
    if run and run["status"] in ACTIVE_STATUSES:
        control_requests.request_play(store, run["id"], "resume")  # the run goes on in real time
