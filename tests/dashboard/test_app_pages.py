"""Every dashboard page through Streamlit's AppTest, widgets found by their keys.

Runs are real: the page queues them and `queue.dispatch` starts `python -m divebatch worker`
processes that write to the test's own store (DIVEBATCH_DB, set by conftest). Fragment timers
never fire in AppTest, so the tests poll with `at.run()` until a deadline.
"""

import json
import os
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from divebatch.runs import control_requests, queue, warm_pool
from divebatch.report import learn, learn_noise
from tests.helpers.apptest import open_app, poll, set_numbers, texts

TINY = {"n_samples": 400, "dim": 8, "batch_size": 16, "max_batch_size": 256}


pytestmark = pytest.mark.usefixtures("no_workers_left_behind")


def chart_notes(at: AppTest, index: int) -> list[str]:
    charts = at.get("plotly_chart")
    if len(charts) <= index:
        return []
    layout = json.loads(charts[index].proto.spec)["layout"]
    return [note.get("hovertext", note.get("text", "")) for note in layout.get("annotations", [])]


def test_home_says_what_each_page_is_for():
    at = open_app()
    assert at.title[0].value == "DiveBatch Lab"
    links = [link.proto.label for link in at.get("page_link")]
    assert any("Synthetic lab" in label for label in links)
    assert any("Runs" in label for label in links)
    assert at.toggle(key="instructor").value is False


@pytest.mark.parametrize("page,kind,key", [("app_pages/synthetic.py", "button", "syn_start"),
                                           ("app_pages/images.py", "button", "img_start"),
                                           ("app_pages/runs.py", "multiselect", "runs_shown")])
def test_every_page_renders_on_the_embedded_defaults(page, kind, key):
    at = open_app(page)
    getattr(at, kind)(key=key)  # KeyError if the widget is missing
    assert not at.error


def test_start_watch_hot_change_stop_and_delete(store):
    at = open_app("app_pages/synthetic.py")
    set_numbers(at, "syn", **TINY, epochs=5000, progress_every=0.2)
    at.button(key="syn_start").click().run()
    [run] = store.list_runs()
    run_id = run["id"]
    assert run["config"]["epochs"] == 5000 and run["config"]["n_samples"] == 400
    assert at.multiselect(key="syn_shown").value == [run_id]

    poll(at, lambda: len(store.records(run_id)) >= 2 and len(at.get("plotly_chart")) >= 4,
         "records and charts")
    at.number_input(key=f"syn_hot_delta_{run_id}").set_value(0.5)
    at.button(key="syn_hot_apply").click().run()
    assert f"Sent to run #{run_id}: delta=0.5" in texts(at.success)
    poll(at, lambda: any(n.startswith("delta ") and "→ 0.5 at epoch" in n
                         for n in chart_notes(at, 1)),  # 0: the shared legend
         "the worker to apply the hot change, and the diversity chart to say so")
    assert any(e["kind"] == "hot_change" for e in store.events(run_id))

    at.button(key="syn_stop").click().run()
    poll(at, lambda: store.get_run(run_id)["status"] == "stopped"
         and "idle" in texts(at.caption), "the run to stop and the panel to say idle")
    kept = len(store.records(run_id))

    at.switch_page("app_pages/runs.py").run()
    at.multiselect(key="runs_shown").set_value([run_id]).run()
    assert at.button(key="runs_delete").disabled  # not without the confirmation
    assert at.download_button(key="runs_csv") is not None
    at.checkbox(key="runs_confirm_delete").check().run()
    at.button(key="runs_delete").click().run()
    assert store.get_run(run_id) is None and kept >= 2
    assert f"Deleted run #{run_id}" in texts(at.success)


def test_delete_acts_on_one_run_and_mixed_problems_warn(store):
    config = {"method": "sgd", "epochs": 1}
    record = {"epoch": 1, "train_loss": 0.5, "val_loss": 0.5, "train_time": 0.1,
              "samples_seen": 10, "step": 1}
    ids = []
    for problem in ("least_squares", "sine"):
        ids.append(store.create_run({**config, "problem": problem}))
        store.append_record(ids[-1], record)
        store.mark_finished(ids[-1], "completed")
    at = open_app("app_pages/runs.py")
    assert "pick runs in the list above" in texts(at.info)
    assert "Start one above" not in texts(at.info)
    at.multiselect(key="runs_shown").set_value(ids).run()
    assert "different problems (least_squares, sine)" in texts(at.warning)
    at.selectbox(key="runs_export_run").set_value(ids[1]).run()
    at.checkbox(key="runs_confirm_delete").check().run()
    at.button(key="runs_delete").click().run()
    assert store.get_run(ids[1]) is None and store.get_run(ids[0]) is not None
    assert at.multiselect(key="runs_shown").value == [ids[0]]


