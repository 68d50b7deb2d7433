"""The guided tour of a lab page: a card in the sidebar that walks through a real run of the
tour preset, step by step, with the step's chart highlighted on the page; once the run has
ended, the tour races the four methods on its setup and measures the race's DiveBatch run's
critical batch size, and its last two steps read the race's verdict and that chart.

The tour's state (its run and the step shown) lives in the store (`RunStore.set_tour`), so
every viewer of the page, the read-only twin's included, shows the instructor's step within
one refresh. Only the instructor's page moves it (Start, Next, Back, Leave) and drives the
run to the next step's moment with the pause / step controls; the rest of the page stays
usable throughout. Which steps a run has reached, and their words, come from
`divebatch.report.tour`.

A page that took part in the tour (started or moved it, or showed it while it was under way)
keeps it to its end; a page opened once it is over (on its last step, or left unmoved: see
`tour.is_over`) offers a new one instead, which replaces it.
"""

from __future__ import annotations

import streamlit as st

from divebatch.config import RunConfig
from divebatch.experiments import critical_jobs
from divebatch.experiments.critical_batch import CriticalBatchSettings, summarize
from divebatch.presets import PRESETS, race_configs
from divebatch.report import tour
from divebatch.report.tour_sequel import (NOT_MEASURABLE, RACE_KEYS, Sequel, sequel_action,
                                          sequel_ended, sequel_steps)
from divebatch.runs import control_requests, queue
from divebatch.runs.measurements import Measurements
from divebatch.runs.store import ACTIVE_STATUSES

from . import pacing, roles
from .critical_panel import measurement_chart
from .store import open_store
from .play import start_paced

WAITING = {"race": "The race of the four methods trains on to its end…",
           "critical": "The critical batch size is being measured (short branches from the "
                       "race's DiveBatch run)…",
           None: "The run trains on to the next step's moment…"}
IDLE_POLL_S = 5.0  # how often a page with no tour under way looks for one (the class's pages)
HIGHLIGHT = ("<style>.st-key-{prefix}_{element} {{ outline: 4px solid #f59e0b; "
             "outline-offset: 4px; border-radius: 6px; }}</style>")
# the card's text and buttons smaller than the page's (instructor mode enlarges everything)
COMPACT = ("<style>.st-key-{prefix}_tour p {{ font-size: 0.85rem; line-height: 1.35; }} "
           ".st-key-{prefix}_tour button {{ min-height: 2.2rem; font-size: 0.85rem; }}</style>")
# Bring the step's element into view once drawn (within 2 minutes), and the card's text
# (the sidebar scrolls on its own), and back whenever the page moves them out (a rerun that
# redraws the charts, a run that ends and loses its controls above them), until the user
# scrolls or clicks, another step is shown, or 5 minutes have passed. The card sends it on
# every run (a run of the card can be cut short by a rerun of the page): it starts once
# per step shown.
SCROLL = ("<script>(() => {{ const step = '{prefix}:{step}';"
          " if (window.tourStep === step) return; window.tourStep = step;"
          " let waited = 0, kept = 0, user = false;"
          " const stop = () => {{ user = true; }};"
          " for (const kind of ['wheel', 'touchmove', 'keydown', 'mousedown']) "
          "window.addEventListener(kind, stop, {{once: true}});"
          " const go = () => {{ if (user || window.tourStep !== step) return;"
          " const chart = document.querySelector("
          "'.st-key-{prefix}_{element}');"
          " if (!chart) {{ if (waited++ < 1200) setTimeout(go, 100); return; }}"
          " const box = chart.getBoundingClientRect();"
          " if (box.top < 60 || box.bottom > window.innerHeight)"
          " chart.scrollIntoView({{block: 'center'}});"
          " const card = document.querySelector('.st-key-{prefix}_tour');"
          " const own = card && card.getBoundingClientRect();"
          " if (own && (own.top < 0 || own.bottom > window.innerHeight))"
          " card.scrollIntoView({{block: 'nearest'}});"
          " if (kept++ < 3000) setTimeout(go, 100); }}; go(); }})();</script>")


def tour_panel(prefix: str) -> None:
    """The tour card in the sidebar; call before the page's run picker, which it sets to the
    runs of the step shown (the toured run, then its race)."""
    toured = _shown(prefix, open_store())
    _follow(prefix, toured)
    every = pacing.refresh_interval() if toured else IDLE_POLL_S  # a page rerun follows a start
    with st.sidebar:
        st.fragment(run_every=every)(_card)(prefix)


