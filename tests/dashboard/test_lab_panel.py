"""What the lab pages and the Runs page show on opening, through Streamlit's AppTest: pickers
named with the hot values in force, a lab's last race back on the charts, and a link's runs
in the Runs page's selection."""

import os

import pytest

from tests.helpers.apptest import open_app, poll, set_numbers, texts

pytestmark = pytest.mark.usefixtures("no_workers_left_behind")

RECORD = {"samples_seen": 10, "step": 2, "train_time": 0.1, "batch_size": 8, "val_loss": 1.0,
          "train_loss": 1.0, "lr": 0.1, "delta": 0.02}
CONFIG = {"problem": "least_squares", "method": "divebatch", "epochs": 9, "batch_size": 8,
          "delta": 0.02}


def stored(store, status="completed", group="", config=CONFIG) -> int:
    run_id = store.create_run(config, group=group)
    store.append_record(run_id, {"epoch": 1, **RECORD})
    if status == "running":
        store.mark_running(run_id, os.getpid())  # this process stands in for its worker
    else:
        store.mark_finished(run_id, status)
    return run_id


def test_pickers_name_a_run_with_its_hot_values(store):
    """delta 0.02 -> 0.05 sent to a running run: the legend said delta=0.05, the pickers
    still said delta=0.02."""
    run_id = stored(store, "running")
    store.add_event(run_id, "hot_change", "changed delta=0.05", epoch=1,
                    payload={"delta": 0.05})
    try:
        at = open_app("app_pages/synthetic.py")
        picker = at.multiselect(key="syn_shown")
        assert picker.value == [run_id]
        assert f"#{run_id} DiveBatch (delta=0.02 -> 0.05)" in picker.options
        assert at.selectbox(key="syn_control_run").options == [
            f"#{run_id} DiveBatch (delta=0.02 -> 0.05)"]
    finally:
        store.mark_finished(run_id, "stopped")


def test_a_lab_shows_its_last_race_once_finished(store):
    stored(store)  # an older lone run
    race = [stored(store, group="race least_squares seed 0 10:55:50",
                   config={**CONFIG, "method": method}) for method in ("divebatch", "sgd")]
    at = open_app("app_pages/synthetic.py")
    assert at.multiselect(key="syn_shown").value == race
    assert "Your last race (2 runs) here, finished" in texts(at.info)
    assert "No run on the charts yet" not in texts(at.info)
    at.multiselect(key="syn_shown").set_value([race[0]]).run()
    assert "Your last race" not in texts(at.info)  # the viewer's own pick: no note


def test_start_after_a_race_takes_its_place_but_a_lone_run_stays_beside_the_new_one(store):
    """A run started after a race joined the race's four on the charts, in its verdict and
    table; a lone run shown stays beside a new one (to compare a "what if")."""
    race = [stored(store, group="race least_squares seed 0 10:55:50",
                   config={**CONFIG, "method": method}) for method in ("divebatch", "sgd")]
    at = open_app("app_pages/synthetic.py")
    assert at.multiselect(key="syn_shown").value == race
    set_numbers(at, "syn", n_samples=400, dim=8, batch_size=16, max_batch_size=256, epochs=2)
    at.button(key="syn_start").click().run()
    first = max(run["id"] for run in store.list_runs())
    assert at.multiselect(key="syn_shown").value == [first]
    at.button(key="syn_start").click().run()
    second = max(run["id"] for run in store.list_runs())
    assert at.multiselect(key="syn_shown").value == [first, second]


def test_a_race_watched_to_its_end_gets_no_note(store):
    """The note is for a session that opens on a finished race; under a race it watched, it
    would push the charts below a projector's window once the race ends."""
    race = [stored(store, status="running", group="race least_squares seed 0 11:00:00",
                   config={**CONFIG, "method": method}) for method in ("divebatch", "sgd")]
    at = open_app("app_pages/synthetic.py")
    assert sorted(at.multiselect(key="syn_shown").value) == race
    at.multiselect(key="syn_shown").set_value(race).run()  # as Start puts them
    for run_id in race:
        store.mark_finished(run_id, "completed")
    at.run()
    assert at.multiselect(key="syn_shown").value == race
    assert "Your last race" not in texts(at.info)


