"""Runs: every stored run; overlay, stop, resume, delete, export."""

import functools
import hashlib

import streamlit as st

from dashboard import follow, live, race_export, roles
from dashboard.critical_panel import critical_batch_panel
from dashboard.instructor import instructor_mode
from dashboard.store import open_store, run_rows
from divebatch.runs import queue, worker
from divebatch.report.exports import records_csv, records_json
from divebatch.report.figures import run_label
from divebatch.runs.store import ACTIVE_STATUSES, STATUSES


PREFIX = "runs"
# what tells runs apart first, so that it is in view at 1280 px; the rest scrolls
RUN_COLUMNS_SHOWN = ("run", "status", "method", "problem", "epochs", "final acc",
                     "final val loss", "train s to own-1pt", "duration s", "note", "name",
                     "group", "started")
RUN_COLUMN_CONFIG = {
    "run": st.column_config.NumberColumn(width=40),
    "status": st.column_config.TextColumn(width=85),
    "method": st.column_config.TextColumn(width=290),  # "DiveBatch (delta=0.1 -> 0.5, B 8 -> 1024)"
    "problem": st.column_config.TextColumn(width=105),  # least_squares
    "epochs": st.column_config.TextColumn(width=60),
    "final acc": st.column_config.NumberColumn(format="percent", width=70),
    "final val loss": st.column_config.NumberColumn(format="%.4g", width=85),
    "duration s": st.column_config.NumberColumn(format="%.1f", width=80),
    "train s to own-1pt": st.column_config.NumberColumn(format="%.2f", width=115),
    "note": st.column_config.TextColumn(width="large"),  # why a run failed, in words
    "group": st.column_config.TextColumn(width="small")}
# instructor mode's larger type (22 px, not 16): wider columns, and what a class asks first
INSTRUCTOR_COLUMNS_SHOWN = ("run", "status", "method", "epochs", "final acc", "note",
                            "train s to own-1pt", "final val loss", "duration s", "problem",
                            "name", "group", "started")
INSTRUCTOR_WIDTH_SCALE = 1.4


def run_table_columns() -> tuple[tuple[str, ...], dict]:
    """(column order, column config) of the runs table, for instructor mode or not."""
    if not instructor_mode():
        return RUN_COLUMNS_SHOWN, RUN_COLUMN_CONFIG
    return INSTRUCTOR_COLUMNS_SHOWN, {
        name: {**config, "width": round(config["width"] * INSTRUCTOR_WIDTH_SCALE)}
        if isinstance(config["width"], int) else config
        for name, config in RUN_COLUMN_CONFIG.items()}

FOLLOWING = (f"This selection follows the instructor: the next run or race they start "
             f"takes its place within {follow.FOLLOW_EVERY_S:g} s.")
FOLLOWING_STOPPED = "Your own pick: it stays when the instructor starts a new run or race."
FOLLOWING_HELP = (
    "On this read-only dashboard the selection follows the newest run or race the "
    "instructor starts while it holds what the page put there: the runs of the link you "
    "opened, the runs training when you opened the page, or a race it followed. Once you "
    "pick or untick runs yourself, in the table or the picker, they are yours and stay; "
    "reload the page to have it follow again.")

st.session_state.setdefault("runs_delete_message", None)

st.title("Runs")
roles.read_only_banner()
st.markdown("Every run in the store, newest first, whoever started it (a lab page, a race, a "
            "sweep or the command line). Pick runs to overlay, stop, delete or export them.")

store = open_store()
col_status, col_group = st.columns(2)
statuses = col_status.multiselect("Status", STATUSES, key="runs_status_filter",
                                  persist_state="session", placeholder="any status")
all_runs = store.list_runs(status=statuses or None)
groups = sorted({run["group"] for run in all_runs if run["group"]})
group = col_group.selectbox("Group", ["(any)", *groups], key="runs_group_filter",
                            persist_state="session", help="Races and sweeps share a group.")
runs = [run for run in all_runs if group == "(any)" or run["group"] == group]
following = False
if not roles.can_change():  # a class on the read-only twin: see FOLLOWING_HELP
    live.init_shown(PREFIX, runs)
    following = follow.follow_unless_picked(PREFIX, runs)
    if following:
        follow.look_for_newer(PREFIX, lambda: store.list_runs(
            status=statuses or None, group=None if group == "(any)" else group,
            limit=follow.RUNS_LOOKED_AT))


def table_key(ids: list[int]) -> str:
    """The table's key names the run ids of its rows: Streamlit keeps a table's ticks by row
    position, so a delete or a new run makes a new table, ticked on its runs' new rows."""
    return "runs_table_" + hashlib.sha1(repr(ids).encode()).hexdigest()[:12]


def rows_clicked(key: str, ids: list[int]) -> None:
    """Rows ticked in the table join the selected runs; rows unticked leave them (the
    picker below can also add and remove runs: only the table's own changes apply; the
    ticks of a drawn table are never set from here, which made the browser drop the
    picker's next choice)."""
    now = {ids[row] for row in st.session_state[key].selection.rows if row < len(ids)}
    before = st.session_state.get("runs_table_picked", set()) & set(ids)
    shown = [i for i in st.session_state.get("runs_shown", []) if i not in before - now]
    st.session_state.runs_shown = shown + sorted(now - before - set(shown))
    st.session_state.runs_table_picked = now