def table_ticks(at: AppTest) -> list[int]:
    """The run ids of the rows the Runs table draws ticked."""
    [table] = at.dataframe
    rows = json.loads(table.proto.selection_default or '{"selection": {"rows": []}}')
    return [int(table.value["run"][row]) for row in rows["selection"]["rows"]]


def test_the_tables_ticks_follow_run_ids_after_a_delete_and_a_new_run(store):
    """Ticks are kept by row position: after deleting #2 of the ticked #3 and #2, run #1
    (now where #2 was) showed ticked while the selection held only #3."""
    config = {"method": "sgd", "epochs": 1, "problem": "least_squares"}
    ids = [store.create_run(config) for _ in range(3)]
    for run_id in ids:
        store.mark_finished(run_id, "completed")
    at = open_app("app_pages/runs.py")
    at.multiselect(key="runs_shown").set_value([ids[2], ids[1]]).run()
    at.session_state["runs_table_picked"] = {ids[2], ids[1]}  # as the table's ticks leave it
    at.run()
    assert table_ticks(at) == [ids[2], ids[1]]
    before = at.dataframe[0].key
    at.selectbox(key="runs_export_run").set_value(ids[1]).run()
    at.checkbox(key="runs_confirm_delete").check().run()
    at.button(key="runs_delete").click().run()
    assert at.dataframe[0].key != before  # a new table: Streamlit drops the old ticks
    assert table_ticks(at) == [ids[2]] and at.multiselect(key="runs_shown").value == [ids[2]]
    newer = store.create_run(config)  # a new run above moves every row down
    at.run()
    assert table_ticks(at) == [ids[2]] and list(at.dataframe[0].value["run"][:2]) == [
        newer, ids[2]]


def test_a_failed_runs_note_says_why(store):
    failed = store.create_run({"method": "sgd", "epochs": 1, "problem": "least_squares"})
    store.mark_finished(failed, "failed", "RuntimeError: CUDA out of memory\nTraceback ...")
    at = open_app("app_pages/runs.py")
    assert at.dataframe[0].value["note"][0] == "failed: RuntimeError: CUDA out of memory"


def test_instructor_mode_widens_the_runs_columns_for_its_larger_type(store):
    """At 22 px type the 16 px widths cut "completed" to "complete..." at 1280x720."""
    store.mark_finished(store.create_run({"problem": "least_squares"}), "completed")
    widths = {}
    for query in ({}, {"instructor": "1"}):
        at = open_app("app_pages/runs.py", query=query)
        columns = json.loads(at.dataframe[0].proto.columns)
        widths[bool(query)] = {name: columns[name]["width"] for name in ("status", "epochs")}
        order = list(at.dataframe[0].proto.column_order)
    assert widths[True]["status"] >= 1.4 * widths[False]["status"]
    assert widths[True]["epochs"] >= 1.4 * widths[False]["epochs"]
    assert order[:6] == ["run", "status", "method", "epochs", "final acc", "note"]


def test_step_by_step_pace_then_step_resume_and_pace_change(store):
    at = open_app("app_pages/synthetic.py")
    set_numbers(at, "syn", **TINY, epochs=6)
    at.button_group(key="syn_start_pace").set_value("step").run()
    at.button(key="syn_start").click().run()
    [run] = store.list_runs()
    run_id = run["id"]
    poll(at, lambda: control_requests.is_paused(store, run_id),
         "the run to pause after its first epoch")
    assert len(store.records(run_id)) == 1 and "paused after epoch 1" in texts(at.caption)
    at.button(key="syn_play_step").click().run()
    poll(at, lambda: len(store.records(run_id)) == 2 and control_requests.is_paused(store, run_id),
         "one more epoch, then paused again")
    at.selectbox(key=f"syn_play_pace_{run_id}").set_value("slow").run()
    at.button(key="syn_play_resume").click().run()
    # the worker takes the pace change and the resume in either order: wait for both
    poll(at, lambda: any(e["kind"] == "pace" for e in store.events(run_id))
         and not control_requests.is_paused(store, run_id), "the pace change and the resume")
    assert store.get_run(run_id)["status"] == "running"  # 3 s per epoch from now on


