"""The read-only routes that the growing live charts poll, on the dashboard's own server
(server.py mounts them with st.App; `streamlit run app.py` alone has none, and the live
panel then draws Streamlit's own charts).

GET /api/live?runs=1,2&options={...}&have=SERIAL&every=1&viewer=ID answers, as JSON, the
runs' statuses, progress lines, verdict and time-to-target table, the refresh interval, and
the charts as the points after those of version `have` (dashboard.growing). It only reads the
store, through the snapshots every page shares (dashboard.live_cache): no request changes
anything, whoever sends it, so a read-only twin (DIVEBATCH_ROLE=viewer) stays read-only.
GET /api/live/plotly.min.js serves the plotly package's own plotly.js, cached by browsers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import plotly
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from divebatch.report import figures as plots
from divebatch.report.figures import ChartOptions

from . import growing, live_cache, pacing, target_view
from .store import open_store

PATH = "/api/live"
FRESH_ENV = "DIVEBATCH_LIVE_FRESH"  # "1": every answer reads the store anew (tests)
MAX_RUNS = 64
PLOTLY_JS = Path(plotly.__file__).with_name("package_data") / "plotly.min.js"
STATES_KEPT = 64
_states: dict = {}  # (store, runs, snapshot read at) -> page_state as JSON members
SERVED = False  # whether this process serves the routes (serve() sets it)
_OPTION_FIELDS = {field.name for field in dataclasses.fields(ChartOptions)}


def serve() -> list[Route]:
    """The routes, for this process's st.App: from now on the live panel uses them."""
    global SERVED
    SERVED = True
    return routes()


def routes() -> list[Route]:
    return [Route(PATH, live, methods=["GET"]),
            Route(f"{PATH}/plotly.min.js", plotly_js, methods=["GET"])]


def plotly_js(request: Request) -> Response:
    return FileResponse(PLOTLY_JS, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


def live(request: Request) -> Response:
    started, started_cpu = time.perf_counter(), time.thread_time()
    try:
        run_ids, options, every = parse(request.query_params)
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    pacing.note_update(request.query_params.get("viewer", "")[:64])
    fresh = os.environ.get(FRESH_ENV) == "1"
    snap = live_cache.snapshot(open_store(), run_ids, max_age_s=0.0 if fresh else None)
    have = growing.held(request.query_params.get("have"))
    charts = growing.encoded_message(have, growing.latest(snap, options, fresh)) \
        if snap.has_points else "null"
    state = json.dumps({"every": next_interval(snap, every),
                        "took": time.perf_counter() - started,
                        "cpu": time.thread_time() - started_cpu})
    return Response(f'{{"charts":{charts},"state":{{{shared_state(snap)},{state[1:]}}}',
                    media_type="application/json", headers={"Cache-Control": "no-store"})


def shared_state(snap: live_cache.Snapshot) -> str:
    """page_state(snap) as JSON members, encoded once per snapshot for every page."""
    key = (snap.source, tuple(run["id"] for run in snap.runs), snap.read_at)
    text = _states.get(key)
    if text is None:
        text = json.dumps(page_state(snap), allow_nan=False)[1:-1]
        _states[key] = text
        while len(_states) > STATES_KEPT:
            _states.pop(next(iter(_states)), None)
    return text


def parse(query) -> tuple[list[int], ChartOptions, float | None]:
    """(run ids, chart options, the page's refresh interval) from the query; ValueError
    names the field and what it allows."""
    try:
        run_ids = [int(part) for part in query.get("runs", "").split(",") if part]
    except ValueError:
        raise ValueError("runs should be run ids separated by commas, such as runs=1,2")
    if not 0 < len(run_ids) <= MAX_RUNS:
        raise ValueError(f"runs should name 1 to {MAX_RUNS} runs, but named {len(run_ids)}")
    try:
        fields = json.loads(query.get("options", "{}"))
    except json.JSONDecodeError:
        raise ValueError("options should be a JSON object of chart options")
    if not isinstance(fields, dict) or not set(fields) <= _OPTION_FIELDS:
        raise ValueError(f"options should be a JSON object with keys among "
                         f"{sorted(_OPTION_FIELDS)}")
    if fields.get("x_axis", "samples_seen") not in plots.X_AXES:
        raise ValueError(f"options.x_axis should be one of {list(plots.X_AXES)}")
    if fields.get("diversity_view", "diversity") not in plots.DIVERSITY_VIEWS:
        raise ValueError(f"options.diversity_view should be one of "
                         f"{list(plots.DIVERSITY_VIEWS)}")
    try:
        options = ChartOptions(**fields)
        every = float(query["every"]) if query.get("every") else None
    except (TypeError, ValueError) as error:
        raise ValueError(str(error)) from None
    return run_ids, options, every


def page_state(snap: live_cache.Snapshot) -> dict:
    """The runs' statuses (a page whose runs changed status reruns to redraw its
    controls), a progress line for each running run, and the verdict (whole, and its lead for
    a projector) and time-to-target table of a comparison (target_view.parts)."""
    progress = [plots.progress(run, list(snap.records[run["id"]]), snap.progress[run["id"]],
                               list(snap.events[run["id"]]))
                for run in snap.runs if run["status"] == "running"]
    verdict = lead = table = None
    if len(snap.runs) > 1 and any(snap.records.values()):
        built = snap.table().table
        verdict, lead = built.verdict, built.verdict_lead
        table = target_view.parts(built, list(snap.runs))
    return {"statuses": {str(run["id"]): run["status"] for run in snap.runs},
            "progress": [[fraction, text] for fraction, text in progress],
            "verdict": verdict or None, "verdict_lead": lead or None, "table": table}


def next_interval(snap: live_cache.Snapshot, every: float | None) -> float | None:
    """Seconds until the page's next request: None once no run shown is active."""
    from .live import _interval  # the live panel's own rule (live imports this module)
    return _interval(snap, every)
