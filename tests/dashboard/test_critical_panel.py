"""The critical-batch panel on the Runs page (AppTest): start a measurement of a finished run,
follow it to its chart and sentence; a refused request shows one error line; a viewer gets
no control."""

import pytest

from divebatch.config import RunConfig
from divebatch.runs import worker
from divebatch.runs.measurements import Measurements
from tests.helpers.apptest import open_app, poll, texts

pytestmark = pytest.mark.usefixtures("no_workers_left_behind")

SMALL = RunConfig(problem="least_squares", n_samples=600, dim=8, method="sgd", epochs=2,
                  batch_size=8, max_batch_size=64, lr=0.05, momentum=0.0, keep_checkpoints=2,
                  diversity_every_epoch=False, device="cpu")


def finished(store, config: RunConfig) -> int:
    run_id = store.create_run(config.to_dict(), status="queued")
    worker.execute_run(store, run_id)
    return run_id


def test_measure_follow_and_draw(store):
    run_id = finished(store, SMALL)
    at = open_app("app_pages/runs.py", query={"runs": str(run_id)})
    assert "Not measured yet." in texts(at.info)
    at.button(key="runs_critical_start").click().run()
    assert not at.error, texts(at.error)
    measurements = Measurements(store)
    poll(at, lambda: measurements.of_run(run_id)[0]["status"] == "completed",
         "the measurement to complete")
    assert "Measurement #" in texts(at.caption) and "completed" in texts(at.caption)
    chart = at.get("plotly_chart")[-1]
    assert "critical batch size (measured)" in chart.proto.spec
    assert "The measured critical batch size was" in texts(at.markdown)


def test_a_run_without_checkpoints_gets_one_error_line(store):
    run_id = finished(store, SMALL.replace(keep_checkpoints=0))
    at = open_app("app_pages/runs.py", query={"runs": str(run_id)})
    at.button(key="runs_critical_start").click().run()
    assert texts(at.error).startswith("epochs: the run kept no checkpoint")
    assert Measurements(store).of_run(run_id) == []


def test_a_viewer_sees_no_measure_button(store, monkeypatch):
    run_id = finished(store, SMALL)
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    at = open_app("app_pages/runs.py", query={"runs": str(run_id)})
    assert "runs_critical_start" not in {getattr(b, "key", None) for b in at.button}


def test_a_measurement_under_way_says_so_not_start_one(store):
    """It said "Measurement #1: running" above "No critical batch size measured yet: start
    a measurement."."""
    from divebatch.experiments import critical_jobs
    run_id = store.create_run(SMALL.to_dict(), status="completed")
    Measurements(store).create(run_id, critical_jobs.KIND, {})  # queued: not started here
    at = open_app("app_pages/runs.py", query={"runs": str(run_id)})
    assert "Measurement #" in texts(at.caption) and "queued" in texts(at.caption)
    assert "Being measured" in texts(at.markdown)
    assert "start a measurement" not in texts(at.markdown)
