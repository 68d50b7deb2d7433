"""The live panel: which runs are on the charts, their controls (stop, hot changes), and the
charts themselves, redrawn by a fragment every REFRESH_S seconds while a shown run is active.

The fragment reads only the store: workers write records and progress there, so the charts
follow runs started in another tab, from the CLI, or before the dashboard was restarted.
"""

from __future__ import annotations

import time

import streamlit as st

from divebatch import analysis, jobs, plots
from divebatch.config import HOT_FIELDS, RunConfig
from divebatch.plots import ChartOptions, RunData, run_label

from .common import ACTIVE, open_store, show_run_problems
from .form import field_widget
from .play import play_controls

REFRESH_S = 1.0
HOT_USED = {"divebatch": HOT_FIELDS, "adabatch": ("max_batch_size", "resize_every",
                                                  "lr_multiplier"),
            "sgd": ("lr_multiplier",)}


def run_picker(prefix: str, candidates: list[dict], title: str = "Runs on the charts"
               ) -> list[int]:
    """Multiselect of run ids (state "<prefix>_shown"); unknown ids are dropped."""
    shown_key = f"{prefix}_shown"
    labels = {run["id"]: run_label(run) for run in candidates}  # stable: no status in it
    if shown_key not in st.session_state:
        st.session_state[shown_key] = [r["id"] for r in candidates if r["status"] in ACTIVE]
    st.session_state[shown_key] = [i for i in st.session_state[shown_key] if i in labels]
    return st.multiselect(title, list(labels), key=shown_key, format_func=labels.get,
                          persist_state="session",
                          placeholder="Start a run, or pick stored runs to overlay")


def chart_options(prefix: str) -> ChartOptions:
    cols = st.columns([2, 2, 1, 2])
    x_axis = cols[0].selectbox("x axis", list(plots.X_AXES), key=f"{prefix}_x_axis",
                               format_func=plots.X_AXES.get, persist_state="session",
                               help="Training time is the summed training seconds, "
                                    "evaluation excluded (the paper's clock).")
    view = cols[1].selectbox("Diversity shown as", list(plots.DIVERSITY_VIEWS),
                             key=f"{prefix}_diversity_view", persist_state="session",
                             format_func=plots.DIVERSITY_VIEWS.get,
                             help="n·Δ̂ is Yin's batch-size bound; n·Δ̂ − 1 reads it as "
                                  "McCandlish's gradient noise scale B_simple.")
    st.session_state.setdefault(f"{prefix}_log_y", True)
    log_y = cols[2].toggle("log y", key=f"{prefix}_log_y", persist_state="session",
                           help="Log-scale y on every chart but accuracy.")
    smoothing = cols[3].slider("Smoothing (EMA)", 0.0, 0.95, step=0.05,
                               key=f"{prefix}_smoothing", persist_state="session")
    return ChartOptions(x_axis=x_axis, log_y=log_y, smoothing=smoothing,
                        diversity_view=view)


def live_panel(prefix: str, run_ids: list[int]) -> None:
    """Controls for the active runs among `run_ids`, then the auto-refreshing charts."""
    store = open_store()
    runs = [run for run in map(store.get_run, run_ids) if run]
    if not runs:
        st.info("No run on the charts yet. Start one above, or pick stored runs to overlay.")
        return
    run_controls(prefix, [run for run in runs if run["status"] in ACTIVE])
    options = chart_options(prefix)
    statuses = {run["id"]: run["status"] for run in runs}
    active = any(status in ACTIVE for status in statuses.values())
    st.fragment(run_every=REFRESH_S if active else None)(_charts)(prefix, statuses, options)


def _charts(prefix: str, statuses: dict[int, str], options: ChartOptions) -> None:
    started = time.perf_counter()
    store = open_store()
    jobs.dispatch(store)  # start queued runs as slots free up; mark dead workers
    runs = [run for run in map(store.get_run, statuses) if run]
    if {run["id"]: run["status"] for run in runs} != statuses:
        st.rerun()  # a run started, ended or vanished: redraw controls and charts together
    records = store.records_many(statuses)
    data = [RunData(run, records[run["id"]], store.events(run["id"])) for run in runs]
    show_run_problems(runs, store)
    for item in data:
        if item.run["status"] == "running":
            fraction, text = plots.progress(item.run, item.records,
                                            store.get_progress(item.run["id"]))
            st.progress(fraction, text=text)
    if any(item.records for item in data):
        columns = st.columns(2)
        for index, (name, figure) in enumerate(plots.figures(data, options).items()):
            with columns[index % 2]:
                st.plotly_chart(figure, key=f"{prefix}_chart_{name}",
                                config=plots.png_config(name, data))
        if len(runs) > 1:
            comparison(runs, records)
    else:
        st.caption("The charts appear when the first epoch ends.")
    active = any(run["status"] in ACTIVE for run in runs)
    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    col_note, col_button = st.columns([5, 1], vertical_alignment="center")
    took = time.perf_counter() - started
    col_note.caption(f"Last update {stamp} (took {took:.2f} s) · " + (
        f"refreshing every {REFRESH_S:g} s while a run is active" if active
        else "idle: no run on the charts is active"))
    col_button.button("Refresh", key=f"{prefix}_refresh", width="stretch")


