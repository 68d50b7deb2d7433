"""The Learn page's guided tour card through AppTest: the instructor starts it, moves it
(Back, Next, Leave) over the page's own figures, and a read-only server shows the same step
without buttons."""

from divebatch.runs.store import RunStore
from tests.helpers.apptest import open_app, sidebar_text

PAGE = "app_pages/learn.py"


def test_the_instructor_walks_the_learn_tour_over_the_pages_figures(isolated_store):
    store = RunStore(isolated_store)
    at = open_app(PAGE)
    at.button(key="learn_tour_start").click().run()
    assert store.get_tour("learn") == {"index": 0}
    assert "Step 1 of 5" in sidebar_text(at) and "Each sample pulls its own way" in sidebar_text(at)
    assert at.button(key="learn_tour_back").disabled
    titles = ["Diversity rises as the loss falls",
              "The bound crosses the batch size: the batch grows", "The cap at B_max",
              "Where a bigger batch stops being free"]
    for number, title in enumerate(titles, start=2):
        at.button(key="learn_tour_next").click().run()
        assert f"Step {number} of 5" in sidebar_text(at) and title in sidebar_text(at)
        if number == 3:  # the page's defaults: δ 0.5, B_old 1, the batch grows at step 12
            assert "At step 12, δ·n·Δ = 0.5 × 6 ×" in sidebar_text(at)
            assert "so the rule grew it to 2" in sidebar_text(at)
    assert at.button(key="learn_tour_next").disabled  # the last step
    at.button(key="learn_tour_back").click().run()
    assert "The cap at B_max" in sidebar_text(at)
    at.button(key="learn_tour_leave").click().run()
    assert store.get_tour("learn") is None and at.button(key="learn_tour_start")
    assert not at.exception


def test_the_learn_tour_leaves_out_the_batch_steps_when_the_rule_is_invalid(isolated_store):
    at = open_app(PAGE)
    at.number_input(key="learn_b_max").set_value(1).run()
    at.number_input(key="learn_b_old").set_value(4).run()  # B_max 1 < B_old 4: an error
    assert at.error
    at.button(key="learn_tour_start").click().run()
    at.button(key="learn_tour_next").click().run()
    at.button(key="learn_tour_next").click().run()
    assert "Step 3 of 3" in sidebar_text(at) and "Where a bigger batch stops" in sidebar_text(at)
    assert not at.exception


def test_a_viewer_follows_the_learn_tour_and_cannot_move_it(isolated_store, monkeypatch):
    store = RunStore(isolated_store)
    store.set_tour("learn", {"index": 1})
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    at = open_app(PAGE)
    assert "Step 2 of 5" in sidebar_text(at) and "Diversity rises" in sidebar_text(at)
    assert not [b for b in at.sidebar.button if b.key and b.key.startswith("learn_tour")]
    store.set_tour("learn", {"index": 4})
    at.run()
    assert "Where a bigger batch stops being free" in sidebar_text(at)
    assert not at.exception
