"""The live panel: which runs are on the charts, their controls (stop, hot changes), and the
charts themselves, redrawn by a fragment every second (longer while the server is busy)
while a shown run is active.

The fragment reads only the store: workers write records and progress there, so the charts
follow runs started in another tab, from the CLI, or before the dashboard was restarted.
Store reads and charts are shared by every viewer (dashboard.live_cache); the controls
(dashboard.live_controls) show, and act, only for the instructor (dashboard.roles).
"""

from __future__ import annotations

import time
import uuid

import streamlit as st

from divebatch.report import figures as plots
from divebatch.report.figures import ChartOptions, run_label
from divebatch.report.run_labels import stopped_note

from divebatch.runs.store import ACTIVE_STATUSES

from . import growing_panel, live_cache, pacing, roles, stale, target_view
from .store import open_store, show_run_problems
from .instructor import ask_for_charts, instructor_mode
from .live_controls import run_controls

INTERVAL_HOLD_S = 10.0
FIRST_POINT_POLL_S = 0.2  # the refresh while a just-started run has no epoch yet
FIRST_POINT_WAIT_S = 30.0  # ... for at most this long after it started


def run_picker(prefix: str, candidates: list[dict], title: str = "Runs on the charts",
               placeholder: str = "Start a run, or pick stored runs to overlay",
               latest: list[int] = ()) -> list[int]:
    """Multiselect of run ids (state "<prefix>_shown"); unknown ids are dropped. The first
    picker of a session opened by a link (`?runs=`) shows the link's runs, and names
    those it cannot show; else the active runs, else `latest`."""
    init_shown(prefix, candidates, latest)
    shown_key, note_key = f"{prefix}_shown", f"{prefix}_link_note"
    labels = {run["id"]: run_label(run) for run in candidates}  # no status in it
    st.session_state[shown_key] = [i for i in st.session_state[shown_key] if i in labels]
    labels.update(hot_labels(st.session_state[shown_key]))
    if st.session_state.get(note_key):
        st.warning(st.session_state[note_key])
    return st.multiselect(title, list(labels), key=shown_key, format_func=labels.get,
                          persist_state="session", placeholder=placeholder)


def init_shown(prefix: str, candidates: list[dict], latest: list[int] = ()) -> None:
    """The runs a session's first picker shows (state "<prefix>_shown", set once): the
    link's, else the active ones, else `latest` (a lab's last race, finished)."""
    shown_key, note_key = f"{prefix}_shown", f"{prefix}_link_note"
    ids = {run["id"] for run in candidates}
    if shown_key not in st.session_state:
        linked = [i for i in st.session_state.get("linked_runs", []) if i in ids]
        active = [r["id"] for r in candidates if r["status"] in ACTIVE_STATUSES]
        st.session_state[shown_key] = linked or active or list(latest)
        refused = st.session_state.pop("linked_runs_refused", [])
        refused += [f"#{i}" for i in st.session_state.get("linked_runs", [])
                    if i not in ids]  # in the store, but not of this page's problems
        if refused:
            st.session_state[note_key] = (
                f"This link names run(s) not shown here: {', '.join(refused)} (not in this "
                f"server's store, not run ids, or not of this page's problems).")


def link_to(run_ids: list[int]) -> None:
    """The address bar names the runs shown (`?runs=3,4`), so a reload, or the address copied,
    opens what the page shows now (a race it followed included), not what it opened on."""
    wanted = ",".join(map(str, run_ids))
    if wanted and st.query_params.get("runs") != wanted:
        st.query_params["runs"] = wanted
    elif not wanted and "runs" in st.query_params:
        del st.query_params["runs"]


def hot_labels(run_ids: list[int]) -> dict[int, str]:
    """The runs' labels with the hot values in force, as the legend names them (from the
    snapshot the charts read: no store read of its own)."""
    return live_cache.snapshot(open_store(), run_ids).labels_in_force()


