"""The live panel's charts as growing charts: a Streamlit v2 component (growing_charts.js)
that fetches the new points itself from the server's read-only route (live_route) and adds
them to the charts it has drawn, so a page watching runs grow never reruns. The page reruns
when a run's status changes (the component asks for it), when the viewer changes the runs or
the chart options (the component then draws everything anew), or on Refresh.

Used when this process serves the route (server.py), unless DIVEBATCH_LIVE_CHARTS=full; then,
and for `streamlit run app.py` alone, the live panel redraws Streamlit's own charts in a
fragment every second (dashboard/live.py), the former path.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import uuid
from pathlib import Path

import streamlit as st

from divebatch.report import figures as plots
from divebatch.report.figures import ChartOptions

from . import live_cache, live_route, roles
from .instructor import ask_for_charts, instructor_mode
from .store import open_store

MODE_ENV = "DIVEBATCH_LIVE_CHARTS"  # "grow", or "full": every chart resent each update
DEFAULT_MODE = "grow"
HOUSEKEEPING_EVERY_S = 2.0  # the instructor's page starts queued runs, reaps dead workers
FOLDER = Path(__file__).parent


def enabled() -> bool:
    """Whether the live panel draws growing charts (see the module's docstring)."""
    mode = os.environ.get(MODE_ENV, "").strip().lower() or DEFAULT_MODE
    return live_route.SERVED and mode == "grow"


@functools.cache
def _component():
    return st.components.v2.component(
        "divebatch_growing_charts", js="\n".join(
            (FOLDER / name).read_text() for name in ("growing_lines.js", "growing_charts.js")),
        css=(FOLDER / "growing_charts.css").read_text(), isolate_styles=False)


def panel(prefix: str, statuses: dict[int, str], options: ChartOptions,
          every: float | None) -> None:
    """The growing charts of the runs in `statuses` (their statuses as this page drew its
    controls), refreshing while some run is active."""
    if roles.can_change() and every:
        st.fragment(run_every=max(every, HOUSEKEEPING_EVERY_S))(_housekeeping)(prefix,
                                                                               statuses)
    refreshes = st.session_state.get(f"{prefix}_refreshes", 0)
    data = {"route": _route(), "prefix": prefix, "runs": list(statuses),
            "statuses": {str(run_id): status for run_id, status in statuses.items()},
            "options": dataclasses.asdict(options), "refreshes": refreshes,
            "viewer": st.session_state.setdefault("viewer_id", uuid.uuid4().hex),
            "projector": instructor_mode()}  # the verdict's lead, the rest on demand
    _component()(key=f"{prefix}_growing", data=data,
                 on_changed_change=functools.partial(_changed, prefix, statuses))
    st.button("Refresh", key=f"{prefix}_refresh", on_click=_refresh, args=(prefix,))
    st.plotly_chart(plots.BLANK, key=f"{prefix}_chart_preload",  # Streamlit's chart theme,
                    config={"staticPlot": True, "displayModeBar": False})  # for the look


def _route() -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}{live_route.PATH}" if base else live_route.PATH


def _changed(prefix: str, statuses: dict[int, str]) -> None:
    """A run's status changed: this rerun of the page redraws its controls and charts, and
    lands on the verdict of a race that has ended."""
    store = open_store()
    _land_on_verdict(prefix, statuses, [run for run in map(store.get_run, statuses) if run])


def _land_on_verdict(prefix: str, statuses: dict[int, str], runs: list[dict]) -> None:
    if live_cache.race_ended(statuses, runs):
        ask_for_charts(prefix, verdict=True)


def _refresh(prefix: str) -> None:
    st.session_state[f"{prefix}_refreshes"] = st.session_state.get(f"{prefix}_refreshes", 0) + 1


def _housekeeping(prefix: str, statuses: dict[int, str]) -> None:
    """What the charts' fragment did on each update besides drawing: start queued runs as
    slots free up and mark dead workers, now every HOUSEKEEPING_EVERY_S; a status change
    reruns the page (the component also asks for that as soon as it sees one)."""
    store = open_store()
    live_cache.dispatch(store)
    snap = live_cache.snapshot(store, list(statuses))
    if {run["id"]: run["status"] for run in snap.runs} != statuses:
        _land_on_verdict(prefix, statuses, list(snap.runs))
        st.rerun()
