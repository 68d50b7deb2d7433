"""The guided tour's card through AppTest, on a run whose records and events are written by
hand (no worker): the instructor's card shows the reached step and moves it, drives the
paused run to the next moment, and a read-only server shows the same step without buttons."""

import os

from divebatch.experiments import critical_jobs
from divebatch.experiments.critical_batch import START
from divebatch.presets import PRESETS
from divebatch.report import tour
from divebatch.report.tour_sequel import NOT_MEASURABLE
from divebatch.runs import queue
from divebatch.runs.measurements import Measurements
from divebatch.runs.store import RunStore
from tests.helpers.apptest import open_app, sidebar_text

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
    store.set_tour("syn", tour.moved_to({"run_id": run_id, "stepped_after": None}, 0))
    return run_id


def test_the_instructor_moves_the_tour_and_drives_the_run_to_the_next_moment(isolated_store):
    store = RunStore(isolated_store)
    run_id = toured_run(store)
    at = open_app(PAGE)
    assert "Step 1 of 7" in sidebar_text(at) and "Start small" in sidebar_text(at)
    assert at.session_state["syn_shown"] == [run_id]  # the toured run is on the charts
    assert at.button(key="syn_tour_back").disabled
    at.button(key="syn_tour_next").click().run()
    assert "Diversity rises as the loss falls" in sidebar_text(at)
    assert store.get_tour("syn")["index"] == 1
    at.button(key="syn_tour_next").click().run()  # the batch has not grown yet: step once
    assert "trains on to the next step" in " ".join(c.value for c in at.sidebar.caption)
    assert [c["kind"] for c in store.take_controls(run_id)] == ["step"]
    assert store.get_tour("syn")["stepped_after"] == 2
    at.run()  # still paused after epoch 2: the step is not sent twice
    assert store.take_controls(run_id) == []
    at.button(key="syn_tour_back").click().run()
    assert "Diversity rises" in sidebar_text(at)
    at.button(key="syn_tour_leave").click().run()
    assert store.get_tour("syn") is None
    assert [c["kind"] for c in store.take_controls(run_id)] == ["resume"]
    assert at.button(key="syn_tour_start")  # the invitation again
    assert not at.exception


def test_a_viewer_sees_the_instructors_step_and_cannot_move_it(isolated_store, monkeypatch):
    store = RunStore(isolated_store)
    run_id = toured_run(store)
    store.set_tour("syn", tour.moved_to({"run_id": run_id, "stepped_after": None}, 1))
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    at = open_app(PAGE)
    assert "Step 2 of 7" in sidebar_text(at) and "Diversity rises" in sidebar_text(at)
    assert not [b for b in at.sidebar.button if b.key and b.key.startswith("syn_tour")]
    store.set_tour("syn", tour.moved_to({"run_id": run_id, "stepped_after": None}, 0))
    at.run()  # the next refresh follows the instructor
    assert "Start small" in sidebar_text(at)
    assert store.take_controls(run_id) == []  # a viewer's page never drives the run
    assert not at.exception


def test_a_viewer_server_refuses_each_tour_button_when_a_crafted_click_arrives(
        isolated_store, monkeypatch):
    """Each button is drawn for the instructor, then the server turns read-only before the
    click arrives: the tour does not move and the run gets no control."""
    store = RunStore(isolated_store)
    run_id = toured_run(store)
    tour_state = tour.moved_to({"run_id": run_id, "stepped_after": None}, 1)
    for key in ("syn_tour_back", "syn_tour_next", "syn_tour_leave", "syn_tour_start"):
        store.set_tour("syn", None if key == "syn_tour_start" else tour_state)
        monkeypatch.delenv("DIVEBATCH_ROLE", raising=False)
        at = open_app(PAGE)
        button = at.button(key=key)
        monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
        button.click().run()
        assert at.session_state["refused_action"] == "tour", key
        assert store.get_tour("syn") == (None if key == "syn_tour_start" else tour_state)
        assert [run["id"] for run in store.list_runs()] == [run_id]  # no new tour run
        assert store.take_controls(run_id) == []


