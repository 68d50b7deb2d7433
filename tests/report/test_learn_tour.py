"""The Learn page's tour: steps and words from a path and a rule written out by hand."""

from types import SimpleNamespace

from divebatch.report import learn_tour, tour
from divebatch.report.learn_tour import Rule, learn_steps

POINT = SimpleNamespace(diversity=0.5, yin_bound=3.0)
SCALES = SimpleNamespace(b_noise=2.8, b_simple=2.0)
# step 0 is w; the diversity dips at step 1 (no moment), rises above 0.5 at step 2 while
# the loss is below the start's
ALONG = {"step": [0, 1, 2, 3, 4], "diversity": [0.5, 0.4, 0.6, 2.0, 5.0],
         "loss": [4.0, 2.0, 1.0, 0.5, 0.4]}
# delta 0.5, n 6: proposals 1.5, 1.2, 1.8, 6, 15 against B_old 2, B_max 8
RULE = Rule(delta=0.5, b_old=2, b_max=8, batches=[2, 2, 2, 6, 8])


def test_moments_come_from_the_path_and_the_rule():
    steps = learn_steps(POINT, 6, ALONG, RULE, SCALES)
    assert [(s.key, s.epoch, s.element) for s in steps] == [
        ("pulls", 0, "contour"), ("rises", 2, "path_chart"), ("grows", 3, "batch_chart"),
        ("cap", 4, "batch_chart"), ("critical", 0, "critical_chart")]
    words = {s.key: s.text for s in steps}
    assert "diversity Δ = 0.5 (1/n = 0.167 if all agreed). Yin's bound n·Δ = 3" in words["pulls"]
    assert "by step 2 the loss fell from 4 to 1 and Δ rose from 0.5 to 0.6" in words["rises"]
    assert words["grows"].startswith("At step 3, δ·n·Δ = 0.5 × 6 × 2 = 6 passed the batch "
                                     "size 2, so the rule grew it to 6.")
    assert words["cap"].startswith("At step 4 the batch reached B_max = 8")
    assert "B_noise = 2.8 (B_simple = 2)" in words["critical"]
    assert steps[1].caption == "Step 2 of gradient descent, on the outlined chart."


def test_steps_the_path_never_reaches_are_left_out():
    flat = Rule(delta=0.5, b_old=2, b_max=8, batches=[2] * 5)
    assert [s.key for s in learn_steps(POINT, 6, ALONG, flat, SCALES)] == [
        "pulls", "rises", "critical"]
    falling = dict(ALONG, diversity=[0.5, 0.4, 0.3, 0.2, 0.1])
    assert [s.key for s in learn_steps(POINT, 6, falling, None, SCALES)] == [
        "pulls", "critical"]  # no valid rule: no batch steps either


def test_a_new_tour_is_stamped_with_the_clock(monkeypatch):
    monkeypatch.setattr(tour, "clock", lambda: 500.0)
    assert learn_tour.started() == {"started_at": 500.0, "index": 0, "moved_at": 500.0}


def test_a_tour_is_over_on_the_pages_last_step_or_once_left_unmoved(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(tour, "clock", lambda: now[0])
    steps = learn_steps(POINT, 6, ALONG, RULE, SCALES)  # five steps
    state = tour.moved_to(learn_tour.started(), 3)
    assert not learn_tour.is_over(state, steps)
    assert learn_tour.is_over(tour.moved_to(state, 4), steps)  # the last step: Next disabled
    assert learn_tour.is_over(state, steps[:3])  # past this page's last step: it shows its last
    assert learn_tour.shown_index(state, steps[:3]) == 2
    now[0] += tour.STALE_AFTER_S - 1
    assert not learn_tour.is_over(state, steps)
    now[0] += 1
    assert learn_tour.is_over(state, steps)
    assert not learn_tour.is_over(tour.moved_to(state, 2), steps)  # moved again: live
    assert learn_tour.is_over({"index": 1}, steps)  # stored before stamps
