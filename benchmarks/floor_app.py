"""Streamlit's own cost of a live update, for `python benchmarks/classroom.py --floor`.

A fragment that reruns every second, as the live panel does, and draws its "Last update"
line; with FLOOR=charts it first draws the live panel's legend and charts of the runs
FLOOR_RUNS (comma-separated ids in DIVEBATCH_DB), built once at start and never again. So,
next to the dashboard itself: what Streamlit costs per update with nothing to draw, what
sending the same charts adds, and (by difference) what reading and building them adds.
"""

import os
import sys
import time
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # before benchmarks/dashboard.py
from dashboard import live_cache  # noqa: E402
from dashboard.store import open_store  # noqa: E402
from divebatch.report.figures import ChartOptions  # noqa: E402

DRAW_CHARTS = os.environ.get("FLOOR") == "charts"


@st.cache_resource
def built_once():
    run_ids = [int(i) for i in os.environ["FLOOR_RUNS"].split(",")]
    return live_cache.charts(live_cache.snapshot(open_store(), run_ids), ChartOptions(log_y=True))


@st.fragment(run_every=1.0)
def panel() -> None:
    started, started_cpu = time.perf_counter(), time.thread_time()
    if DRAW_CHARTS:
        legend, charts = built_once()
        st.plotly_chart(legend, key="legend", config={"displayModeBar": False})
        columns = st.columns(2)
        figures = [(name, chart) for name, chart in charts if not isinstance(chart, str)]
        for index, (name, figure) in enumerate(figures):
            with columns[index % 2]:
                st.plotly_chart(figure, key=name)
    took, cpu = time.perf_counter() - started, time.thread_time() - started_cpu
    st.caption(f"Last update {time.strftime('%H:%M:%S')} (took {took:.2f} s, {cpu:.3f} "
               f"CPU-s) · refreshing every 1 s")


panel()
