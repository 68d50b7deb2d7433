"""The guided tour in a real browser: the instructor's dashboard in instructor mode at
1280x720 takes the tour over a real run of the tour preset from its first step to its last
(Back and Leave included), while a viewer on the read-only twin (same store) follows each
step. Every wait is on something the page shows. Screenshots of each step go to
$DIVEBATCH_SCREENSHOTS (docs/screenshots/tour_*.png come from them)."""

import time

import pytest

from tests.helpers.gates import stop_runs_and_wait
from tests.helpers.serve import browser_or_skip, SHOTS, dashboard_server, launch_chromium
from divebatch.runs.store import RunStore

pytestmark = pytest.mark.browser
sync_api = browser_or_skip()

WAIT_MS = 120_000
TITLES = ("Start small", "Diversity rises as the loss falls",
          "The bound crosses the batch size: the batch grows", "The cap at B_max",
          "What the run gained")
CHARTS = ("loss", "diversity", "batch_size", "batch_size", "loss")


def card(page):
    return page.locator(".st-key-syn_tour")


def wait_for_step(page, number: int) -> None:
    """The card shows step `number` (1-based) with its title, and its chart is drawn and
    highlighted on the page."""
    card(page).get_by_text(f"step {number} of").wait_for()
    card(page).get_by_text(TITLES[number - 1], exact=True).wait_for()
    page.locator(f".st-key-syn_chart_{CHARTS[number - 1]} .js-plotly-plot").first.wait_for()


def chart_in_view(page, chart: str) -> bool:
    box = page.locator(f".st-key-syn_chart_{chart}").first.bounding_box()
    return bool(box) and box["y"] >= 0 and box["y"] + box["height"] <= 720


def wait_until(condition, what: str, timeout: float = WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def highlighted(page, chart: str) -> bool:
    return page.locator(f".st-key-syn_chart_{chart}").first.evaluate(
        "e => getComputedStyle(e).outlineStyle") == "solid"


def test_tour_from_first_step_to_last_with_a_viewer_following(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    env = {"DIVEBATCH_MAX_WORKERS": "1", "DIVEBATCH_WARM_WORKERS": "0"}
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
            for number in range(1, 6):
                if number > 1:
                    card(teacher).get_by_role("button", name="Next").click()
                wait_for_step(teacher, number)
                assert highlighted(teacher, CHARTS[number - 1])
                wait_until(lambda: chart_in_view(teacher, CHARTS[number - 1]),
                           f"step {number}'s chart scrolled into the 1280x720 window")
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
            run = store.list_runs()[0]
            assert run["status"] == "completed" and run["name"] == "Guided tour"
            card(teacher).get_by_role("button", name="Leave the tour").click()
            teacher.get_by_role("button", name="Take the guided tour").wait_for()
            card(viewer).get_by_text("No guided tour under way.").wait_for()
            assert store.get_tour("syn") is None
            browser.close()
    finally:
        stop_runs_and_wait(store)