def finished_tour_run(store: RunStore) -> int:
    """A completed run of the tour preset that grew to B_max at epoch 2 and ended at 3;
    the tour shows its last step ("What the run gained")."""
    config = PRESETS[tour.TOUR_PRESET].config().to_dict()
    run_id = store.create_run(config, name="Guided tour", status="running")
    store.update_info(run_id, n_train=3200)
    for epoch, batch, diversity, loss in ((1, 8, 0.17, 0.058), (2, 8, 0.98, 0.0052),
                                          (3, 2048, 1.1, 0.005)):
        store.append_record(run_id, {"epoch": epoch, "step": 400 * epoch, "batch_size": batch,
                                     "diversity": diversity, "train_loss": loss,
                                     "val_loss": loss, "samples_seen": 3200 * epoch,
                                     "train_time": 0.1 * epoch, "lr": 0.02})
    store.add_event(run_id, "batch_size", "8 -> 2048", epoch=2,
                    payload={"old": 8, "new": 2048})
    store.mark_finished(run_id, "completed")
    store.set_tour("syn", tour.moved_to({"run_id": run_id, "stepped_after": tour.RESUMED}, 4))
    return run_id


def end_race(store: RunStore, race: list[int]) -> None:
    """Each run of the race (DiveBatch, SGD at B0, SGD at B_max, AdaBatch) trained 2
    epochs (records by hand) and completed: SGD at B0 reaches the common target (0.03 plus
    5 %) first, in its first epoch (0.1 s), DiveBatch in its second (0.4 s)."""
    for run_id, (first, last), seconds in zip(race, ((0.05, 0.01), (0.02, 0.012),
                                                     (0.06, 0.03), (0.05, 0.011)),
                                              (0.2, 0.1, 0.3, 0.3)):
        batch = store.get_run(run_id)["config"]["batch_size"]
        for epoch, loss in ((1, first), (2, last)):
            store.append_record(run_id, {"epoch": epoch, "step": 10 * epoch,
                                         "batch_size": batch, "train_loss": loss,
                                         "val_loss": loss, "samples_seen": 3200 * epoch,
                                         "train_time": seconds, "lr": 0.02})
        store.mark_finished(run_id, "completed")


def test_after_its_run_the_tour_races_the_methods_then_reads_the_verdict_and_the_critical_batch(
        isolated_store, monkeypatch):
    """The run ended: the card starts the race (no worker: dispatch is off), whose runs go
    on the charts; once it ended, step 6 reads its verdict and starts the measurement,
    whose chart (rows by hand) step 7 reads under the charts."""
    monkeypatch.setattr(queue, "dispatch", lambda store, limit=None: [])
    started = []
    monkeypatch.setattr(critical_jobs, "submit", lambda store, run_id, settings: started.append(
        run_id) or Measurements(store).create(run_id, critical_jobs.KIND, settings.to_dict()))
    store = RunStore(isolated_store)
    run_id = finished_tour_run(store)
    at = open_app(PAGE)
    assert "What the run gained" in sidebar_text(at)
    race = store.get_tour("syn")["race"]
    assert len(race) == 4 and {store.get_run(i)["config"]["method"] for i in race} == {
        "divebatch", "sgd", "adabatch"}
    at.button(key="syn_tour_next").click().run()
    assert "Step 6 of 7" in sidebar_text(at)
    assert "The race of the four methods trains on" in " ".join(
        c.value for c in at.sidebar.caption)
    assert at.session_state["syn_shown"] == race  # the race trains on the charts
    end_race(store, race)
    at.run()
    assert "What the race verdict says" in sidebar_text(at)
    small = next(i for i in race if store.get_run(i)["config"]["method"] == "sgd"
                 and store.get_run(i)["config"]["batch_size"] == 8)
    assert (f"#{small} SGD B=8 was first, in 0.10 s of training; DiveBatch took "  # as the
            "0.40 s (4.0x as long)") in sidebar_text(at)  # legend names it
    assert any("Verdict:" in m.value for m in at.main.markdown)
    divebatch_run = next(i for i in race if store.get_run(i)["config"]["method"] == "divebatch")
    assert started == [divebatch_run]
    measurement = store.get_tour("syn")["measurement"]
    rows = Measurements(store)
    rows.put_row(measurement, 0, START, {"loss": 1.0, "target": 0.5, "noise_scale": 98.0})
    for batch in (8, 16, 32):
        rows.put_row(measurement, 0, batch, {"batch_size": batch, "steps_to_target": 20.0})
    rows.mark_finished(measurement, "completed")
    at.run()
    at.button(key="syn_tour_next").click().run()
    card = sidebar_text(at)
    assert "Step 7 of 7" in card and "What the critical-batch chart says" in card
    assert "< 8 at epoch 0" in sidebar_text(at)
    assert any(chart.key == "syn_critical_chart" for chart in at.get("plotly_chart"))
    assert at.button(key="syn_tour_next").disabled  # the last step
    at.button(key="syn_tour_back").click().run()
    assert not any(chart.key == "syn_critical_chart" for chart in at.get("plotly_chart"))
    at.button(key="syn_tour_back").click().run()  # step 5: the toured run alone again
    assert at.session_state["syn_shown"] == [run_id]
    assert not at.exception


