"""Sweep: a grid over delta, B_max and R (and seeds), each cell against fixed-batch SGD."""

import streamlit as st

from dashboard import race_export, roles
from dashboard.store import open_store
from dashboard.instructor import instructor_mode
from dashboard.experiment import (Experiments, backend_controls, chosen_backend,
                                  experiment_page)
from divebatch.report import sweep_figures as sweep_plots
from divebatch.report.figures import CHART_CONFIG
from divebatch.report.tables import why_it_ended
from divebatch.experiments import sweeps, verdicts
from divebatch.config import PROBLEMS
from divebatch.data.problems import check_available


FORM_DEFAULTS = {"sweep_problem": "classification", "sweep_epochs": 10,
                 "sweep_n_samples": 2000, "sweep_batch_size": 16, "sweep_lr": 0.05,
                 "sweep_deltas": "0.1, 0.5", "sweep_max_batch_sizes": "128, 512",
                 "sweep_resize_everys": "1", "sweep_seeds": "0"}  # 4 cells + 1 baseline
# RunConfig field -> the label of its widget here, which errors name
LABELS = {"problem": "problem", "epochs": "epochs", "n_samples": "samples",
          "batch_size": "initial batch size B0", "lr": "learning rate", "delta": "delta",
          "max_batch_size": "B_max", "resize_every": "R (epochs)", "seed": "seeds"}
INTRO = ("What if delta, the maximum batch size B_max or the resize interval R were different? "
         "Each cell of the grid is a DiveBatch run per seed, judged against SGD at the initial "
         "batch size with the same seed: **speed-up** is the baseline's training time to within "
         "1 point of its own final accuracy over the cell's. Runs go to the background queue "
         "(or a Ray cluster); re-running the same sweep reuses the runs that finished.")


def spec_from_form() -> sweeps.SweepSpec:
    base = {**sweeps.SWEEP_DEFAULTS, "problem": st.session_state.sweep_problem,
            "epochs": st.session_state.sweep_epochs,
            "n_samples": st.session_state.sweep_n_samples,
            "batch_size": st.session_state.sweep_batch_size, "lr": st.session_state.sweep_lr}
    spec = sweeps.SweepSpec(
        base=base,
        deltas=sweeps.parse_values(st.session_state.sweep_deltas, float, LABELS["delta"]),
        max_batch_sizes=sweeps.parse_values(st.session_state.sweep_max_batch_sizes, int,
                                            LABELS["max_batch_size"]),
        resize_everys=sweeps.parse_values(st.session_state.sweep_resize_everys, int,
                                          LABELS["resize_every"]),
        seeds=sweeps.parse_values(st.session_state.sweep_seeds, int, LABELS["seed"]))
    spec.validate(name_of=lambda name: LABELS.get(name, name))
    check_available(spec.baseline_config(spec.seeds[0]))
    return spec


def start_sweep() -> None:
    """on_click: runs before the script, so the click survives a rerun."""
    if not roles.require_instructor("sweep"):
        return
    try:
        spec = spec_from_form()
        queued = sweeps.launch(open_store(), spec, backend=chosen_backend("sweep"))
    except Exception as error:  # bad input or unavailable data: say so, keep the page
        st.session_state.sweep_message = ("error", str(error).replace("\n", "; "))
        return
    st.session_state.sweep_spec = spec.to_dict()
    planned = len(spec.plan())
    st.session_state.sweep_message = (
        "success", f"{spec.group}: queued {len(queued)} of {planned} runs"
        + (f" ({planned - len(queued)} reused)" if len(queued) < planned else ""))


def open_sweep(specs: dict) -> None:
    chosen = st.session_state.sweep_open
    if chosen in specs:
        st.session_state.sweep_spec = specs[chosen].to_dict()
        st.session_state.sweep_message = None


def sweep_form() -> None:
    with st.form("sweep_form", enter_to_submit=False):  # only Start starts a sweep
        left, middle, right = st.columns(3)
        left.selectbox("problem", PROBLEMS, key="sweep_problem")
        left.number_input("epochs", min_value=1, max_value=1000, step=1, key="sweep_epochs")
        middle.number_input(f"{LABELS['n_samples']} (synthetic; 0 = default)", min_value=0,
                            step=100,
                            key="sweep_n_samples")
        middle.number_input(f"{LABELS['batch_size']} (also the SGD baseline's)", min_value=1,
                            step=1, key="sweep_batch_size")
        right.number_input("learning rate", min_value=1e-5, max_value=10.0, format="%.4f",
                           key="sweep_lr")
        st.markdown("**Grid** (comma-separated values)")
        grid = st.columns(4)
        grid[0].text_input(LABELS["delta"], key="sweep_deltas")
        grid[1].text_input(LABELS["max_batch_size"], key="sweep_max_batch_sizes")
        grid[2].text_input(LABELS["resize_every"], key="sweep_resize_everys")
        grid[3].text_input(LABELS["seed"], key="sweep_seeds")
        backend_controls("sweep")
        st.form_submit_button("Start sweep", type="primary", key="sweep_start",
                              on_click=start_sweep)


def sweep_picker(earlier: list[sweeps.SweepSpec]) -> None:
    labels = {s.group: f"{s.group}: {s.base.get('problem')} delta {list(s.deltas)}, "
                       f"B_max {list(s.max_batch_sizes)}, R {list(s.resize_everys)}, "
                       f"seeds {list(s.seeds)}" for s in earlier}
    st.selectbox("or open a sweep", list(labels), format_func=labels.get, key="sweep_open",
                 index=None, placeholder="earlier sweeps", on_change=open_sweep,
                 args=({s.group: s for s in earlier},))