def test_race_overlays_four_methods_with_the_time_to_target_table(store, monkeypatch):
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", "4")  # worker start-up is mostly imports
    at = open_app("app_pages/synthetic.py")
    set_numbers(at, "syn", **TINY, epochs=3, seed=4)
    at.button(key="syn_race").click().run()
    # the verdict is about training time: the race shows that axis
    assert at.selectbox(key="syn_x_axis").value == "train_time"
    runs = store.list_runs()
    assert len(runs) == 4 and len({run["group"] for run in runs}) == 1
    assert {run["config"]["seed"] for run in runs} == {4}
    poll(at, lambda: all(r["status"] == "completed" for r in store.list_runs()),
         "the four race runs to complete")
    # the charts' own idle note, not the table (shown while runs train): until the charts
    # have drawn the finished runs, a snapshot up to 0.5 s old may still show some runs live
    # and without points (once, on a loaded CI machine: the batch-size chart a one-line note)
    poll(at, lambda: len(at.dataframe) == 2
         and "idle: no run on the charts is active" in texts(at.caption),
         "the time-to-target table and the charts of the finished race")
    table = at.dataframe[0].value
    assert [m.split(" ")[1] for m in table["method"]] == [  # '#2 SGD B=8', as the legend
        "SGD", "DiveBatch", "AdaBatch", "SGD"]
    assert all(m.startswith("#") for m in table["method"])
    assert list(table.columns) == ["method", "final val loss", "train s to common target",
                                   "speed-up"]
    assert table["speed-up"].iloc[0] == "1.00x (baseline)"
    assert "**Verdict:**" in texts(at.markdown)
    charts = {chart.key for chart in at.get("plotly_chart")}
    assert charts == {"syn_chart_legend", "syn_chart_diversity", "syn_chart_loss",
                      "syn_chart_batch_size", "syn_chart_effective_lr"}  # no accuracy chart
    assert "Seesaw" in texts(at.caption)  # the sentence under LR / B
    assert "in every epoch of every run shown" in texts(at.caption)  # LR: a line, no chart


@pytest.mark.parametrize("interleaves, note", [
    (True, "The 4 runs take turns in one worker, an epoch each, so all curves grow together; "
           "each run's training time counts only its own epochs."),
    (False, "This machine trains 1 run(s) at a time, so the 4 runs go one after another")])
def test_race_note_says_how_the_runs_share_the_machine(store, monkeypatch, interleaves, note):
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", "1")
    monkeypatch.setattr(warm_pool, "race_interleaves", lambda runs: interleaves)
    monkeypatch.setattr(queue, "dispatch", lambda store, limit=None: [])  # runs stay queued
    at = open_app("app_pages/synthetic.py")
    at.button(key="syn_race").click().run()
    assert note in texts(at.info)
    assert len(store.list_runs(status="queued")) == 4


def test_invalid_values_show_an_error_and_block_start():
    at = open_app("app_pages/synthetic.py")
    set_numbers(at, "syn", batch_size=64, max_batch_size=32)
    assert "max batch size B_max should be an int >= initial batch size B0 (64), but got max " \
           "batch size B_max=32" in texts(at.error)
    assert at.button(key="syn_start").disabled and at.button(key="syn_race").disabled
    set_numbers(at, "syn", max_batch_size=128)
    assert not at.error and not at.button(key="syn_start").disabled


def test_values_out_of_a_fields_range_reach_the_error_not_an_older_value(store):
    """The widgets take any number (a browser would otherwise refuse it silently and keep the
    last good one, which Start then ran): validation names each bad field by its label."""
    at = open_app("app_pages/synthetic.py")
    set_numbers(at, "syn", batch_size=-5, delta=0.0)
    error = texts(at.error)
    assert "initial batch size B0 should be an int >= 1" in error and "B0=-5" in error
    assert "delta δ should be a float > 0" in error
    assert at.button(key="syn_start").disabled and at.button(key="syn_race").disabled
    assert "Start and Race are off until the settings named" in texts(at.warning)
    assert store.list_runs() == []


def test_whole_number_fields_take_any_number_and_store_ints(store):
    """Whole-number fields are float inputs (the browser's int input refused numbers over
    2**53 itself and kept the last good one): a huge or fractional value reaches validation,
    and a whole one is stored as an int."""
    at = open_app("app_pages/synthetic.py")
    set_numbers(at, "syn", epochs=1e20, seed=2.5)
    error = texts(at.error)
    assert "epochs should be an int >= 1 and <= 100000, but got epochs=100000000000000000000" \
        in error and "seed should be an int >= 0" in error and "seed=2.5" in error
    assert at.button(key="syn_start").disabled
    set_numbers(at, "syn", **TINY, epochs=3.0, seed=7.0)
    assert not at.error
    at.button(key="syn_start").click().run()
    [run] = store.list_runs()
    assert run["config"]["epochs"] == 3 and type(run["config"]["seed"]) is int