def chart_options(prefix: str, comparing: bool = False) -> ChartOptions:
    """The x axis, log y, the diversity's reading and the smoothing; instructor mode shows
    the first two only (the others keep their values), so no label is cut at 1280x720.
    Runs compared (a race, or runs opened by a link) start on training time, the clock
    their time-to-target verdict is about."""
    st.session_state.setdefault(f"{prefix}_x_axis", "train_time" if comparing
                                else "samples_seen")
    st.session_state.setdefault(f"{prefix}_log_y", True)
    st.session_state.setdefault(f"{prefix}_diversity_view", "diversity")
    st.session_state.setdefault(f"{prefix}_smoothing", 0.0)
    projector = instructor_mode()
    cols = st.columns([3, 1] if projector else [2, 2, 1, 2], vertical_alignment="bottom")
    x_axis = cols[0].selectbox("x axis", list(plots.X_AXES), key=f"{prefix}_x_axis",
                               format_func=plots.X_AXES.get, persist_state="session",
                               help="Training time is the summed training seconds, "
                                    "evaluation excluded (the paper's clock).")
    log_y = cols[1 if projector else 2].toggle(
        "log y", key=f"{prefix}_log_y", persist_state="session",
        help="Log-scale y on every chart but accuracy.")
    if not projector:
        cols[1].selectbox("Diversity shown as", list(plots.DIVERSITY_VIEWS),
                          key=f"{prefix}_diversity_view", persist_state="session",
                          format_func=plots.DIVERSITY_VIEWS.get,
                          help="n·Δ̂ is Yin's batch-size bound; n·Δ̂ − 1 reads it as "
                               "McCandlish's gradient noise scale B_simple.")
        cols[3].slider("Smoothing (EMA)", 0.0, 0.95, step=0.05, key=f"{prefix}_smoothing",
                       persist_state="session")
    return ChartOptions(x_axis=x_axis, log_y=log_y,
                        smoothing=st.session_state[f"{prefix}_smoothing"],
                        diversity_view=st.session_state[f"{prefix}_diversity_view"],
                        projector=projector)


def live_panel(prefix: str, run_ids: list[int]) -> None:
    """Controls for the active runs among `run_ids` (instructors only), then the
    auto-refreshing charts, shared with every other viewer of the same runs."""
    snap = live_cache.snapshot(open_store(), run_ids)
    if not snap.runs:
        st.info("No run on the charts yet. " + ("Start one above, or pick stored runs to "
                "overlay." if roles.can_change() else "Pick stored runs to watch."))
        preload_chart_code(prefix)
        return
    active = [run for run in snap.runs if run["status"] in ACTIVE_STATUSES]
    if roles.can_change():
        run_controls(prefix, active, snap)
    elif active:
        st.caption(roles.READ_ONLY_NOTE)
    if len(snap.runs) == 1:  # a comparison's verdict says it for several runs
        note = stopped_note(list(snap.runs), snap.records, snap.events)
        if note:
            st.caption(note)
    options = chart_options(prefix, comparing=len(snap.runs) > 1)
    statuses = {run["id"]: run["status"] for run in snap.runs}
    shown_every = st.session_state.get(f"{prefix}_every")
    every = _interval(snap, shown_every)
    if every != shown_every:
        st.session_state[f"{prefix}_every"] = every
        st.session_state[f"{prefix}_every_since"] = time.monotonic()
    stale.watch()
    if growing_panel.enabled():  # the charts grow in the browser: no rerun per update
        queued = any(status == "queued" for status in statuses.values())  # what holds them
        # changes with no status change (a Resume): their line follows it while they wait
        st.fragment(run_every=max(every, growing_panel.HOUSEKEEPING_EVERY_S)
                    if every and queued else None)(show_run_problems)(
            list(snap.runs), open_store(), prefix)
        growing_panel.panel(prefix, statuses, options, every)
    else:
        st.fragment(run_every=every)(charts_fragment)(prefix, statuses, options, every)
    if len(statuses) > 1 and not growing_panel.enabled():  # growing: the page draws it
        st.fragment(run_every=every and max(every, live_cache.TABLE_EVERY_S))(table_fragment)(
            list(statuses))
    st.caption(f"Share these charts: `/runs?runs={','.join(map(str, statuses))}` on this "
               f"server or on its read-only twin (`scripts/dashboard.sh --viewer`).")