def tour_figures(prefix: str) -> None:
    """The critical-batch chart of the tour's race, while its step is shown; call after the
    page's charts."""
    scene = st.session_state.get(f"{prefix}_tour_followed")
    if scene and scene[1]:
        run_id, measurement_id = scene[1]
        measurement_chart(prefix, open_store(), run_id, measurement_id)


class _Tour:
    """A tour as the store holds it: its state, run, reached steps and what comes after."""

    def __init__(self, store, state: dict):
        self.state, self.run = state, store.get_run(state["run_id"])
        if self.run is None:
            return
        self.finished = self.run["status"] not in ACTIVE_STATUSES
        self.sequel = _sequel(store, state)
        self.steps = tour.reached_steps(
            self.run["config"], int(self.run["info"].get("n_train") or 0),
            store.records(self.run["id"]), store.events(self.run["id"]), self.finished)
        if self.finished:
            self.steps += sequel_steps(self.sequel)
        self.complete = self.finished and sequel_ended(self.sequel)
        self.index = min(int(state["index"]), len(self.steps))
        self.last = tour.at_last_step(self.steps, self.index, self.complete)

    def scene(self) -> tuple:
        """What the page shows at the step shown: (the runs on the charts, the critical-batch
        chart's (run id, measurement id) or None)."""
        key = (self.steps[self.index].key if self.index < len(self.steps)
               else tour.waiting_for(self.steps, self.index))
        race = tuple(run["id"] for run in self.sequel.race)
        runs = race if key in RACE_KEYS and race else (self.run["id"],)
        measured = self.sequel.measured_run
        critical = ((measured["id"], self.sequel.measurement["id"])
                    if key == "critical" and self.index < len(self.steps) else None)
        return runs, critical


def _sequel(store, state: dict) -> Sequel:
    race = [run for run in map(store.get_run, state.get("race", ())) if run]
    measurement_id = state.get("measurement")
    measurements = Measurements(store)
    measurement = ({"id": NOT_MEASURABLE, "status": "failed"}
                   if measurement_id == NOT_MEASURABLE
                   else measurements.get(measurement_id) if measurement_id else None)
    summaries = (summarize(measurements.rows(measurement["id"]))
                 if measurement and measurement["status"] == "completed" else [])
    return Sequel(race, {run["id"]: store.records(run["id"]) for run in race},
                  measurement, summaries)


def _shown(prefix: str, store) -> _Tour | None:
    """The tour this session shows: the store's, unless it is over and this session took no
    part in it (then the card offers a new one). Showing it while it is under way is taking
    part: the session keeps it to its end."""
    state = store.get_tour(prefix)
    toured = _Tour(store, state) if state else None
    if toured is None or toured.run is None:
        return None
    joined = f"{prefix}_tour_joined"
    if st.session_state.get(joined) == state["run_id"]:
        return toured
    if tour.is_over(state, toured.last):
        return None
    st.session_state[joined] = state["run_id"]
    return toured


def _follow(prefix: str, toured: _Tour | None) -> None:
    """Put the runs of the step shown on this session's charts, once per change of them."""
    followed_key = f"{prefix}_tour_followed"
    if toured:
        scene = toured.scene()
        if scene != st.session_state.get(followed_key):
            st.session_state[f"{prefix}_shown"] = list(scene[0])
            st.session_state[followed_key] = scene
    elif st.session_state.get(followed_key):
        st.session_state[followed_key] = None  # the tour ended: no critical-batch chart


def _card(prefix: str) -> None:
    store = open_store()
    toured = _shown(prefix, store)
    with st.container(border=True, key=f"{prefix}_tour"):
        if toured is None:
            if st.session_state.get(f"{prefix}_tour_followed"):
                st.rerun(scope="app")  # the tour ended elsewhere: off with its chart
            _invitation(prefix)
            return
        if toured.scene() != st.session_state.get(f"{prefix}_tour_followed"):
            st.rerun(scope="app")  # the step shows other runs or charts: redraw the page
        st.html(COMPACT.format(prefix=prefix))
        if roles.can_change():
            _drive(prefix, store, toured)
            _buttons(prefix, toured)
        else:
            st.caption("The instructor moves the tour; this page follows it.")
        _show(prefix, toured)


def _invitation(prefix: str) -> None:
    st.markdown("**Guided tour**")
    if roles.can_change():
        st.caption(f"{len(tour.STEPS)} short steps over a real run of the "
                   f"'{PRESETS[tour.TOUR_PRESET].title}' preset, pausing at each, then its "
                   f"race and critical batch size.")
        st.button("Take the guided tour", key=f"{prefix}_tour_start", width="stretch",
                  icon=":material/tour:", on_click=_start, args=(prefix,))
    else:
        st.caption("No guided tour under way.")


