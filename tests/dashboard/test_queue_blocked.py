"""A run queued behind a paused one (one worker slot): the lab page, the Runs page and a
read-only viewer name the paused run and what frees its slot, in a warning above the charts
that the scroll after a Start lands on; once the run resumes, the plain queue line is back."""

import os

import pytest

from divebatch.runs import control_requests
from tests.helpers.apptest import open_app, texts

pytestmark = pytest.mark.usefixtures("no_workers_left_behind")

CONFIG = {"problem": "least_squares", "method": "sgd", "epochs": 5, "batch_size": 8}
RECORD = {"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "samples_seen": 10, "step": 1,
          "train_time": 0.1, "batch_size": 8, "lr": 0.1}


@pytest.fixture
def paused_and_queued(store, monkeypatch):
    """(paused, queued): a background run paused after epoch 1 on the only worker slot (this
    process stands in for its live worker) and a run queued after it."""
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", "1")
    paused = store.create_run(CONFIG)
    store.claim_next(lambda running, waiting: paused)  # a background run: it holds a slot
    store.mark_running(paused, os.getpid())
    store.append_record(paused, RECORD)
    store.set_progress(paused, {"epoch": 1, "paused": True})
    queued = store.create_run(CONFIG)
    yield paused, queued
    store.mark_finished(paused, "stopped")
    control_requests.request_stop(store, queued)


def keyed_blocks(node, key: str) -> list:
    """The containers under `node` made with st.container(key=key)."""
    found = []
    for child in getattr(node, "children", {}).values():
        if str(getattr(child.proto, "id", "")).endswith(f"-{key}"):  # Block protos have ids
            found.append(child)
        found += keyed_blocks(child, key)
    return found


def blocked_line(paused: int, queued: int) -> str:
    return (f"Queued: #{queued}. Its worker slot is held by #{paused}, paused after epoch 1: "
            f"Resume #{paused} to let it finish, or Stop it to free the slot now.")


def test_the_lab_page_names_the_paused_run_that_holds_the_slot(store, paused_and_queued):
    paused, queued = paused_and_queued
    at = open_app("app_pages/synthetic.py")
    assert at.multiselect(key="syn_shown").value == [queued, paused]  # the active runs
    assert blocked_line(paused, queued) in texts(at.warning)
    assert "Queued:" not in texts(at.info)
    [box] = keyed_blocks(at.main, "syn_queue_blocked")  # what the scroll after Start lands on
    assert blocked_line(paused, queued) in texts(box.get("warning"))
    store.set_progress(paused, {"epoch": 2, "paused": False})  # its worker resumed it
    at.run()
    assert not at.exception, at.exception
    assert "Queued:" not in texts(at.warning)
    assert f"Queued: #{queued}. 1 of 1 worker slot(s) are busy" in texts(at.info)


def test_the_runs_page_names_it_too(paused_and_queued):
    paused, queued = paused_and_queued
    at = open_app("app_pages/runs.py", query={"runs": f"{paused},{queued}"})
    assert not at.exception, at.exception
    assert blocked_line(paused, queued) in texts(at.warning)


def test_a_read_only_viewer_is_told_the_instructor_frees_it(paused_and_queued, monkeypatch):
    paused, queued = paused_and_queued
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    for page in ("app_pages/synthetic.py", "app_pages/runs.py"):
        at = open_app(page, query={"runs": f"{paused},{queued}"})
        assert not at.exception, at.exception
        warnings = texts(at.warning)
        assert (f"Queued: #{queued}. Its worker slot is held by #{paused}, paused after "
                f"epoch 1: #{queued} starts once the instructor resumes or stops "
                f"#{paused}.") in warnings, page
        assert "Resume #" not in warnings


def test_growing_charts_show_it_above_them_too(paused_and_queued, monkeypatch):
    """The path of a dashboard served by server.py: the charts grow in the browser, the line
    is in a fragment of its own that follows a Resume while the run waits."""
    from dashboard import live_route
    monkeypatch.setattr(live_route, "SERVED", True)
    monkeypatch.delenv("DIVEBATCH_LIVE_CHARTS", raising=False)
    paused, queued = paused_and_queued
    at = open_app("app_pages/synthetic.py")
    charts = {chart.key for chart in at.get("plotly_chart")}
    assert "syn_chart_preload" in charts and "syn_chart_legend" not in charts  # they grow
    [box] = keyed_blocks(at.main, "syn_queue_blocked")
    assert blocked_line(paused, queued) in texts(box.get("warning"))
