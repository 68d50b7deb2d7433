"""The guided tours in a real browser: the instructor's dashboard in instructor mode at
1280x720 takes the Synthetic lab's tour over a real run of the tour preset from its first
step to its last (the race's verdict and the critical-batch chart after the run; Back and
Leave included), then the Learn page's tour over its figures, while a viewer on the
read-only twin (same store) follows each step. Every wait is on something the page shows.
Screenshots of each step go to $DIVEBATCH_SCREENSHOTS (docs/screenshots/tour_*.png and
learn_tour_*.png come from them)."""

from dataclasses import dataclass
from functools import partial

import pytest

from tests.helpers.gates import stop_runs_and_wait, wait_for
from tests.helpers.serve import browser_or_skip, SHOTS, dashboard_server, launch_chromium
from divebatch.runs import warm_pool
from divebatch.runs.store import RunStore

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]  # a real run, then its race
sync_api = browser_or_skip()

WAIT_MS = 120_000
wait_until = partial(wait_for, timeout=WAIT_MS / 1000, poll_s=0.2)  # page polls


@dataclass(frozen=True)
class Tour:
    prefix: str  # the page's key prefix: its card is .st-key-<prefix>_tour
    titles: tuple[str, ...]
    elements: tuple[str, ...]  # the element each step outlines, by its key after the prefix


LAB = Tour("syn", ("Start small", "Diversity rises as the loss falls",
                   "The bound crosses the batch size: the batch grows", "The cap at B_max",
                   "What the run gained", "What the race verdict says",
                   "What the critical-batch chart says"),
           ("chart_loss", "chart_diversity", "chart_batch_size", "chart_batch_size",
            "chart_loss", "verdict", "critical_chart"))
LEARN = Tour("learn", ("Each sample pulls its own way", "Diversity rises as the loss falls",
                       "The bound crosses the batch size: the batch grows",
                       "The cap at B_max", "Where a bigger batch stops being free"),
             ("contour", "path_chart", "batch_chart", "batch_chart", "critical_chart"))


def card(page, tour: Tour):
    return page.locator(f".st-key-{tour.prefix}_tour")


def locate(page, tour: Tour, element: str):
    return page.locator(f".st-key-{tour.prefix}_{element}").first


TRAINED_MS = 300_000  # a step whose element comes after training (the race, its measurement)


def wait_for_step(page, tour: Tour, number: int) -> None:
    """The card shows step `number` (1-based) with its title, and its element (a chart
    drawn, or the verdict) is on the page."""
    card(page, tour).get_by_text(f"Step {number} of").wait_for()
    card(page, tour).get_by_text(tour.titles[number - 1], exact=True).wait_for()
    element = tour.elements[number - 1]
    page.locator(f".st-key-{tour.prefix}_{element}"
                 + (" .js-plotly-plot" if "chart" in element or element == "contour" else "")
                 ).first.wait_for(timeout=TRAINED_MS if element in ("verdict", "critical_chart")
                                  else WAIT_MS)


def box(page, tour: Tour, element: str) -> dict | None:
    return locate(page, tour, element).bounding_box()


def in_view(page, tour: Tour, element: str) -> bool:
    where = box(page, tour, element)
    return bool(where) and where["y"] >= 0 and where["y"] + where["height"] <= 721  # 1 px:
    # the browser places a box at fractions of a pixel


def step_in_view(page, tour: Tour, number: int) -> bool:
    """The step's element and the whole card (its text and buttons) are in the window."""
    return in_view(page, tour, tour.elements[number - 1]) and in_view(page, tour, "tour")


def highlighted(page, tour: Tour, element: str) -> bool:
    return locate(page, tour, element).evaluate(
        "e => getComputedStyle(e).outlineStyle") == "solid"


def walk(teacher, viewer, tour: Tour, shots: str, back_at: int) -> None:
    """The instructor takes `tour` from its first step to its last (Back at step `back_at`,
    then Next again), each step outlined and in the 1280x720 window with the card, the
    viewer following it; then Leave ends it on both pages."""
    card(viewer, tour).get_by_text("No guided tour under way.").wait_for()
    teacher.get_by_role("button", name="Take the guided tour").click()
    for number in range(1, len(tour.titles) + 1):
        if number > 1:
            card(teacher, tour).get_by_role("button", name="Next").click()
        wait_for_step(teacher, tour, number)
        wait_until(lambda: highlighted(teacher, tour, tour.elements[number - 1]), lambda: (
            f"step {number}'s element outlined"))  # the outline's style may come after the card
        wait_until(lambda: step_in_view(teacher, tour, number), lambda: (
            f"step {number}'s element and card in the 1280x720 window: element at "
            f"{box(teacher, tour, tour.elements[number - 1])}, card at "
            f"{box(teacher, tour, 'tour')}"))
        teacher.mouse.move(0, 0)
        teacher.screenshot(path=str(SHOTS / f"{shots}_{number}.png"))
        wait_for_step(viewer, tour, number)  # the class follows, on its own refresh
        if number == 3:
            viewer.mouse.move(0, 0)
            viewer.screenshot(path=str(SHOTS / f"{shots}_viewer.png"))
        assert card(viewer, tour).get_by_role("button").count() == 0
        if number == back_at:  # Back shows the step before again, Next returns
            card(teacher, tour).get_by_role("button", name="Back").click()
            wait_for_step(teacher, tour, number - 1)
            card(teacher, tour).get_by_role("button", name="Next").click()
            wait_for_step(teacher, tour, number)
    assert card(teacher, tour).get_by_role("button", name="Next").is_disabled()
    card(teacher, tour).get_by_role("button", name="Leave the tour").click()
    teacher.get_by_role("button", name="Take the guided tour").wait_for()
    card(viewer, tour).get_by_text("No guided tour under way.").wait_for()


def test_tours_from_first_step_to_last_with_a_viewer_following(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    # one warm worker: the race after the run trains interleaved in it (one process start)
    env = {"DIVEBATCH_MAX_WORKERS": "1", "DIVEBATCH_WARM_WORKERS": "1"}
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with dashboard_server(db, env=env) as url, \
                dashboard_server(db, env={"DIVEBATCH_ROLE": "viewer"}) as viewer_url, \
                sync_api.sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            teacher = browser.new_page(viewport={"width": 1280, "height": 720})
            viewer = browser.new_page(viewport={"width": 1280, "height": 720})
            for page in (teacher, viewer):
                page.set_default_timeout(WAIT_MS)
            teacher.goto(f"{url}/synthetic?instructor=1")
            viewer.goto(f"{viewer_url}/synthetic")
            walk(teacher, viewer, LAB, "tour", back_at=4)
            runs = store.list_runs()
            assert [run["status"] for run in runs] == ["completed"] * 5  # the run, its race
            assert [run["name"] for run in runs].count("Guided tour") == 1
            assert len({run["group"] for run in runs if run["name"] != "Guided tour"}) == 1
            assert store.get_tour("syn") is None
            teacher.goto(f"{url}/learn?instructor=1")
            viewer.goto(f"{viewer_url}/learn")
            walk(teacher, viewer, LEARN, "learn_tour", back_at=3)
            assert store.get_tour("learn") is None
            browser.close()
    finally:
        stop_runs_and_wait(store)
        warm_pool.stop_warm_workers(store)
