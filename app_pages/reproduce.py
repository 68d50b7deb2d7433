"""Reproduce: the paper's comparison at this machine's scale, beside the published numbers."""

import streamlit as st

from dashboard import roles
from dashboard.store import open_store
from dashboard.experiment import (Experiments, backend_controls, chosen_backend,
                                  experiment_page)
from divebatch.experiments import claims, reproduce
from divebatch.report import reproduce_report, sweep_figures as sweep_plots
from divebatch.report.figures import CHART_CONFIG


CPU_BENCHMARKS = [key for key, b in reproduce.BENCHMARKS.items() if not b.needs_gpu]
FORM_DEFAULTS = {"repro_scale": "quick", "repro_seeds": 3, "repro_benchmarks": CPU_BENCHMARKS}
INTRO = ("DiveBatch against SGD at the small batch B0, SGD at the large batch B_max and "
         "AdaBatch, each with and without linear LR scaling, several seeds each, scaled down "
         "to what this machine can run. As in the paper, a method's time is its training time "
         "to within 1 point of its own final accuracy; we compare **speed-ups over SGD at B0** "
         "(seconds differ by machine) and **accuracy changes**, beside the paper's published "
         "numbers.")


def start_reproduction() -> None:
    """on_click: runs before the script, so the click survives a rerun."""
    if not roles.require_instructor("reproduce"):
        return
    spec = reproduce.ReproSpec(scale=st.session_state.repro_scale,
                               benchmarks=tuple(st.session_state.repro_benchmarks),
                               seeds=tuple(range(st.session_state.repro_seeds)))
    try:
        spec.validate()
        if not spec.runnable():
            raise ValueError("none of the chosen benchmarks can run here: "
                             + "; ".join(spec.skipped().values()))
        queued = reproduce.launch(open_store(), spec, backend=chosen_backend("repro"))
    except Exception as error:  # bad input: say so, keep the page
        st.session_state.repro_message = ("error", str(error).replace("\n", "; "))
        return
    st.session_state.repro_spec = spec.to_dict()
    st.session_state.repro_message = (
        "success", f"{spec.group}: queued {len(queued)} of {len(spec.plan())} runs")


def repro_form() -> None:
    with st.form("repro_form", enter_to_submit=False):  # only Start starts runs
        left, middle, right = st.columns([1, 1, 3])
        left.selectbox("scale", ("quick", "full"), key="repro_scale",
                       help="quick: a few minutes on 2 CPU cores (20 epochs); full: 50 "
                            "epochs on 4x the data, tens of minutes")
        middle.number_input("seeds", min_value=1, max_value=10, step=1, key="repro_seeds")
        right.multiselect("benchmarks", list(reproduce.BENCHMARKS), key="repro_benchmarks",
                          format_func=lambda key: reproduce.BENCHMARKS[key].title)
        backend_controls("repro")
        st.form_submit_button("Start", type="primary", key="repro_start",
                              on_click=start_reproduction)


def draw_results(store, spec: reproduce.ReproSpec, result: reproduce.ReproResults) -> None:
    counts = result.progress
    if result.skipped:
        st.info("Skipped here: " + "; ".join(reproduce_report.skipped_notes(result.skipped)) + ".")

    st.subheader("Side by side with the paper")
    st.table([{title: row.get(key, "") for key, title in reproduce_report.SIDE_BY_SIDE_COLUMNS}
              for row in reproduce_report.side_by_side(result)])
    st.subheader("Where we agree, and where we do not")
    badges = {True: ":green-badge[agrees]", False: ":red-badge[differs]",
              None: ":orange-badge[unclear]"}
    for finding in claims.findings(result):
        title = reproduce.BENCHMARKS[finding["benchmark"]].title
        badge = (":blue-badge[differs: no accuracy loss]" if finding["favourable"]
                 else badges[finding["agrees"]])
        st.markdown(f"{badge} **{title}**: {finding['claim']}? "
                    f"Paper: {finding['paper']}. Ours: {finding['ours']}.")
    st.markdown("**Why**\n" + "\n".join(f"- {reproduce_report.why_line(result, key)}"
                                         for key in result.benchmarks()))
    st.plotly_chart(sweep_plots.method_bars(result, "speedup"), key="repro_speedups",
                    width="stretch", config=CHART_CONFIG)
    st.plotly_chart(sweep_plots.method_bars(result, "final_change"), key="repro_changes",
                    width="stretch", config=CHART_CONFIG)
    draw_curves(store, spec, result)
    st.subheader("Every method")
    st.dataframe(reproduce_report.detail(result), key="repro_detail", hide_index=True,
                 placeholder="—", column_config=dict(reproduce_report.DETAIL_COLUMNS))
    if result.done and counts["finished"]:
        documents = reproduce_report.report_documents  # called only when a button is pressed
        buttons = st.columns(len(reproduce_report.REPORT_NAMES))
        for column, name in zip(buttons, reproduce_report.REPORT_NAMES):
            column.download_button(f"Download {name}", key=f"repro_download_{name}",
                                   data=lambda name=name: documents(store, result)[name],
                                   file_name=name)
        st.caption("`python -m divebatch reproduce` writes the same report to reports/.")


def draw_curves(store, spec: reproduce.ReproSpec, result: reproduce.ReproResults) -> None:
    benchmarks = result.benchmarks()
    if not benchmarks:
        return
    left, right = st.columns(2)
    key = left.selectbox("curves of", benchmarks, key="repro_curves_benchmark",
                         format_func=lambda k: reproduce.BENCHMARKS[k].title)
    seed = right.selectbox("seed", spec.seeds, key="repro_curves_seed")
    runs = reproduce.curves_records(store, result, seed).get(key, [])
    if runs:
        st.plotly_chart(sweep_plots.curves([{"label": label, "records": records}
                                            for label, records in runs]),
                        key="repro_curves", width="stretch", config=CHART_CONFIG)


experiment_page("repro", Experiments(reproduce.ReproSpec.from_dict,
                                     reproduce.list_reproductions, reproduce.results),
                title="Reproduce the paper", intro=INTRO, defaults=FORM_DEFAULTS,
                draw_form=repro_form,
                empty_note="Choose a scale, seeds and benchmarks, then press Start. The quick "
                           "scale takes a few minutes on a laptop CPU.",
                progress_title=lambda spec: (f"{spec.group} ({spec.scale}, seeds "
                                             f"{list(spec.seeds)})"),
                stop_label="Stop", redo_with="Start", draw_results=draw_results)