if not runs:
    st.info("No runs stored yet: start one on a lab page, or with "
            "`python -m divebatch run ...` (same store).")
else:
    ids = [run["id"] for run in runs]
    key = table_key(ids)
    order, column_config = run_table_columns()
    ticked = st.session_state.get("runs_table_picked", set()) & set(
        st.session_state.get("runs_shown", []))
    st.dataframe(run_rows(store, runs), hide_index=True, placeholder="—", width="stretch",
                 key=key, on_select=functools.partial(rows_clicked, key, ids),
                 selection_mode="multi-row", column_order=order,
                 selection_default={"selection": {
                     "rows": [row for row, run_id in enumerate(ids) if run_id in ticked]}},
                 column_config=column_config)
    st.caption("Tick rows to add runs to the selection below, untick them to take them out; "
               "the selection also holds the runs picked there or named by a link.")

picked = live.run_picker(PREFIX, runs, title="Selected runs (overlaid below)",
                         placeholder="Pick runs here or click rows of the table")
live.link_to(picked)
if not roles.can_change():
    st.caption(FOLLOWING if following else FOLLOWING_STOPPED, help=FOLLOWING_HELP)
by_id = {run["id"]: run for run in runs}
selected = [by_id[i] for i in picked if i in by_id]

message = st.session_state.runs_delete_message
if message:
    st.success(message)
    st.session_state.runs_delete_message = None


def delete_one(run_id: int) -> None:
    if not roles.require_instructor("delete"):
        return
    run_store = open_store()
    run_store.delete_run(run_id)
    worker.remove_run_files(run_store, [run_id])  # its checkpoint and worker log
    st.session_state.runs_shown = [i for i in st.session_state.runs_shown if i != run_id]
    st.session_state.runs_confirm_delete = False
    st.session_state.runs_delete_message = f"Deleted run #{run_id} and its records."


def resume_selected(run_ids: list[int]) -> None:
    if not roles.require_instructor("resume"):
        return
    run_store, notes = open_store(), []
    for run_id in run_ids:
        try:
            epoch = queue.resume(run_store, run_id)
            notes.append(("info", f"Run #{run_id} continues after epoch {epoch}." if epoch
                          else f"Run #{run_id} starts again from epoch 1 (no checkpoint)."))
        except ValueError as error:
            notes.append(("error", f"Run #{run_id} cannot be resumed: {error}"))
    st.session_state.runs_resume_notes = notes


def resume_and_delete(chosen: dict) -> None:
    """Resume or delete the one chosen run (instructor only)."""
    run_id = chosen["id"]
    col_resume, col_confirm, col_delete = st.columns([1, 3, 1], vertical_alignment="center")
    resumable = chosen["status"] in queue.RESUMABLE_STATUSES
    col_resume.button("Resume", key="runs_resume", disabled=not resumable,
                      width="stretch", on_click=resume_selected, args=([run_id],),
                      help="Continue an interrupted, failed or stopped run from its "
                           "last checkpoint.")
    finished = chosen["status"] not in ACTIVE_STATUSES
    confirmed = col_confirm.checkbox(
        f"Yes, delete run #{run_id} and all its records", key="runs_confirm_delete",
        disabled=not finished)
    col_delete.button("Delete", key="runs_delete", type="primary", width="stretch",
                      disabled=not (confirmed and finished), on_click=delete_one,
                      args=(run_id,))
    if not finished:
        st.caption("An active run is not deleted: stop it first (panel below).")


for kind, note in st.session_state.pop("runs_resume_notes", []):
    getattr(st, kind)(note)

if selected:
    with st.container(border=True):
        labels = {run["id"]: run_label(run) for run in selected}
        labels.update(live.hot_labels(list(labels)))  # as the legend: the values in force
        export_id = st.selectbox("Run to resume, delete or export" if roles.can_change()
                                 else "Run to export",
                                 list(labels), key="runs_export_run", format_func=labels.get)
        chosen = by_id[export_id]
        if roles.can_change():
            resume_and_delete(chosen)
        col_csv, col_json, _ = st.columns([1, 1, 3])
        # the files are made when a button is clicked, not on every page run
        col_csv.download_button("CSV (records)",
                                lambda: records_csv(store.records(export_id)),
                                file_name=f"divebatch-run-{export_id}.csv", mime="text/csv",
                                key="runs_csv", on_click="ignore", width="stretch")
        col_json.download_button(
            "JSON (config + records)",
            lambda: records_json(store.get_run(export_id) or chosen,
                                 store.records(export_id), store.events(export_id)),
            file_name=f"divebatch-run-{export_id}.json", mime="application/json",
            key="runs_json", on_click="ignore", width="stretch")
        st.caption("Each chart's camera button (top right of the chart) saves it as a PNG.")
        with st.expander("Config of this run"):
            st.json(chosen["config"], expanded=False)

st.header("Charts")
problems = sorted({run["config"].get("problem", "?") for run in selected})
if len(problems) > 1:
    st.warning(f"These runs are of different problems ({', '.join(problems)}): their times "
               f"to target and speed-ups do not compare with each other.")
if selected:
    live.live_panel(PREFIX, [run["id"] for run in selected])
    race_export.download_panel(PREFIX, [run["id"] for run in selected])
    critical_batch_panel(PREFIX, selected)
else:
    st.info("No run on the charts yet: pick runs in the list above to overlay them here.")
