"""The guided tour's steps from records and events written by hand."""

from divebatch.report import tour

CONFIG = {"delta": 0.1, "max_batch_size": 64, "batch_size": 8}
N_TRAIN = 100


def record(epoch, batch, diversity, loss, step):
    return {"epoch": epoch, "batch_size": batch, "diversity": diversity, "train_loss": loss,
            "val_loss": loss, "step": step, "delta": 0.1, "max_batch_size": 64}


def resize(epoch, old, new):
    return {"kind": "batch_size", "epoch": epoch, "payload": {"old": old, "new": new}}


# epoch 1: diversity 0.1; epoch 2: diversity falls (no step); epoch 3: rises while the loss
# falls; the first resize is at epoch 1 (before the diversity step), the next at 3, the cap at 4
RECORDS = [record(1, 8, 0.1, 1.0, 13), record(2, 8, 0.05, 0.8, 26), record(3, 8, 0.2, 0.5, 39),
           record(4, 20, 0.3, 0.4, 44), record(5, 64, 0.5, 0.3, 46)]
EVENTS = [resize(1, 8, 10), {"kind": "paused", "epoch": 1, "payload": None},
          resize(3, 10, 20), resize(4, 20, 64)]


def keys(steps):
    return [(step.key, step.epoch) for step in steps]


def test_moments_come_from_the_records_and_events_in_tour_order():
    steps = tour.reached_steps(CONFIG, N_TRAIN, RECORDS, EVENTS, finished=True)
    assert keys(steps) == [("start", 1), ("diversity", 3), ("grows", 3), ("cap", 4),
                           ("end", 5)]
    assert [step.element for step in steps] == ["chart_loss", "chart_diversity",
                                                "chart_batch_size", "chart_batch_size",
                                                "chart_loss"]
    assert steps[1].caption == "Epoch 3 of the run, on the outlined chart."


def test_texts_carry_the_runs_own_numbers():
    steps = {s.key: s.text for s in tour.reached_steps(CONFIG, N_TRAIN, RECORDS, EVENTS, True)}
    assert "B0 = 8: 13 noisy steps per epoch over its 100 training samples" in steps["start"]
    assert "from 0.1 to 0.2" in steps["diversity"]
    assert "δ·n·Δ̂ = 0.1 × 100 × 0.2 = 2.0 was above the batch size 10" in steps["grows"]
    assert "grew the batch to 20" in steps["grows"]
    assert "After 3 resize(s) the batch reached the cap B_max = 64 at the end of epoch 4" \
        in steps["cap"]
    assert "46 optimizer steps; at B0 = 8 throughout, the same epochs take 65 steps " \
           "(1.4x as many)" in steps["end"]


def test_a_running_run_reaches_steps_one_by_one_and_waits_for_the_next():
    assert tour.reached_steps(CONFIG, N_TRAIN, [], [], finished=False) == []
    assert keys(tour.reached_steps(CONFIG, N_TRAIN, RECORDS[:2], EVENTS[:2], False)) == [
        ("start", 1)]
    assert keys(tour.reached_steps(CONFIG, N_TRAIN, RECORDS[:4], EVENTS[:3], False)) == [
        ("start", 1), ("diversity", 3), ("grows", 3)]
    running = tour.reached_steps(CONFIG, N_TRAIN, RECORDS, EVENTS, finished=False)
    assert [s.key for s in running] == ["start", "diversity", "grows", "cap"]  # no end yet
    assert tour.steps_in_all(running, finished=False) == 7  # the race and critical steps
    assert tour.waiting_for(running, 4) == "end" and tour.waiting_for(running, 3) is None


def test_a_run_that_never_reaches_b_max_skips_the_cap_once_it_ended():
    steps = tour.reached_steps(CONFIG, N_TRAIN, RECORDS[:4], EVENTS[:3], finished=True)
    assert keys(steps) == [("start", 1), ("diversity", 3), ("grows", 3), ("end", 4)]
    assert tour.steps_in_all(steps, finished=True) == 4


def test_the_run_is_stepped_epoch_by_epoch_to_the_next_moment_then_resumed_to_its_end():
    two = tour.reached_steps(CONFIG, N_TRAIN, RECORDS[:2], EVENTS[:2], False)
    assert tour.run_action(two, 0, False, paused_after=2, stepped_after=None) is None  # shown
    assert tour.run_action(two, 1, False, paused_after=2, stepped_after=1) == "step"
    assert tour.run_action(two, 1, False, paused_after=2, stepped_after=2) is None  # sent
    assert tour.run_action(two, 1, False, paused_after=None, stepped_after=2) is None  # busy
    to_cap = tour.reached_steps(CONFIG, N_TRAIN, RECORDS, EVENTS, False)
    assert tour.run_action(to_cap, 4, False, paused_after=5, stepped_after=4) == "resume"
    assert tour.run_action(to_cap, 4, False, 5, stepped_after=tour.RESUMED) is None
    assert tour.run_action(to_cap, 4, True, 5, stepped_after=4) is None  # ended


def test_the_diversity_step_reads_the_probe_the_chart_draws_when_there_is_one():
    probed = [dict(r, probe_diversity=p) for r, p in zip(RECORDS, (0.3, 0.2, 0.25, 0.4, 0.5))]
    steps = {s.key: s for s in tour.reached_steps(CONFIG, N_TRAIN, probed, EVENTS, True)}
    assert steps["diversity"].epoch == 4  # the probe first rose above 0.3 at epoch 4
    assert "on the chart (a fixed probe after each epoch) rose from 0.3 to 0.4" \
        in steps["diversity"].text


def test_a_step_change_is_stamped_with_the_clock(monkeypatch):
    monkeypatch.setattr(tour, "clock", lambda: 500.0)
    state = {"run_id": 3, "index": 2, "stepped_after": 4}
    assert tour.moved_to(state, 3) == {"run_id": 3, "index": 3, "stepped_after": 4,
                                       "moved_at": 500.0}
    assert tour.moved_to(state, -1)["index"] == 0


def test_a_tour_is_over_on_its_last_step_or_once_left_unmoved(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(tour, "clock", lambda: now[0])
    state = tour.moved_to({"run_id": 3}, 1)
    assert not tour.is_over(state, last_step=False)
    assert tour.is_over(state, last_step=True)  # Next disabled: nothing more to follow
    now[0] += tour.STALE_AFTER_S - 1
    assert not tour.is_over(state, last_step=False)
    now[0] += 1
    assert tour.is_over(state, last_step=False)
    assert not tour.is_over(tour.moved_to(state, 2), last_step=False)  # moved again: live
    assert tour.is_over({"run_id": 3, "index": 1}, last_step=False)  # stored before stamps


def test_the_last_step_is_the_last_reached_once_nothing_more_comes():
    steps = tour.reached_steps(CONFIG, N_TRAIN, RECORDS, EVENTS, finished=True)
    assert tour.at_last_step(steps, len(steps) - 1, complete=True)
    assert not tour.at_last_step(steps, len(steps) - 2, complete=True)
    assert not tour.at_last_step(steps, len(steps) - 1, complete=False)  # race still to come
