"""The live panel's controls for the active runs on the charts (instructors only): which run
they act on, Stop, the hot-change form with what may keep a change from showing at once,
and play / pause / step (dashboard.play)."""

from __future__ import annotations

import streamlit as st

from divebatch.config import HOT_FIELDS, RunConfig, method_uses
from divebatch.report.hot_limits import hot_change_limits, hot_values_in_force
from divebatch.runs import control_requests

from . import growing_panel, live_cache, pacing, roles
from .fields import field_value, field_widget, label_of
from .instructor import instructor_mode
from .play import play_controls
from .store import open_store


def run_controls(prefix: str, active: list[dict], snap: live_cache.Snapshot) -> None:
    """Stop and hot-change the active runs on the charts, one picked run at a time."""
    if not active:
        return
    by_id = {run["id"]: run for run in active}
    pick_key = f"{prefix}_control_run"
    labels = snap.labels_in_force()  # as the legend
    if st.session_state.get(pick_key) not in by_id:  # prefer a running run
        st.session_state[pick_key] = next(
            (run["id"] for run in active if run["status"] == "running"), active[0]["id"])
    shown_key = f"{pick_key}_label"  # the browser shows the label it was sent: resend it
    if st.session_state.get(shown_key) != labels[st.session_state[pick_key]]:
        st.session_state[pick_key] = st.session_state[pick_key]  # a changed label
        st.session_state[shown_key] = labels[st.session_state[pick_key]]
    with st.container(border=True):
        col_pick, col_stop, col_all = st.columns([2, 1, 1] if instructor_mode() else [4, 1, 1],
                                                 vertical_alignment="bottom")
        picked = col_pick.selectbox("Control the active run", list(by_id), key=pick_key,
                                    format_func=labels.get)
        col_stop.button("Stop", key=f"{prefix}_stop", width="stretch", on_click=_stop,
                        args=(prefix, [picked]))
        col_all.button(f"Stop all {len(active)}", key=f"{prefix}_stop_all", width="stretch",
                       disabled=len(active) < 2, on_click=_stop, args=(prefix, list(by_id)))
        hot_change_form(prefix, by_id[picked], list(snap.records[picked]),
                        list(snap.events[picked]))
        play_controls(prefix, by_id[picked])
    message = st.session_state.pop(f"{prefix}_control_message", None)
    if message:
        getattr(st, message[0])(message[1])


def _stop(prefix: str, run_ids: list[int]) -> None:
    if not roles.require_instructor("stop"):
        return
    store = open_store()
    for run_id in run_ids:
        control_requests.request_stop(store, run_id)
    names = ", ".join(f"#{run_id}" for run_id in run_ids)
    st.session_state[f"{prefix}_control_message"] = (
        "info", f"Stop requested for {names}: a running run stops between two steps, a "
                f"queued one is cancelled at once.")


def current_hot_values(run: dict, records: list[dict], events: list[dict] = ()) -> dict:
    """The hot parameters in force (config, last record, hot changes since)."""
    values = hot_values_in_force({**RunConfig().to_dict(), **run["config"]}, records, events)
    kinds = {name: type(getattr(RunConfig, name)) for name in HOT_FIELDS}  # int or float
    return {name: kinds[name](values[name]) for name in HOT_FIELDS}


def hot_change_form(prefix: str, run: dict, records: list[dict], events: list[dict]) -> None:
    """The four hot parameters of `run`, preset to the values in force, Apply, and what may
    keep a change from showing at once."""
    run_id, method = run["id"], run["config"].get("method", "sgd")
    current = current_hot_values(run, records, events)
    # A form: typing in a field starts no page run, so a value typed while the page redraws
    # cannot be lost to it (each Enter used to start one); Apply sends them all at once.
    with st.form(f"{prefix}_hot_form_{run_id}", border=False, enter_to_submit=False):
        cols = st.columns(len(HOT_FIELDS) + 1, vertical_alignment="bottom")
        for col, name in zip(cols, HOT_FIELDS):
            widget_key = f"{prefix}_hot_{name}_{run_id}"
            st.session_state.setdefault(widget_key, current[name])
            with col:
                field_widget(name, widget_key, disabled=not method_uses(method, name))
        cols[-1].form_submit_button("Apply", key=f"{prefix}_hot_apply", type="primary",
                                    width="stretch", on_click=_apply_hot,
                                    args=(prefix, run_id, current))
    st.caption("Type the new values, then Apply: hot changes reach the run between two steps "
               "(a new batch size starts at the next epoch) and show as dotted lines on the "
               "charts. Problem, model, method, B0, LR, schedule, momentum, weight decay, "
               "epochs, seed and device need a new run.")
    every = pacing.refresh_interval() if run["status"] == "running" else None
    if every and growing_panel.enabled():  # no rerun a second while the charts grow
        every = max(every, growing_panel.HOUSEKEEPING_EVERY_S)
    st.fragment(run_every=every)(_hot_limits)(run_id, run["config"], _hot_changes(events))


def _hot_changes(events) -> int:
    return sum(event.get("kind") == "hot_change" for event in events)


def _hot_limits(run_id: int, config: dict, changes_drawn: int) -> None:
    """Why a hot change may not show yet, kept current while the run goes on; once the run
    has applied a hot change that the page's pickers and form do not show yet, the page
    reruns (they name the run by its values in force)."""
    snap = live_cache.snapshot(open_store(), [run_id])
    events = list(snap.events.get(run_id, ()))
    if _hot_changes(events) > changes_drawn:  # (a snapshot older than the page's: fewer)
        st.rerun()
    for note in hot_change_limits(config, list(snap.records.get(run_id, ())[-1:]), events):
        st.warning(note, icon=":material/hourglass_top:")


def _apply_hot(prefix: str, run_id: int, current: dict) -> None:
    if not roles.require_instructor("hot change"):
        return
    sent_key = f"{prefix}_hot_sent_{run_id}"  # a repeated click must not resend the change
    sent = st.session_state.setdefault(sent_key, {})
    changes = {name: field_value(name, st.session_state[f"{prefix}_hot_{name}_{run_id}"])
               for name in HOT_FIELDS}
    changes = {k: v for k, v in changes.items() if v != current[k]}
    if not changes:
        st.session_state[f"{prefix}_control_message"] = ("info", "Nothing changed.")
        return
    if all(sent.get(k) == v for k, v in changes.items()):
        return  # already on its way
    try:
        control_requests.request_hot_change(open_store(), run_id, name_of=label_of, **changes)
    except ValueError as error:
        st.session_state[f"{prefix}_control_message"] = (
            "error", f"Not sent to run #{run_id}: {error}")
        return
    sent.update(changes)
    summary = ", ".join(f"{k}={v}" for k, v in changes.items())
    st.session_state[f"{prefix}_control_message"] = (
        "success", f"Sent to run #{run_id}: {summary}.")
