"""The Learn, Sweep and Reproduce pages through AppTest, widgets found by their keys.

The sweep runs are real: the page queues them and `queue.dispatch` starts worker processes
writing to the test's own store. Fragment timers never fire in AppTest, so the test polls
`at.run()`.
"""

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from divebatch.report import learn
from divebatch.runs import warm_pool
from divebatch.experiments import reproduce

APP = str(Path(__file__).resolve().parents[2] / "app.py")
DEADLINE_S = 120


pytestmark = pytest.mark.usefixtures("no_workers_left_behind")


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_learn_page_numbers_agree_with_the_library():
    at = open_page("app_pages/learn.py")
    for w in ((-2.0, 2.0), (0.5, -1.0), (2.5, 0.25)):
        at.slider(key="learn_w1").set_value(w[0])
        at.slider(key="learn_w2").set_value(w[1]).run()
        assert not at.exception and not at.error
        problem = learn.toy_problem()
        expected = learn.library_diversity(problem, w)
        assert float(metric(at, "Δ")) == pytest.approx(expected, rel=1e-3)
        assert float(metric(at, "Yin's bound n·Δ")) == pytest.approx(6 * expected, rel=1e-3)
        identity = {row["quantity"]: row["value"] for row in at.table[0].value.to_dict("records")}
        assert float(identity["n·Δ (library gradient_diversity)"]) == pytest.approx(
            float(identity["1 + tr(Σ)/‖G‖², Σ with 1/n"]), rel=1e-9)
    at.number_input(key="learn_b_old").set_value(8)
    at.number_input(key="learn_b_max").set_value(4).run()
    assert not at.exception and "B_max should be at least B_old" in at.error[0].value
    at.number_input(key="learn_b_max").set_value(64).run()
    assert not at.error
    assert int(metric(at, "B_new at w")) == learn.next_batch_size(
        learn.library_diversity(learn.toy_problem(), (2.5, 0.25)), 6, 0.5, 8, 64)
    assert any("def gradient_diversity" in code.value for code in at.code)


def test_sweep_page_runs_a_two_by_two_sweep_with_two_seeds(store, monkeypatch):
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", "2")
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "2")  # ten runs, two torch imports
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two workers on two cores: no spinning threads
    try:
        sweep_two_by_two_with_two_seeds(store)
    finally:
        warm_pool.stop_warm_workers(store)


def sweep_two_by_two_with_two_seeds(store):
    at = open_page("app_pages/sweep.py")
    at.text_input(key="sweep_deltas").set_value("0.1, nonsense")
    at.button(key="sweep_start").click().run()
    assert not at.exception and "delta should be a list of numbers" in at.error[0].value
    at.text_input(key="sweep_deltas").set_value("0.1")
    at.text_input(key="sweep_max_batch_sizes").set_value("4")
    at.button(key="sweep_start").click().run()  # errors name the fields by their labels
    assert not at.exception and at.error[0].value.startswith(
        "B_max should be an int >= initial batch size B0 (16), but got B_max=4")

    at.selectbox(key="sweep_problem").set_value("least_squares")
    for key, value in (("sweep_epochs", 3), ("sweep_n_samples", 320),
                       ("sweep_batch_size", 16)):
        at.number_input(key=key).set_value(value)
    for key, value in (("sweep_deltas", "0.1, 1"), ("sweep_max_batch_sizes", "64, 256"),
                       ("sweep_resize_everys", "1"), ("sweep_seeds", "0, 1")):
        at.text_input(key=key).set_value(value)
    at.button(key="sweep_start").click().run()
    assert not at.exception and not at.error
    assert "queued 10 of 10 runs" in at.success[0].value
    assert any("waiting for the first finished run" in info.value for info in at.info)

    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        if len(store.list_runs(status="completed")) == 10:
            break
        time.sleep(0.5)
    at.run()
    assert "10 of 10 runs finished" in at.get("progress")[0].proto.text
    table = at.dataframe[0].value
    assert len(table) == 5 and table["finished"].tolist() == ["2/2"] * 5
    assert table["speed-up"].notna().all()
    assert len(at.get("plotly_chart")) >= 4  # three heatmaps and the curves
    at.selectbox(key="sweep_cell").set_value("delta=1, B_max=256, R=1").run()
    assert not at.exception
    assert at.button(key="sweep_stop").disabled  # nothing left to stop