def charts_fragment(prefix: str, statuses: dict[int, str], options: ChartOptions,
                    every: float | None) -> None:
    """One update of the live charts (the body of their fragment, every `every` s)."""
    started, started_cpu = time.perf_counter(), time.thread_time()
    pacing.note_update(st.session_state.setdefault("viewer_id", uuid.uuid4().hex))
    store = open_store()
    live_cache.dispatch(store)  # start queued runs as slots free up; mark dead workers
    snap = live_cache.snapshot(store, list(statuses),
                           max_age_s=0.0 if every == FIRST_POINT_POLL_S else None)
    runs = list(snap.runs)
    if _statuses_changed(statuses, {run["id"]: run["status"] for run in runs}, every):
        if live_cache.race_ended(statuses, runs):  # land on its verdict and charts
            ask_for_charts(prefix, verdict=True)
        st.rerun()  # a run started, ended or vanished: redraw controls and charts together
    if every and _interval_changed(prefix, every, snap):
        st.rerun()  # a new timer needs a full rerun
    show_run_problems(runs, store, prefix)
    for run in runs:
        if run["status"] == "running":
            fraction, text = plots.progress(run, snap.records[run["id"]],
                                            snap.progress[run["id"]], snap.events[run["id"]])
            st.progress(fraction, text=text)
    if snap.has_points:
        draw_charts(prefix, snap, options)
        if every == FIRST_POINT_POLL_S:
            st.session_state[f"{prefix}_first_drawn"] = True
    else:
        st.caption("The charts appear with the first measured point.")
        preload_chart_code(prefix)
    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    col_note, col_button = st.columns([5, 1], vertical_alignment="center")
    took, cpu = time.perf_counter() - started, time.thread_time() - started_cpu
    col_note.caption(f"Last update {stamp} (took {took:.2f} s, {cpu:.3f} CPU-s) · " + (
        f"refreshing every {every:g} s while a run is active" if every
        else "idle: no run on the charts is active"))
    col_button.button("Refresh", key=f"{prefix}_refresh", width="stretch")


def table_fragment(run_ids: list[int]) -> None:
    """The time-to-target table, in a fragment of its own: it changes at most every
    TABLE_EVERY_S while runs train, so the charts' updates do not resend it every second
    (a run that starts or ends reruns the whole panel, this table with it)."""
    snap = live_cache.snapshot(open_store(), run_ids)
    if len(snap.runs) > 1 and any(snap.records.values()):
        comparison(snap)


def _statuses_changed(shown: dict[int, str], now: dict[int, str], every: float | None
                      ) -> bool:
    """Whether the runs' statuses changed since the page drew its controls. While the first
    point is awaited a queued run that started does not count: its first point comes first,
    the controls follow with the rerun that ends the fast poll."""
    if every == FIRST_POINT_POLL_S and now.keys() == shown.keys():
        return any(now[i] != shown[i] and (shown[i], now[i]) != ("queued", "running")
                   for i in now)
    return now != shown


def _interval(snap: live_cache.Snapshot, current: float | None = None) -> float | None:
    """Seconds between chart updates: none while no shown run is active, FIRST_POINT_POLL_S
    while a run has just started and has no point yet (so its first point shows at once),
    else the server's load-dependent interval for a page now refreshing every `current` s."""
    if not any(run["status"] in ACTIVE_STATUSES for run in snap.runs):
        return None
    now = time.time()
    awaiting = any(run["status"] in ACTIVE_STATUSES and not snap.has_point(run)
                   and now - (run["started_at"] or run["created_at"]) < FIRST_POINT_WAIT_S
                   for run in snap.runs)
    return FIRST_POINT_POLL_S if awaiting else pacing.refresh_interval(current)


