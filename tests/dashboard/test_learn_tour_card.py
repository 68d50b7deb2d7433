"""The Learn page's guided tour card through AppTest: the instructor starts it, moves it
(Back, Next, Leave) over the page's own figures, and a read-only server shows the same step
without buttons; a tour left on its last step or unmoved is over for a page that took no part
in it."""

from divebatch.report import learn_tour, tour
from divebatch.runs.store import RunStore
from tests.helpers.apptest import open_app, sidebar_text

PAGE = "app_pages/learn.py"


def on_step(index: int) -> dict:
    """A Learn tour under way, just moved to step `index`."""
    return tour.moved_to(learn_tour.started(), index)


def test_the_instructor_walks_the_learn_tour_over_the_pages_figures(isolated_store,
                                                                   monkeypatch):
    monkeypatch.setattr(tour, "clock", lambda: 1000.0)
    store = RunStore(isolated_store)
    at = open_app(PAGE)
    at.button(key="learn_tour_start").click().run()
    assert store.get_tour("learn") == {"started_at": 1000.0, "index": 0, "moved_at": 1000.0}
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
    store.set_tour("learn", on_step(1))
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    at = open_app(PAGE)
    assert "Step 2 of 5" in sidebar_text(at) and "Diversity rises" in sidebar_text(at)
    assert not [b for b in at.sidebar.button if b.key and b.key.startswith("learn_tour")]
    store.set_tour("learn", tour.moved_to(store.get_tour("learn"), 4))
    at.run()
    assert "Where a bigger batch stops being free" in sidebar_text(at)
    assert not at.exception


def test_a_learn_tour_left_on_its_last_step_is_over_for_a_new_session_and_kept_by_its_own(
        isolated_store, monkeypatch):
    """The instructor's session takes the tour to its last step and does not leave it: a
    session opened afterwards (instructor or viewer) offers a new tour and outlines nothing;
    the instructor's session keeps its step until a new tour replaces it."""
    store = RunStore(isolated_store)
    taker = open_app(PAGE)
    taker.button(key="learn_tour_start").click().run()
    for _ in range(4):
        taker.button(key="learn_tour_next").click().run()
    assert "Step 5 of 5" in sidebar_text(taker) and taker.button(key="learn_tour_next").disabled
    old = store.get_tour("learn")
    fresh = open_app(PAGE, {"instructor": "1"})
    assert "Step" not in sidebar_text(fresh) and fresh.button(key="learn_tour_start")
    monkeypatch.setenv("DIVEBATCH_ROLE", "viewer")
    viewer = open_app(PAGE)
    assert "No guided tour under way." in " ".join(c.value for c in viewer.sidebar.caption)
    monkeypatch.delenv("DIVEBATCH_ROLE")
    taker.run()
    assert "Step 5 of 5" in sidebar_text(taker)  # the session that took it keeps it
    fresh.button(key="learn_tour_start").click().run()  # a new tour replaces the finished one
    state = store.get_tour("learn")
    assert state["started_at"] != old["started_at"] and state["index"] == 0
    assert "Step 1 of 5" in sidebar_text(fresh)
    taker.run()
    assert "Step 1 of 5" in sidebar_text(taker)  # a tour under way: every page follows it
    assert not fresh.exception and not taker.exception and not viewer.exception


def test_a_learn_tour_left_unmoved_is_over_for_a_new_session_until_it_moves_again(
        isolated_store, monkeypatch):
    """The clock is the tour's (no waiting): past STALE_AFTER_S without a step change, a new
    session offers a new tour while the instructor's keeps its step; Next makes it a tour
    under way again, which the new session then follows."""
    now = [1000.0]
    monkeypatch.setattr(tour, "clock", lambda: now[0])
    store = RunStore(isolated_store)
    store.set_tour("learn", on_step(0))
    taker = open_app(PAGE)
    assert "Each sample pulls its own way" in sidebar_text(taker)
    now[0] += tour.STALE_AFTER_S
    fresh = open_app(PAGE)
    assert "Step" not in sidebar_text(fresh) and fresh.button(key="learn_tour_start")
    taker.run()
    assert "Each sample pulls its own way" in sidebar_text(taker)
    taker.button(key="learn_tour_next").click().run()
    fresh.run()
    assert "Diversity rises as the loss falls" in sidebar_text(fresh)
    assert not fresh.exception and not taker.exception


def test_a_learn_tour_stored_before_step_changes_were_stamped_loads_as_over(isolated_store):
    store = RunStore(isolated_store)
    store.set_tour("learn", {"index": 1})
    at = open_app(PAGE)
    assert "Step" not in sidebar_text(at) and at.button(key="learn_tour_start")
    at.button(key="learn_tour_start").click().run()  # a new tour replaces it
    assert store.get_tour("learn")["index"] == 0 and "Step 1 of 5" in sidebar_text(at)
    assert not at.exception