def test_a_race_whose_divebatch_run_kept_no_checkpoint_ends_the_tour_at_its_verdict(
        isolated_store, monkeypatch):
    """The measurement cannot start (no checkpoint to branch from: the runs here are written
    by hand): the tour ends at the race's verdict, step 6 of 6."""
    monkeypatch.setattr(queue, "dispatch", lambda store, limit=None: [])
    store = RunStore(isolated_store)
    finished_tour_run(store)
    at = open_app(PAGE)
    end_race(store, store.get_tour("syn")["race"])
    at.button(key="syn_tour_next").click().run()
    at.run()  # the card's next refresh tries the measurement and gives up
    assert store.get_tour("syn")["measurement"] == NOT_MEASURABLE
    assert "Step 6 of 6" in sidebar_text(at) and "What the race verdict says" in sidebar_text(at)
    assert at.button(key="syn_tour_next").disabled
    assert not at.exception


def test_a_tour_left_on_its_last_step_is_over_for_a_new_session_and_kept_by_its_own(
        isolated_store, monkeypatch):
    """The instructor's session takes the tour to its last step and does not leave it: a
    session opened afterwards (instructor mode or viewer) offers a new tour and follows
    nothing; the instructor's session keeps its step until a new tour replaces it."""
    monkeypatch.setattr(queue, "dispatch", lambda store, limit=None: [])
    store = RunStore(isolated_store)
    old_run = finished_tour_run(store)
    taker = open_app(PAGE)
    end_race(store, store.get_tour("syn")["race"])
    taker.button(key="syn_tour_next").click().run()
    taker.run()  # no checkpoint to measure: step 6 of 6 is the last
    assert "Step 6 of 6" in sidebar_text(taker) and taker.button(key="syn_tour_next").disabled
    fresh = open_app(PAGE, {"instructor": "1"})
    assert "Step" not in sidebar_text(fresh) and fresh.button(key="syn_tour_start")
    assert "syn_tour_followed" not in fresh.session_state  # no toured runs on its charts
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    viewer = open_app(PAGE)
    assert "No guided tour under way." in " ".join(c.value for c in viewer.sidebar.caption)
    monkeypatch.delenv("DIVEBATCH_ROLE")
    taker.run()
    assert "Step 6 of 6" in sidebar_text(taker)  # the session that took it keeps it
    fresh.button(key="syn_tour_start").click().run()  # a new tour replaces the finished one
    state = store.get_tour("syn")
    assert state["run_id"] != old_run and state["index"] == 0
    assert "Step 1 of 7" in sidebar_text(fresh)
    taker.run()
    assert "Step 1 of 7" in sidebar_text(taker)  # a tour under way: every page follows it
    assert not fresh.exception and not taker.exception


def test_a_tour_left_unmoved_is_over_for_a_new_session_until_it_moves_again(
        isolated_store, monkeypatch):
    """The clock is the tour's (no waiting): past STALE_AFTER_S without a step change, a new
    session offers a new tour while the instructor's keeps its step; Next makes it a tour
    under way again, which the new session then follows."""
    now = [1000.0]
    monkeypatch.setattr(tour, "clock", lambda: now[0])
    store = RunStore(isolated_store)
    toured_run(store)
    taker = open_app(PAGE)
    assert "Start small" in sidebar_text(taker)
    now[0] += tour.STALE_AFTER_S
    fresh = open_app(PAGE)
    assert "Step" not in sidebar_text(fresh) and fresh.button(key="syn_tour_start")
    taker.run()
    assert "Start small" in sidebar_text(taker)
    taker.button(key="syn_tour_next").click().run()
    fresh.run()
    assert "Diversity rises as the loss falls" in sidebar_text(fresh)
    assert not fresh.exception and not taker.exception


def test_a_tour_stored_before_step_changes_were_stamped_loads_as_over(isolated_store):
    store = RunStore(isolated_store)
    run_id = toured_run(store)
    store.set_tour("syn", {"run_id": run_id, "index": 1, "stepped_after": None})
    at = open_app(PAGE)
    assert "Step" not in sidebar_text(at) and at.button(key="syn_tour_start")
    assert not at.exception