def comparison(runs: list[dict], records: dict[int, list[dict]]) -> None:
    """The paper's time-to-target table for the shown runs."""
    rows, common = plots.comparison_table(runs, records)
    st.markdown("**Time to target** (the paper's metric)")
    filled = [key for key in rows[0] if any(row[key] is not None for row in rows)]
    st.dataframe(rows, hide_index=True, column_order=filled, column_config={
        "final acc": st.column_config.NumberColumn(format="percent"),
        "speed-up": st.column_config.NumberColumn(format="%.2fx")})
    target = ("within 1 point of the run's own final accuracy"
              if any(analysis.uses_accuracy(r) for r in records.values())
              else "within 5 % of the run's own final validation loss")
    st.caption(f"own-1pt: the first epoch {target}, and the training seconds up to it "
               f"(evaluation excluded). Speed-up: the first row's time over each run's (SGD "
               f"at the small batch when present). Common target: "
               f"{'none yet' if common is None else f'{common:.4g}'}. ms/step measured / "
               f"plain: the cost of measuring gradient diversity, from this run's epochs "
               f"with and without measurement at equal batch size.")


# --- stop and hot changes

def run_controls(prefix: str, active: list[dict]) -> None:
    """Stop and hot-change the active runs on the charts, one picked run at a time."""
    if not active:
        return
    by_id = {run["id"]: run for run in active}
    pick_key = f"{prefix}_control_run"
    if st.session_state.get(pick_key) not in by_id:  # prefer a running run
        st.session_state[pick_key] = next(
            (run["id"] for run in active if run["status"] == "running"), active[0]["id"])
    with st.container(border=True):
        col_pick, col_stop, col_all = st.columns([4, 1, 1], vertical_alignment="bottom")
        picked = col_pick.selectbox("Control the active run", list(by_id), key=pick_key,
                                    format_func=lambda i: run_label(by_id[i]))
        col_stop.button("Stop", key=f"{prefix}_stop", width="stretch", on_click=_stop,
                        args=(prefix, [picked]))
        col_all.button(f"Stop all {len(active)}", key=f"{prefix}_stop_all", width="stretch",
                       disabled=len(active) < 2, on_click=_stop, args=(prefix, list(by_id)))
        hot_change_form(prefix, by_id[picked])
        play_controls(prefix, by_id[picked])
    message = st.session_state.pop(f"{prefix}_control_message", None)
    if message:
        getattr(st, message[0])(message[1])


def _stop(prefix: str, run_ids: list[int]) -> None:
    store = open_store()
    for run_id in run_ids:
        jobs.request_stop(store, run_id)
    names = ", ".join(f"#{run_id}" for run_id in run_ids)
    st.session_state[f"{prefix}_control_message"] = (
        "info", f"Stop requested for {names}: a running run stops between two steps, a "
                f"queued one is cancelled at once.")


def current_hot_values(run: dict, records: list[dict]) -> dict:
    """The hot parameters in force: the last epoch's record, else the stored config."""
    config = {**RunConfig().to_dict(), **run["config"]}
    last = records[-1] if records else {}
    kinds = {name: type(getattr(RunConfig, name)) for name in HOT_FIELDS}  # int or float
    return {name: kinds[name](config[name] if last.get(name) is None else last[name])
            for name in HOT_FIELDS}


def hot_change_form(prefix: str, run: dict) -> None:
    """The four hot parameters of `run`, preset to the values in force, and Apply."""
    run_id, method = run["id"], run["config"].get("method", "sgd")
    current = current_hot_values(run, open_store().records(run_id))
    cols = st.columns(len(HOT_FIELDS) + 1, vertical_alignment="bottom")
    for col, name in zip(cols, HOT_FIELDS):
        widget_key = f"{prefix}_hot_{name}_{run_id}"
        st.session_state.setdefault(widget_key, current[name])
        with col:
            field_widget(name, widget_key, disabled=name not in HOT_USED[method])
    cols[-1].button("Apply", key=f"{prefix}_hot_apply", type="primary", width="stretch",
                    on_click=_apply_hot, args=(prefix, run_id, current))
    st.caption("Hot changes reach the run between two steps (a new batch size starts at the "
               "next epoch) and show as dotted lines on the charts. Problem, model, method, "
               "B0, LR, schedule, momentum, weight decay, epochs, seed and device need a new "
               "run.")


def _apply_hot(prefix: str, run_id: int, current: dict) -> None:
    sent_key = f"{prefix}_hot_sent_{run_id}"  # a repeated click must not resend the change
    sent = st.session_state.setdefault(sent_key, {})
    changes = {name: st.session_state[f"{prefix}_hot_{name}_{run_id}"] for name in HOT_FIELDS}
    changes = {k: v for k, v in changes.items() if v != current[k]}
    if not changes:
        st.session_state[f"{prefix}_control_message"] = ("info", "Nothing changed.")
        return
    if all(sent.get(k) == v for k, v in changes.items()):
        return  # already on its way
    try:
        jobs.request_hot_change(open_store(), run_id, **changes)
    except ValueError as error:
        st.session_state[f"{prefix}_control_message"] = (
            "error", f"Not sent to run #{run_id}: {error}")
        return
    sent.update(changes)
    summary = ", ".join(f"{k}={v}" for k, v in changes.items())
    st.session_state[f"{prefix}_control_message"] = (
        "success", f"Sent to run #{run_id}: {summary}.")
