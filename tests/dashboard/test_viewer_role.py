"""The read-only viewer role (DIVEBATCH_ROLE=viewer) through Streamlit's AppTest: every control
that changes something is hidden, and each mutating callback refuses when invoked anyway."""

import os

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers.apptest import open_app, texts

pytestmark = pytest.mark.usefixtures("no_workers_left_behind")


MUTATING = {"app_pages/synthetic.py": ("syn_start", "syn_race", "syn_load_preset"),
            "app_pages/runs.py": ("runs_stop", "runs_stop_all", "runs_hot_apply", "runs_resume",
                              "runs_delete"),
            "app_pages/sweep.py": ("sweep_start",), "app_pages/reproduce.py": ("repro_start",)}


@pytest.fixture
def watched_runs(store):
    """A running DiveBatch run (this process stands in for its live worker) and a stopped
    one; the running one is marked finished afterwards so no test waits for it."""
    config = {"problem": "least_squares", "method": "divebatch", "epochs": 9, "batch_size": 8}
    running, stopped = store.create_run(config), store.create_run(config)
    for run_id in (running, stopped):
        store.append_record(run_id, {"epoch": 1, "samples_seen": 10, "step": 2,
                                     "train_time": 0.1, "batch_size": 8, "val_loss": 1.0,
                                     "train_loss": 1.0, "lr": 0.1, "delta": 0.1})
    store.mark_running(running, os.getpid())
    store.mark_finished(stopped, "stopped")
    yield running, stopped
    store.mark_finished(running, "stopped")


def keys_on(at: AppTest) -> set:
    return {getattr(w, "key", None) for kind in ("button", "form_submit_button", "checkbox")
            for w in getattr(at, kind)}


def test_viewer_role_hides_every_control_that_changes_something(watched_runs, monkeypatch):
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    for page, keys in MUTATING.items():
        at = open_app(page, query={"runs": ",".join(map(str, watched_runs))})
        if page == "app_pages/runs.py":
            assert at.multiselect(key="runs_shown").value == list(watched_runs)  # the link
            assert at.download_button(key="runs_csv") is not None  # export stays
        assert not set(keys) & keys_on(at), page
        assert "Read-only dashboard" in texts(at.info) + texts(at.caption)


def test_viewer_role_refuses_each_mutating_callback_when_invoked(store, watched_runs,
                                                                 monkeypatch):
    """Each control is drawn for the instructor, then the server turns read-only before the
    click arrives, as a crafted request to a viewer's server would: nothing changes."""
    running, stopped = watched_runs
    before = [(run["id"], run["status"]) for run in store.list_runs()]
    for page, keys in MUTATING.items():
        for key in set(keys) - {"runs_stop_all"}:  # the same callback as runs_stop
            monkeypatch.delenv("DIVEBATCH_ROLE", raising=False)
            at = open_app(page)
            if page == "app_pages/runs.py":
                at.multiselect(key="runs_shown").set_value([running, stopped]).run()
                # resume and delete act on the one chosen run; an active one is not deletable
                at.selectbox(key="runs_export_run").set_value(stopped).run()
                at.checkbox(key="runs_confirm_delete").check().run()
                at.number_input(key=f"runs_hot_delta_{running}").set_value(0.5).run()
            widget = at.get_by_key(key)
            monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
            widget.click().run()
            if key != "syn_load_preset":  # only loads the form: allowed, not a change
                assert at.session_state["refused_action"], key
    assert [(run["id"], run["status"]) for run in store.list_runs()] == before
    assert store.take_controls(running) == []  # no stop, no hot change reached the run