def test_learn_links_diversity_noise_scale_and_critical_batch():
    at = open_app("app_pages/learn.py")
    at.slider(key="learn_w1").set_value(0.5).run()
    at.slider(key="learn_w2").set_value(-1.0).run()
    scales = learn_noise.noise_scales(learn.toy_problem(), (0.5, -1.0))
    shown = {metric.label: metric.value for metric in at.metric}
    assert shown["B_simple = n·Δ − 1"] == f"{scales.b_simple:.4g}"
    assert shown["critical batch B_noise"] == f"{scales.b_noise:.4g}"
    assert "learn_critical_chart" in {chart.key for chart in at.get("plotly_chart")}


def test_learn_links_its_setting_to_the_lab():
    at = open_app("app_pages/learn.py")
    at.slider(key="learn_delta").set_value(0.25).run()
    [button] = at.get("link_button")
    assert button.proto.url.startswith("synthetic?") and "delta=0.25" in button.proto.url
    assert "max_batch_size=64" in button.proto.url


def test_show_the_code_renders_the_deciding_function():
    at = open_app("app_pages/synthetic.py")
    code = texts(at.code)
    assert "def _next_batch_size" in code and "self.delta * self.n_samples" in code
    assert "DiversityMeter.diversity" in texts(at.caption)


def test_image_lab_shows_datasets_device_and_refuses_a_missing_dataset():
    at = open_app("app_pages/images.py")
    table = at.dataframe[0].value  # one short line per dataset: Start stays in view
    present = dict(zip(table["dataset"], table["present"]))
    assert present["digits"] == "yes" and present["cifar10"] == "missing"
    assert "python -m divebatch download cifar10" in texts(at.code)
    assert "CIFAR-10 not found: place the folder cifar-10-batches-py" in texts(at.markdown)
    assert at.metric[0].value == "CPU"
    at.selectbox(key="img_problem").set_value("cifar10").run()
    assert "cannot run here" in texts(at.error) and "CIFAR-10" in texts(at.error)
    assert at.button(key="img_start").disabled


def test_failures_are_shown_in_plain_words(store):
    """Diverged, failed, a dead worker, and a full queue, on the Runs page."""
    config = {"problem": "least_squares", "method": "sgd", "epochs": 3, "batch_size": 8}
    diverged = store.create_run(config)
    store.append_record(diverged, {"epoch": 1, "train_loss": float("nan"), "val_loss": 1.0,
                                   "samples_seen": 10, "step": 1, "train_time": 0.1})
    store.mark_finished(diverged, "diverged", "training loss became nan in epoch 1")
    failed = store.create_run(config)
    store.mark_finished(failed, "failed", "ValueError: out of memory")
    dead = store.create_run(config)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.mark_running(dead, gone.pid)
    busy = store.create_run(config)
    store.claim_next(lambda running, waiting: busy)  # a background run: it holds a slot
    store.mark_running(busy, os.getpid())  # alive: it holds the only worker slot
    queued = store.create_run(config)
    os.environ["DIVEBATCH_MAX_WORKERS"] = "1"
    try:
        at = open_app("app_pages/runs.py")
        at.multiselect(key="runs_shown").set_value([diverged, failed, dead, queued]).run()
        errors, warnings, infos = texts(at.error), texts(at.warning), texts(at.info)
        placeholders = [table.proto.placeholder for table in at.dataframe]
    finally:
        del os.environ["DIVEBATCH_MAX_WORKERS"]
        store.mark_finished(busy, "stopped")
        control_requests.request_stop(store, queued)
    assert f"#{diverged}" in errors and "diverged: training loss became nan" in errors
    assert "failed: ValueError: out of memory" in errors
    assert f"#{dead}" in warnings and "interrupted" in warnings
    assert store.get_run(dead)["status"] == "interrupted"
    assert f"Queued: #{queued}" in infos and "1 of 1 worker slot(s) are busy" in infos
    assert placeholders and set(placeholders) == {"—"}  # a run that never started: no "None"


def test_sidebar_counts_background_workers_and_lists_command_line_runs_apart(store):
    cli_run = store.create_run({"problem": "least_squares"}, status="running")
    store.mark_running(cli_run, os.getpid())  # `python -m divebatch run` in a terminal
    os.environ["DIVEBATCH_MAX_WORKERS"] = "1"
    try:
        at = open_app()
        caption = texts(at.sidebar.caption)
    finally:
        del os.environ["DIVEBATCH_MAX_WORKERS"]
        store.mark_finished(cli_run, "stopped")
    assert "Workers: 0 of 1 slot(s) busy" in caption
    assert f"running from the command line: #{cli_run}" in caption