def draw_results(store, spec: sweeps.SweepSpec, result: sweeps.SweepResults) -> None:
    why_runs_failed(result)
    draw_heatmaps(spec, result)
    st.dataframe(sweeps.cell_table(result), key="sweep_table", hide_index=True,
                 placeholder="—", width="stretch")
    line = verdicts.sweep_verdict(result)
    if line:
        st.markdown(f"**Verdict:** {line}")
    draw_cell_curves(store, result)


def why_runs_failed(result: sweeps.SweepResults) -> None:
    """Under the progress line, which only counts them: each failed, diverged or interrupted
    run of the sweep, its cell and seed, and why (the first line of its stored error)."""
    labels = {row["cell"]: row["label"] for row in result.cells}
    lines = [f"- run #{run['id']} ({labels[planned.cell]}, seed {planned.config.seed}): "
             f"{why_it_ended(run)}" for planned, run in zip(result.spec.plan(), result.matched)
             if run and why_it_ended(run)]
    if lines:
        st.error(f"{len(lines)} run(s) of this sweep ended early (Start sweep redoes failed "
                 f"and interrupted runs; `divebatch show N` prints a run's whole error):\n\n"
                 + "\n".join(lines))


def draw_heatmaps(spec: sweeps.SweepSpec, result: sweeps.SweepResults) -> None:
    default_x, default_y = sweeps.default_axes(spec)
    st.session_state.setdefault("sweep_x", default_x)
    st.session_state.setdefault("sweep_y", default_y)
    names = sweep_plots.AXIS_TITLES
    controls = st.columns(4)
    x_field = controls[0].selectbox("x axis", sweeps.GRID_FIELDS, format_func=names.get,
                                    key="sweep_x")
    y_field = controls[1].selectbox("y axis", sweeps.GRID_FIELDS, format_func=names.get,
                                    key="sweep_y")
    if x_field == y_field:
        st.error("Pick two different grid fields for the heatmap axes.")
        return
    (other,) = [f for f in sweeps.GRID_FIELDS if f not in (x_field, y_field)]
    other_value = controls[2].selectbox(f"at {names[other]}", sweeps.grid_values(spec)[other],
                                        key=f"sweep_slice_{other}")
    controls[3].caption("Click a cell to see its curves below.")
    # a projector's larger type leaves a third of the page too narrow for a heatmap
    columns = [st.container()] * 3 if instructor_mode() else st.columns(3)
    for column, metric in zip(columns, sweep_plots.HEATMAP_METRICS):
        if not any(cell[metric] is not None for cell in result.cells
                   if cell["cell"] != sweeps.BASELINE):
            column.info(f"{sweep_plots.metric_title(metric, result.metric)}: waiting for "
                        f"the first finished run.")
            continue
        figure = sweep_plots.heatmap(result.cells, metric, x_field, y_field,
                                     {other: other_value}, result.metric)
        event = column.plotly_chart(figure, key=f"sweep_heatmap_{metric}", on_select="rerun",
                                    selection_mode="points", width="stretch",
                                    config=CHART_CONFIG)
        remember_click(event, f"sweep_heatmap_{metric}")


def remember_click(event, chart_key: str) -> None:
    """A new click on a heatmap picks that cell in the cell selector below."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    labels = [p.get("customdata") for p in points if p.get("customdata")]
    click = (chart_key, tuple(labels))
    if labels and click != st.session_state.sweep_seen_click:
        st.session_state.sweep_seen_click = click
        st.session_state.sweep_cell = labels[0]


def draw_cell_curves(store, result: sweeps.SweepResults) -> None:
    by_label = {row["label"]: row["cell"] for row in result.cells}
    labels = [label for label, cell in by_label.items() if cell != sweeps.BASELINE]
    if st.session_state.get("sweep_cell") not in labels:
        st.session_state.sweep_cell = labels[0]
    label = st.selectbox("cell", labels, key="sweep_cell")
    cell_ids = sweeps.runs_of_cell(result, by_label[label])
    baseline_ids = sweeps.runs_of_cell(result, sweeps.BASELINE)
    records = store.records_many(cell_ids + baseline_ids)
    runs = [{"label": f"{label} · run {run_id}", "records": records[run_id],
             "method": "divebatch"} for run_id in cell_ids]
    runs += [{"label": f"SGD baseline · run {run_id}", "records": records[run_id],
              "method": "sgd_small"} for run_id in baseline_ids]
    if not any(run["records"] for run in runs):
        st.info("This cell has no epochs recorded yet.")
        return
    st.plotly_chart(sweep_plots.curves(runs, result.metric), key="sweep_curves",
                    width="stretch", config=CHART_CONFIG)
    race_export.download_panel("sweep", baseline_ids + cell_ids)


experiment_page("sweep", Experiments(sweeps.SweepSpec.from_dict, sweeps.list_sweeps,
                                     sweeps.results),
                title="Sweep", intro=INTRO, defaults={**FORM_DEFAULTS, "sweep_seen_click": None},
                draw_form=sweep_form, empty_note="Set up a grid and press Start sweep.",
                progress_title=lambda spec: spec.group, stop_label="Stop sweep",
                redo_with="Start sweep", draw_results=draw_results, open_earlier=sweep_picker)
