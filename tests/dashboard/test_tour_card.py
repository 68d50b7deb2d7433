"""The guided tour's card through AppTest, on a run whose records and events are written by
hand (no worker): the instructor's card shows the reached step and moves it, drives the
paused run to the next moment, and a read-only server shows the same step without buttons."""

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

from divebatch.presets import PRESETS
from divebatch.report import tour
from divebatch.runs.store import RunStore

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "app_pages/synthetic.py"


def toured_run(store: RunStore) -> int:
    """A running run of the tour preset, paused after epoch 2: start and diversity reached."""
    config = PRESETS[tour.TOUR_PRESET].config().to_dict()
    run_id = store.create_run(config, name="Guided tour", status="running")
    store.mark_running(run_id, os.getpid())
    store.update_info(run_id, n_train=3200)
    for epoch, diversity, loss in ((1, 0.17, 0.058), (2, 0.98, 0.0052)):
        store.append_record(run_id, {"epoch": epoch, "step": 400 * epoch, "batch_size": 8,
                                     "diversity": diversity, "train_loss": loss,
                                     "val_loss": loss, "samples_seen": 3200 * epoch,
                                     "train_time": 0.1 * epoch, "lr": 0.02})
    store.set_progress(run_id, {"epoch": 2, "paused": True})
    store.set_tour("syn", {"run_id": run_id, "index": 0, "stepped_after": None})
    return run_id


def open_lab() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def card_text(at: AppTest) -> str:
    return " ".join(m.value for m in at.sidebar.markdown)


def test_the_instructor_moves_the_tour_and_drives_the_run_to_the_next_moment(isolated_store):
    store = RunStore(isolated_store)
    run_id = toured_run(store)
    at = open_lab()
    assert "step 1 of 5" in card_text(at) and "Start small" in card_text(at)
    assert at.session_state["syn_shown"] == [run_id]  # the toured run is on the charts
    assert at.button(key="syn_tour_back").disabled
    at.button(key="syn_tour_next").click().run()
    assert "Diversity rises as the loss falls" in card_text(at)
    assert store.get_tour("syn")["index"] == 1
    at.button(key="syn_tour_next").click().run()  # the batch has not grown yet: step once
    assert "trains on to the next step" in " ".join(c.value for c in at.sidebar.caption)
    assert [c["kind"] for c in store.take_controls(run_id)] == ["step"]
    assert store.get_tour("syn")["stepped_after"] == 2
    at.run()  # still paused after epoch 2: the step is not sent twice
    assert store.take_controls(run_id) == []
    at.button(key="syn_tour_back").click().run()
    assert "Diversity rises" in card_text(at)
    at.button(key="syn_tour_leave").click().run()
    assert store.get_tour("syn") is None
    assert [c["kind"] for c in store.take_controls(run_id)] == ["resume"]
    assert at.button(key="syn_tour_start")  # the invitation again
    assert not at.exception


def test_a_viewer_sees_the_instructors_step_and_cannot_move_it(isolated_store, monkeypatch):
    store = RunStore(isolated_store)
    run_id = toured_run(store)
    store.set_tour("syn", {"run_id": run_id, "index": 1, "stepped_after": None})
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    at = open_lab()
    assert "step 2 of 5" in card_text(at) and "Diversity rises" in card_text(at)
    assert not [b for b in at.sidebar.button if b.key and b.key.startswith("syn_tour")]
    store.set_tour("syn", {"run_id": run_id, "index": 0, "stepped_after": None})
    at.run()  # the next refresh follows the instructor
    assert "Start small" in card_text(at)
    assert store.take_controls(run_id) == []  # a viewer's page never drives the run
    assert not at.exception


def test_a_viewer_server_refuses_each_tour_button_when_a_crafted_click_arrives(
        isolated_store, monkeypatch):
    """Each button is drawn for the instructor, then the server turns read-only before the
    click arrives: the tour does not move and the run gets no control."""
    store = RunStore(isolated_store)
    run_id = toured_run(store)
    tour_state = {"run_id": run_id, "index": 1, "stepped_after": None}
    for key in ("syn_tour_back", "syn_tour_next", "syn_tour_leave", "syn_tour_start"):
        store.set_tour("syn", None if key == "syn_tour_start" else tour_state)
        monkeypatch.delenv("DIVEBATCH_ROLE", raising=False)
        at = open_lab()
        button = at.button(key=key)
        monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
        button.click().run()
        assert at.session_state["refused_action"] == "tour", key
        assert store.get_tour("syn") == (None if key == "syn_tour_start" else tour_state)
        assert [run["id"] for run in store.list_runs()] == [run_id]  # no new tour run
        assert store.take_controls(run_id) == []
