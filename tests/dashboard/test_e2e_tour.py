"""The guided tour in a real browser: the instructor's dashboard in instructor mode at
1280x720 takes the tour over a real run of the tour preset from its first step to its last
(the race's verdict and the critical-batch chart after the run; Back and Leave included),
while a viewer on the read-only twin (same store) follows each step. Every wait is on
something the page shows. Screenshots of each step go to $DIVEBATCH_SCREENSHOTS
(docs/screenshots/tour_*.png come from them)."""

import time

import pytest

from tests.helpers.gates import stop_runs_and_wait
from tests.helpers.serve import browser_or_skip, SHOTS, dashboard_server, launch_chromium
from divebatch.runs import jobs
from divebatch.runs.store import RunStore

pytestmark = pytest.mark.browser
sync_api = browser_or_skip()

WAIT_MS = 120_000
TITLES = ("Start small", "Diversity rises as the loss falls",
          "The bound crosses the batch size: the batch grows", "The cap at B_max",
          "What the run gained", "What the race verdict says",
          "What the critical-batch chart says")
# the page element each step outlines, by its key after "syn_"
ELEMENTS = ("chart_loss", "chart_diversity", "chart_batch_size", "chart_batch_size",
            "chart_loss", "verdict", "critical_chart")


def card(page):
    return page.locator(".st-key-syn_tour")


def wait_for_step(page, number: int) -> None:
    """The card shows step `number` (1-based) with its title, and its element (a chart
    drawn, or the verdict) is on the page."""
    card(page).get_by_text(f"step {number} of").wait_for()
    card(page).get_by_text(TITLES[number - 1], exact=True).wait_for()
    element = ELEMENTS[number - 1]
    page.locator(f".st-key-syn_{element}" + (" .js-plotly-plot" if "chart" in element else "")
                 ).first.wait_for()


def box(page, element: str) -> dict | None:
    return page.locator(f".st-key-syn_{element}").first.bounding_box()


def in_view(page, element: str) -> bool:
    where = box(page, element)
    return bool(where) and where["y"] >= 0 and where["y"] + where["height"] <= 720


def step_in_view(page, number: int) -> bool:
    """The step's element and the whole card (its text and buttons) are in the window."""
    return in_view(page, ELEMENTS[number - 1]) and in_view(page, "tour")


def wait_until(condition, what, timeout: float = WAIT_MS / 1000) -> None:
    """Poll `condition` until true; `what` (text, or a function giving it) says what was
    awaited if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


def highlighted(page, element: str) -> bool:
    return page.locator(f".st-key-syn_{element}").first.evaluate(
        "e => getComputedStyle(e).outlineStyle") == "solid"


def test_tour_from_first_step_to_last_with_a_viewer_following(tmp_path):
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
            card(viewer).get_by_text("No guided tour under way.").wait_for()
            teacher.get_by_role("button", name="Take the guided tour").click()
            for number in range(1, len(TITLES) + 1):
                if number > 1:
                    card(teacher).get_by_role("button", name="Next").click()
                wait_for_step(teacher, number)
                assert highlighted(teacher, ELEMENTS[number - 1])
                wait_until(lambda: step_in_view(teacher, number), lambda: (
                    f"step {number}'s element and card in the 1280x720 window: element at "
                    f"{box(teacher, ELEMENTS[number - 1])}, card at {box(teacher, 'tour')}"))
                teacher.mouse.move(0, 0)
                teacher.screenshot(path=str(SHOTS / f"tour_{number}.png"))
                wait_for_step(viewer, number)  # the class follows, on its own refresh
                if number == 3:
                    viewer.mouse.move(0, 0)
                    viewer.screenshot(path=str(SHOTS / "tour_viewer.png"))
                assert card(viewer).get_by_role("button").count() == 0
                if number == 4:  # Back shows step 3 again, Next returns to 4
                    card(teacher).get_by_role("button", name="Back").click()
                    wait_for_step(teacher, 3)
                    card(teacher).get_by_role("button", name="Next").click()
                    wait_for_step(teacher, 4)
            assert card(teacher).get_by_role("button", name="Next").is_disabled()
            runs = store.list_runs()
            assert [run["status"] for run in runs] == ["completed"] * 5  # the run, its race
            assert [run["name"] for run in runs].count("Guided tour") == 1
            assert len({run["group"] for run in runs if run["name"] != "Guided tour"}) == 1
            card(teacher).get_by_role("button", name="Leave the tour").click()
            teacher.get_by_role("button", name="Take the guided tour").wait_for()
            card(viewer).get_by_text("No guided tour under way.").wait_for()
            assert store.get_tour("syn") is None
            browser.close()
    finally:
        stop_runs_and_wait(store)
        jobs.stop_warm_workers(store)
