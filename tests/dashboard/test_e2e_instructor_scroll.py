"""The scroll to the charts after Start in a real browser (Debian's chromium through
playwright), in instructor mode at 1280x720, on both labs: the page lands on the charts, and
a setup the instructor opens right after stays in view through the page's later updates (the
run's pause, its stop). Every wait is on an event, never a fixed sleep."""

from functools import partial

import pytest

from divebatch.runs import control_requests
from tests.helpers.gates import wait_for
from tests.helpers.serve import SHOTS, browser_or_skip

pytestmark = pytest.mark.browser
sync_api = browser_or_skip()

PREFIXES = {"synthetic": "syn", "images": "img"}  # lab page: its widgets' key prefix
WAIT_MS = 90_000
wait_until = partial(wait_for, timeout=WAIT_MS / 1000, poll_s=0.1)  # page polls
HEADER = "document.querySelector('header').getBoundingClientRect().bottom"
# The charts' legend lies just under Streamlit's header: the scroll to the charts landed.
LANDED = ("() => { const legend = document.querySelector('[class*=_chart_legend]');"
          f" return !!legend && Math.abs(legend.getBoundingClientRect().top - {HEADER}) <= 3; }}")
# ... on the verdict above the charts, once a race has ended
ON_VERDICT = ("() => { const verdict = document.querySelector('[class*=_verdict]');"
              " return !!verdict && verdict.offsetParent !== null &&"
              f" Math.abs(verdict.getBoundingClientRect().top - {HEADER}) <= 3; }}")
# No scroll of the page's is under way (scroll_to_charts.js has let go of the page).
SETTLED = "() => window.divebatchScroll?.steering === 0"
# From now on, note whether the setup's header ever leaves the window (a page scroll moved it).
WATCH_SETUP = ("(summary) => { window.setupLeftView = false;"
               " const main = document.querySelector('[data-testid=stMain]');"
               " main.addEventListener('scroll', () => { const box ="
               " summary.getBoundingClientRect(); if (box.top < " + HEADER +
               " || box.bottom > innerHeight) window.setupLeftView = true; }); }")



def setup_in_view(page, summary) -> bool:
    box = summary.bounding_box()
    return bool(box) and page.evaluate(HEADER) <= box["y"] and box["y"] + box["height"] <= 720


@pytest.mark.parametrize("lab", PREFIXES)
def test_a_setup_opened_after_start_stays_in_view(server, page, lab):
    url, store = server
    page.goto(f"{url}/{lab}?instructor=1&pace=step")  # the run pauses after its first epoch
    start = page.get_by_role("button", name="Start run")
    start.wait_for()
    wait_until(lambda: any(w["ready_at"] for w in store.workers()), "a warm worker",
               timeout=180)
    start.click()
    [run] = wait_until(lambda: store.list_runs(), "the run")
    wait_until(lambda: store.records(run["id"]), "the run's first stored record")
    page.wait_for_function(LANDED)

    summary = page.locator("[data-testid=stExpander] summary", has_text="Setup:")
    page.mouse.move(800, 400)  # the instructor scrolls back up to the folded setup, at once
    page.mouse.wheel(0, summary.bounding_box()["y"] - 300)
    wait_until(lambda: setup_in_view(page, summary), "the setup in view after scrolling up",
               timeout=10)
    page.evaluate(WATCH_SETUP, summary.element_handle())
    summary.click()
    page.wait_for_function("(summary) => summary.parentElement.open",
                           arg=summary.element_handle())

    stop = page.locator(f".st-key-{PREFIXES[lab]}_stop")
    stop.wait_for()
    wait_until(lambda: control_requests.is_paused(store, run["id"]), "the pause after epoch 1")
    control_requests.request_stop(store, run["id"])  # as from another tab: the page reruns
    wait_until(lambda: store.get_run(run["id"])["status"] == "stopped", "the stop")
    stop.wait_for(state="detached")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{lab}_instructor_setup_opened_after_start.png"))
    assert setup_in_view(page, summary)
    assert not page.evaluate("window.setupLeftView")


def start_a_paused_race(page, url, store) -> list[dict]:
    """Race the 4 methods in instructor mode, step by step: each run pauses after epoch 1."""
    page.goto(f"{url}/synthetic?instructor=1&pace=step&epochs=3")
    wait_until(lambda: any(w["ready_at"] for w in store.workers()), "a warm worker",
               timeout=180)
    page.get_by_role("button", name="Race the 4 methods").click()
    runs = wait_until(lambda: len(store.list_runs()) == 4 and store.list_runs(), "the race")
    wait_until(lambda: all(control_requests.is_paused(store, run["id"]) for run in runs),
               "each run paused after epoch 1")
    return runs


def test_a_race_that_ends_after_the_scroll_settled_lands_on_its_verdict(server, page):
    """A race longer than the Start's scroll (it lets go once the charts stay put): its end
    still brings the verdict above the charts into view, the user having touched nothing."""
    store = server[1]
    runs = start_a_paused_race(page, *server)
    page.wait_for_function(LANDED)
    page.wait_for_function(SETTLED)
    for run in runs:  # as from another tab: nothing the page's user did
        control_requests.request_play(store, run["id"], "resume")
    wait_until(lambda: all(store.get_run(run["id"])["status"] == "completed" for run in runs),
               "the race's end")
    page.wait_for_function(ON_VERDICT)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "synthetic_instructor_verdict_after_a_long_race.png"))


@pytest.mark.parametrize("touched", [False, True])
def test_a_reload_during_a_race_still_lands_on_its_verdict_unless_the_user_scrolled(
        server, page, touched):
    """The instructor reloads the page while the race trains (the projector's laptop): its end
    brings the verdict into view as after a Start, unless the user has scrolled since."""
    store = server[1]
    runs = start_a_paused_race(page, *server)
    page.reload()
    page.locator("[class*=_chart_legend]").first.wait_for()
    page.wait_for_function("() => window.divebatchScroll?.since"
                           " && Object.keys(window.divebatchScroll.since).length === 1")
    if touched:  # the user scrolls the page after it opened
        page.mouse.move(640, 400)
        page.mouse.wheel(0, -300)
    served = page.evaluate("() => window.divebatchScroll.served.size")
    for run in runs:  # as from another tab
        control_requests.request_play(store, run["id"], "resume")
    wait_until(lambda: all(store.get_run(run["id"])["status"] == "completed" for run in runs),
               "the race's end")
    page.wait_for_function(f"() => window.divebatchScroll.served.size > {served}")
    page.wait_for_function(SETTLED)
    landed = page.evaluate(ON_VERDICT)
    assert landed is not touched
