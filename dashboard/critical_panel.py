"""The critical-batch panel under a run's charts: start a measurement of a finished run, follow
it while its background worker branches, and draw its chart with the sentence under it. The
numbers, the figure and the words come from the library (divebatch.experiments,
divebatch.report); this module holds widgets only."""

from __future__ import annotations

import streamlit as st

from dashboard import roles
from dashboard.store import open_store
from divebatch.experiments import critical_jobs
from divebatch.experiments.critical_batch import CriticalBatchSettings, summarize
from divebatch.report.critical_batch import critical_batch_sentence, measured_points
from divebatch.report.critical_figure import critical_batch_figure
from divebatch.report.figures import CHART_CONFIG, RunData
from divebatch.report.run_labels import run_label
from divebatch.runs.warm_pool import RACE_GROUP_PREFIX
from divebatch.runs.measurements import Measurements
from divebatch.runs.store import ACTIVE_STATUSES

REFRESH_S = 2.0  # seconds between reads of a running measurement's progress
LR_RULES = {"run": "the run's LR rule", "tuned": "tuned per batch size (7x the branches)"}


def critical_batch_panel(prefix: str, runs: list[dict]) -> None:
    """The panel for one of `runs` (store rows), chosen in a select box."""
    st.subheader("Critical batch size")
    st.caption("Branch short continuations from the run's kept checkpoints at batch sizes "
               "B0·2^k up to B_max and count the steps each needs to the same loss decrease: "
               "the critical batch size is where the steps stop falling in proportion to 1/B "
               "(McCandlish et al.'s fit; docs/user-guide.md).")
    if not runs:
        return
    by_id = {run["id"]: run for run in runs}
    run_id = st.selectbox("Run to measure", list(by_id), key=f"{prefix}_critical_run",
                          format_func=lambda i: run_label(by_id[i]))
    if roles.can_change():
        _start_controls(prefix, by_id[run_id])
    store = open_store()
    latest = Measurements(store).of_run(run_id, critical_jobs.KIND)
    active = bool(latest) and latest[0]["status"] in ACTIVE_STATUSES
    st.fragment(run_every=REFRESH_S if active else None)(_measurement_view)(
        prefix, run_id, active)


def _start_controls(prefix: str, run: dict) -> None:
    left, right = st.columns([2, 1], vertical_alignment="bottom")
    rule = left.radio("Learning rate of each branch", list(LR_RULES), horizontal=True,
                      format_func=LR_RULES.get, key=f"{prefix}_critical_rule")
    right.button("Measure", key=f"{prefix}_critical_start", width="stretch",
                 on_click=_start, args=(prefix, run["id"], rule),
                 disabled=run["status"] in ACTIVE_STATUSES,
                 help="In a background worker; it can be stopped and resumed.")
    error = st.session_state.pop(f"{prefix}_critical_error", None)
    if error:
        st.error(error)


def _start(prefix: str, run_id: int, rule: str) -> None:
    if not roles.require_instructor("measure"):
        return
    try:
        critical_jobs.submit(open_store(), run_id, CriticalBatchSettings(lr_rule=rule))
    except ValueError as error:
        st.session_state[f"{prefix}_critical_error"] = str(error).splitlines()[0]


def _act(action, measurement_id: int) -> None:
    if roles.require_instructor("stop or resume a measurement"):
        try:
            action(open_store(), measurement_id)
        except ValueError as error:
            st.toast(str(error).splitlines()[0])


def _measurement_view(prefix: str, run_id: int, was_active: bool) -> None:
    store = open_store()
    critical_jobs.reap(store)
    measurements = Measurements(store)
    latest = measurements.of_run(run_id, critical_jobs.KIND)
    if not latest:
        st.info("Not measured yet.")
        return
    measurement = latest[0]
    active = measurement["status"] in ACTIVE_STATUSES
    if was_active and not active:
        st.rerun()  # the page again, without the refresh timer
    _status_line(prefix, measurement, active)
    measurement_chart(prefix, store, run_id, measurement["id"], active=active)


def measurement_chart(prefix: str, store, run_id: int, measurement_id: int,
                      active: bool = False) -> None:
    """The chart of one measurement of `run_id` (with its race's batch sizes) and the
    sentence under it; the guided tour draws it on the lab too. While an `active`
    measurement has no point yet, the sentence says it is being measured."""
    summaries = summarize(Measurements(store).rows(measurement_id))
    shown = _race_of(store, store.get_run(run_id))
    datas = [RunData(r, store.records(r["id"])) for r in shown]
    measured = next(d for d in datas if d.run["id"] == run_id)
    st.plotly_chart(critical_batch_figure(summaries, measured, datas),
                    key=f"{prefix}_critical_chart", width="stretch", config=CHART_CONFIG)
    if active and not measured_points(summaries):
        st.markdown("Being measured: the critical batch size appears here once the branches "
                    "of a checkpoint have finished.")
    else:
        st.markdown(critical_batch_sentence(summaries, datas))


def _status_line(prefix: str, measurement: dict, active: bool) -> None:
    progress = measurement["progress"] or {}
    text = f"Measurement #{measurement['id']}: {measurement['status']}"
    if progress:
        text += f", {progress['done']} of {progress['total']} branches"
    if measurement["error"]:
        text += f" ({measurement['error']})"
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.caption(text)
    if not roles.can_change():
        return
    if active:
        right.button("Stop measuring", key=f"{prefix}_critical_stop", width="stretch",
                     on_click=_act, args=(critical_jobs.request_stop, measurement["id"]))
    elif measurement["status"] in ("stopped", "failed", "interrupted"):
        right.button("Resume measuring", key=f"{prefix}_critical_resume", width="stretch",
                     on_click=_act, args=(critical_jobs.resume, measurement["id"]))


def _race_of(store, run: dict) -> list[dict]:
    """The runs whose batch sizes the chart draws: the run's race, or the run alone."""
    if run["group"].startswith(RACE_GROUP_PREFIX):
        return sorted(store.list_runs(group=run["group"]), key=lambda r: r["id"])
    return [run]