def test_reproduce_page_shows_a_finished_reproduction(store):
    spec = reproduce.ReproSpec(scale="tiny", benchmarks=("convex", "cifar10"), seeds=(0,))
    reproduce.run_here(store, spec)
    at = open_page("app_pages/reproduce.py")
    assert not at.exception
    assert "7 of 7 runs finished" in at.get("progress")[0].proto.text
    side = at.table[0].value
    assert side["source"].tolist() == ["paper"] * 3 + ["ours"]
    assert any(info.value.startswith("Skipped here: CIFAR-10") for info in at.info)
    texts = " ".join(m.value for m in at.markdown)
    assert "DiveBatch is faster than SGD at the small batch?" in texts
    assert "Measuring diversity took" in texts  # the "why" line names the meter's share
    assert len(at.get("plotly_chart")) == 3

    at.multiselect(key="repro_benchmarks").set_value([])
    at.button(key="repro_start").click().run()
    assert not at.exception and "benchmarks should be some of" in at.error[0].value


def test_reproduce_page_while_no_run_has_finished_shows_no_exception(store):
    """A reproduction whose runs are all still queued (a benchmark with no finished run)
    draws its progress and 'no finished runs yet', never an exception."""
    spec = reproduce.ReproSpec(scale="tiny", benchmarks=("convex",), seeds=(0,))
    for planned in spec.plan():
        run_id = store.create_run(planned.config.to_dict(), name=planned.config.name,
                                  group=spec.group)
        store.update_info(run_id, reproduce=spec.to_dict())
    at = open_page("app_pages/reproduce.py")
    assert not at.exception, at.exception
    assert "0 of" in at.get("progress")[0].proto.text
    texts = " ".join(m.value for m in at.markdown)
    assert "Ours: no finished runs yet" in texts
    store.delete_runs()  # no worker is left to start them


def test_a_heatmap_whose_colours_span_under_one_point_says_so():
    from divebatch.report import sweep_figures as sweep_plots

    def cell(delta: float, final: float) -> dict:
        return {"cell": f"d{delta}", "label": f"delta={delta}", "delta": delta,
                "max_batch_size": 64, "resize_every": 1, "final": final, "final_se": None,
                "finished": 1, "planned": 1}
    narrow = sweep_plots.heatmap([cell(0.1, 0.901), cell(0.5, 0.905)], "final", "delta",
                                 "max_batch_size")
    wide = sweep_plots.heatmap([cell(0.1, 0.80), cell(0.5, 0.90)], "final", "delta",
                               "max_batch_size")
    assert "all cells within 0.40 points" in narrow.layout.title.text
    assert "within" not in wide.layout.title.text


def forms(block) -> list:
    """The st.form blocks under `block` (AppTest has no accessor for them)."""
    found = [block] if getattr(block, "type", None) == "form" else []
    for child in getattr(block, "children", {}).values():
        found += forms(child)
    return found


@pytest.mark.parametrize("page,form_key", [("app_pages/sweep.py", "sweep_form"),
                                           ("app_pages/reproduce.py", "repro_form")])
def test_enter_in_a_field_does_not_submit_the_start_form(page, form_key):
    """A browser submits a form on Enter in any of its fields (four Enters were four
    sweeps): only the Start button starts runs."""
    at = open_page(page)
    [form] = forms(at.main)
    assert form.proto.form.form_id == form_key
    assert form.proto.form.enter_to_submit is False


def test_a_sweeps_failed_runs_say_why_under_its_progress(store):
    from divebatch.experiments import sweeps
    spec = sweeps.SweepSpec(base={**sweeps.SWEEP_DEFAULTS, "problem": "least_squares",
                                  "epochs": 2}, deltas=(0.1,), max_batch_sizes=(64,),
                            resize_everys=(1,), seeds=(0,))
    ids = []
    for planned in spec.plan():  # the baseline, then the one cell
        ids.append(store.create_run(planned.config.to_dict(), name=planned.config.name,
                                    group=spec.group))
        store.update_info(ids[-1], sweep=spec.to_dict())
    store.mark_finished(ids[0], "stopped")
    store.mark_finished(ids[1], "failed", "ValueError: B_max too large\nTraceback (...)")
    at = open_page("app_pages/sweep.py")
    assert "2 stopped or failed" in at.get("progress")[0].proto.text
    [error] = at.error
    assert (f"run #{ids[1]} (delta=0.1, B_max=64, R=1, seed 0): failed: ValueError: B_max "
            f"too large") in error.value
    assert "Traceback" not in error.value and f"#{ids[0]}" not in error.value