def _interval_changed(prefix: str, every: float, snap: live_cache.Snapshot) -> bool:
    """Whether the refresh interval should change now: into the fast first-point poll at
    once, out of it once the first point is drawn, otherwise at most once per
    INTERVAL_HOLD_S (each change is a full rerun of every viewer's page: a load near a
    threshold must not cause one on every update)."""
    wanted = _interval(snap, every)
    if wanted is None or wanted == every:
        return False
    if every == FIRST_POINT_POLL_S:
        drawn = st.session_state.pop(f"{prefix}_first_drawn", False)
        return drawn or not snap.has_points
    if wanted == FIRST_POINT_POLL_S:
        return True
    key, now = f"{prefix}_every_since", time.monotonic()
    if now - st.session_state.get(key, 0.0) < INTERVAL_HOLD_S:
        return False
    st.session_state[key] = now  # held even if the rerun's own reading keeps the interval
    return True


def draw_charts(prefix: str, snap: live_cache.Snapshot, options: ChartOptions) -> None:
    """The shared legend, the charts two by two, and a line for each chart whose value
    never changed."""
    legend, charts = live_cache.charts(snap, options)
    below = options.projector and live_cache.any_active(snap.runs)  # charts first: 1280x720
    if not below:
        verdict(prefix, snap)
    st.plotly_chart(legend, key=f"{prefix}_chart_legend", config={"displayModeBar": False})
    notes = [chart for _, chart in charts if isinstance(chart, str)]
    if notes:
        st.caption(" ".join(notes))
    figures = [(name, chart) for name, chart in charts if not isinstance(chart, str)]
    if options.projector:  # the 2x2 grid on screen is diversity, batch size, loss, accuracy
        figures.sort(key=lambda item: item[0] == "lr")
    data = snap.run_data()
    columns = st.columns(2)
    for index, (name, figure) in enumerate(figures):
        with columns[index % 2]:
            st.plotly_chart(figure, key=f"{prefix}_chart_{name}",
                            config=plots.png_config(name, data))
            if name in plots.CHART_NOTES:
                st.caption(plots.CHART_NOTES[name])
    if below:
        verdict(prefix, snap)


def verdict(prefix: str, snap: live_cache.Snapshot) -> None:
    """The comparison's verdict above the charts, so that both are on screen together
    (its table, below the charts, says how it was reached); on a projector, under them while
    runs train."""
    if len(snap.runs) < 2 or not any(snap.records.values()):
        return
    table = snap.table().table
    if table.verdict:  # a projector shows its lead, the rest on demand (fits 1280x720)
        lead = table.verdict_lead if instructor_mode() else table.verdict
        box = st.container(key=f"{prefix}_verdict")
        box.markdown(f"**Verdict:** {lead}")
        if lead != table.verdict:
            box.expander("The whole verdict").markdown(table.verdict)


def preload_chart_code(prefix: str) -> None:
    """An empty chart 10 pixels high: the browser loads and compiles plotly.js (Streamlit fetches
    it with the first chart of a page, about a second) before the first epoch arrives."""
    st.plotly_chart(plots.BLANK, key=f"{prefix}_chart_preload",
                    config={"staticPlot": True, "displayModeBar": False})


def comparison(snap: live_cache.Snapshot) -> None:
    """The time-to-target table for the shown runs: four columns, the winner highlighted,
    the verdict under it, every other column in an expander."""
    tables, runs = snap.table(), list(snap.runs)
    st.markdown(target_view.title(tables.table))
    st.dataframe(tables.rows, hide_index=True, placeholder="—")
    st.caption(target_view.caption(tables.table, runs))
    with st.expander(target_view.DETAILS_TITLE):
        st.dataframe(tables.details, hide_index=True, placeholder="—")
        st.caption(target_view.DETAILS_CAPTION)
