"""dashboard.follow on the Runs page, through Streamlit's AppTest (a lab page's following is in
test_lab_panel): a viewer's selection that the page made follows the instructor's newest race;
one the viewer picked stays."""

import os

import pytest

from tests.helpers.apptest import open_app, texts

pytestmark = pytest.mark.usefixtures("no_workers_left_behind")

RECORD = {"samples_seen": 10, "step": 2, "train_time": 0.1, "batch_size": 8, "val_loss": 1.0,
          "train_loss": 1.0, "lr": 0.1}
CONFIG = {"problem": "least_squares", "method": "sgd", "epochs": 9, "batch_size": 8}


def race(store, time: str, status: str = "completed") -> list[int]:
    """Two runs of one race group, with an epoch each."""
    ids = []
    for batch_size in (8, 64):
        run_id = store.create_run({**CONFIG, "batch_size": batch_size},
                                  group=f"race least_squares seed 0 {time}")
        store.append_record(run_id, {"epoch": 1, **RECORD, "batch_size": batch_size})
        if status == "running":
            store.mark_running(run_id, os.getpid())  # this process stands in for its worker
        else:
            store.mark_finished(run_id, status)
        ids.append(run_id)
    return ids


def selection(at) -> list[int]:
    return at.multiselect(key="runs_shown").value


def test_a_viewer_on_a_race_link_follows_the_next_race_until_they_pick(store, monkeypatch):
    """A student who opened the link of a race stayed on its runs when the instructor
    started the next race (only the lab pages followed)."""
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    old = race(store, "10:00:00")
    at = open_app("app_pages/runs.py", query={"runs": ",".join(map(str, old))})
    assert selection(at) == old
    assert "This selection follows the instructor" in texts(at.caption)
    new = race(store, "10:05:00", status="running")
    try:
        at.run()  # the page's look for a newer race (FOLLOW_EVERY_S) reruns it
        assert selection(at) == new
        assert at.query_params["runs"] == ",".join(map(str, new))  # what a reload opens
        store.delete_run(new[1])  # the newest run gone: nothing older is followed, and
        at.run()                  # the page's own selection, less it, still follows
        assert selection(at) == [new[0]]
        assert "This selection follows the instructor" in texts(at.caption)
        at.multiselect(key="runs_shown").set_value(old).run()  # the viewer's own pick
        assert "Your own pick: it stays" in texts(at.caption)
        assert at.query_params["runs"] == ",".join(map(str, old))
        race(store, "10:10:00")
        at.run()
        assert selection(at) == old
    finally:
        store.mark_finished(new[0], "stopped")


def test_a_viewer_with_nothing_picked_follows_but_the_instructors_page_does_not(
        store, monkeypatch):
    race(store, "11:00:00")
    instructor = open_app("app_pages/runs.py")
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    viewer = open_app("app_pages/runs.py")
    assert selection(instructor) == selection(viewer) == []
    assert "runs" not in viewer.query_params
    new = race(store, "11:05:00")
    viewer.run()
    assert selection(viewer) == new
    monkeypatch.setenv("DIVEBATCH_ROLE", "instructor")
    instructor.run()
    assert selection(instructor) == []
    assert "follows the instructor" not in texts(instructor.caption)