def _show(prefix: str, toured: _Tour) -> None:
    index, steps = toured.index, toured.steps
    total = tour.steps_in_all(steps, toured.complete)
    if index >= len(steps):
        st.markdown(f"**Step {index + 1} of {total}**")
        st.caption(WAITING.get(tour.waiting_for(steps, index), WAITING[None]))
        return
    show_step(prefix, steps[index], index, total)


def show_step(prefix: str, step: tour.Step, index: int, total: int) -> None:
    """A step in the card: its number, title, words and caption; its element outlined on
    the page and scrolled into view."""
    st.markdown(f"**Step {index + 1} of {total}**  \n**{step.title}**")
    st.markdown(step.text)
    if step.caption:
        st.caption(step.caption)
    st.html(HIGHLIGHT.format(prefix=prefix, element=step.element))
    st.html(SCROLL.format(prefix=prefix, element=step.element, step=f"{step.key}{index}"),
            unsafe_allow_javascript=True)


def _drive(prefix, store, toured: _Tour) -> None:
    """Send the run what it needs to reach the step shown (once per paused epoch); once it
    has ended, start its race, then the race's measurement (once each)."""
    state, run = toured.state, toured.run
    progress = store.get_progress(run["id"]) or {}
    paused_after = int(progress["epoch"]) if progress.get("paused") else None
    action = tour.run_action(toured.steps, int(state["index"]), toured.finished,
                             paused_after, state.get("stepped_after"))
    if action:
        control_requests.request_play(store, run["id"], action)
        store.set_tour(prefix, {**state, "stepped_after": tour.RESUMED if action == "resume"
                                else paused_after})
    action, current = sequel_action(toured.finished, toured.sequel), store.get_tour(prefix)
    if action == "race" and current:
        configs = [config for _, config in race_configs(RunConfig.from_dict(run["config"]))]
        store.set_tour(prefix, {**current, "race": queue.submit_race(store, configs)})
    elif action == "measure" and current:
        store.set_tour(prefix, {**current,
                                "measurement": _measure(store, toured.sequel.measured_run)})
    elif toured.sequel.measurement and toured.sequel.measurement["status"] in ACTIVE_STATUSES:
        critical_jobs.reap(store)  # a measurement whose worker died ends as interrupted


def _measure(store, run: dict) -> int:
    """Start the critical-batch measurement of `run`; its id, or NOT_MEASURABLE."""
    try:
        return critical_jobs.submit(store, run["id"], CriticalBatchSettings())
    except ValueError:  # e.g. the run kept no checkpoint: the tour ends without the step
        return NOT_MEASURABLE


def _buttons(prefix: str, toured: _Tour) -> None:
    state, index, steps = toured.state, toured.index, toured.steps
    back, forward = st.columns(2)  # the sidebar is narrow: Leave on a row of its own
    back.button("Back", key=f"{prefix}_tour_back", disabled=index == 0, width="stretch",
                on_click=_move, args=(prefix, state, index - 1))
    forward.button("Next", key=f"{prefix}_tour_next", type="primary", width="stretch",
                   disabled=toured.last or index >= len(steps), on_click=_move,
                   args=(prefix, state, index + 1))
    st.button("Leave the tour", key=f"{prefix}_tour_leave", width="stretch",
              on_click=_leave, args=(prefix, state))


def _start(prefix: str) -> None:
    if not roles.require_instructor("tour"):
        return
    store = open_store()
    if _shown(prefix, store) is None:  # else a second click, another tab: join that tour
        over = store.get_tour(prefix)  # one that is over for this session: replace it
        if over:
            _resume(store, over)
        run_id = queue.submit(store, PRESETS[tour.TOUR_PRESET].config(), name="Guided tour")
        start_paced(store, [run_id], "step")  # paused after its first epoch: the first step
        store.set_tour(prefix, tour.moved_to({"run_id": run_id, "stepped_after": None}, 0))
    # the card's next run sees a run it does not follow yet and reruns the whole page, which
    # puts it on the charts (a button in a fragment reruns only the fragment)


def _move(prefix: str, state: dict, index: int) -> None:
    if roles.require_instructor("tour"):
        store = open_store()
        current = store.get_tour(prefix) or state
        store.set_tour(prefix, tour.moved_to(current, index))


def _leave(prefix: str, state: dict) -> None:
    if not roles.require_instructor("tour"):
        return
    store = open_store()
    store.set_tour(prefix, None)
    _resume(store, state)


def _resume(store, state: dict) -> None:
    """The tour's run goes on in real time, if it is still training."""
    run = store.get_run(state["run_id"])
    if run and run["status"] in ACTIVE_STATUSES:
        control_requests.request_play(store, run["id"], "resume")