@pytest.mark.parametrize("role, watches", [("instructor", True), ("viewer", False)])
def test_a_page_opened_on_a_race_lands_on_its_verdict_only_for_the_instructor(
        store, monkeypatch, role, watches):
    """An instructor who reloaded during a race never landed on its verdict (landing followed
    a Start in the same page): a page that opens on runs training counts as their start, in
    the browser too (a `watch` request); a viewer's page still never moves."""
    monkeypatch.setenv("DIVEBATCH_ROLE", role)
    race = [stored(store, status="running", group="race least_squares seed 0 12:00:00",
                   config={**CONFIG, "method": method}) for method in ("divebatch", "sgd")]
    try:
        at = open_app("app_pages/synthetic.py")
        watch = [html for html in at.get("html") if '"watch": true' in html.proto.body]
        assert bool(watch) is watches
        assert ("syn_scroll_start" in at.session_state) is watches
    finally:
        for run_id in race:
            store.mark_finished(run_id, "stopped")


def test_a_viewer_follows_the_newest_race_and_is_never_told_to_start_one(store, monkeypatch):
    """The read-only twin kept the old race on its charts after the instructor started a new
    one (only a reload showed it) and told the class to 'start a new one above'."""
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    old = [stored(store, group="race least_squares seed 0 10:00:00",
                  config={**CONFIG, "method": method}) for method in ("divebatch", "sgd")]
    at = open_app("app_pages/synthetic.py")
    assert at.multiselect(key="syn_shown").value == old
    assert "The last race (2 runs) here, finished: this page shows the next one the " \
           "instructor starts." in texts(at.info)
    assert "start a new one" not in texts(at.info).lower()
    new = [stored(store, status="running", group="race least_squares seed 0 10:05:00",
                  config={**CONFIG, "method": method}) for method in ("divebatch", "sgd")]
    try:
        at.run()  # the page's look for a newer race (FOLLOW_EVERY_S) reruns it
        assert at.multiselect(key="syn_shown").value == new
        assert "The last race" not in texts(at.info)
        at.multiselect(key="syn_shown").set_value(old).run()  # the viewer's own pick stays
        at.run()
        assert at.multiselect(key="syn_shown").value == old
    finally:
        for run_id in new:
            store.mark_finished(run_id, "stopped")


def test_a_lab_with_no_run_of_its_problems_shows_none(store):
    stored(store, config={**CONFIG, "problem": "digits"})  # an image lab's run
    at = open_app("app_pages/synthetic.py")
    assert at.multiselect(key="syn_shown").value == []
    assert "No run on the charts yet" in texts(at.info)


def test_a_links_runs_are_selected_and_the_table_says_how_ticks_add_to_them(store):
    """The table's ticks are the rows clicked, never set from the code (a browser then
    dropped the picker's next choice: test_e2e_browser's export); a link's runs are in the
    picker, and the caption under the table says so."""
    ids = [stored(store) for _ in range(4)]
    at = open_app("app_pages/runs.py", query={"runs": f"{ids[3]},{ids[1]}"})
    assert at.multiselect(key="runs_shown").value == [ids[3], ids[1]]
    assert "the selection also holds the runs picked there or named by a link" \
        in texts(at.caption)
    assert [b.label for b in at.get("download_button")][:2] == ["CSV (records)",
                                                                "JSON (config + records)"]


def test_a_run_started_after_reopening_a_finished_race_is_never_called_finished(store):
    """Opened on its last race (finished), then Start with step by step: the new run, paused
    after epoch 1, took the race's place and the note said 'Your last run here, finished'."""
    [stored(store, group="race least_squares seed 0 13:00:00",
            config={**CONFIG, "method": method}) for method in ("divebatch", "sgd")]
    at = open_app("app_pages/synthetic.py")
    assert "Your last race (2 runs) here, finished" in texts(at.info)
    set_numbers(at, "syn", n_samples=400, dim=8, batch_size=16, max_batch_size=256, epochs=3)
    at.button(key="syn_start").click().run()
    assert "Your last" not in texts(at.info)
    poll(at, lambda: store.list_runs()[0]["status"] == "completed", "the new run's end")
    assert "Your last" not in texts(at.info)
