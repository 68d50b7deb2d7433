"""A second Start while the first run is paused, on one worker slot, in a real browser (Debian's
chromium through playwright) at 1280x720: the second run waits, and the page lands on the
warning that names the paused run and what frees its slot, just above the charts, and the
sidebar's Workers line names it too. Every wait
is on an event, never a fixed sleep."""

from functools import partial

import pytest

from divebatch.runs import control_requests
from tests.helpers.gates import click_until, wait_for
from tests.helpers.serve import SHOTS, browser_or_skip

pytestmark = pytest.mark.browser
sync_api = browser_or_skip()

WAIT_MS = 90_000
wait_until = partial(wait_for, timeout=WAIT_MS / 1000, poll_s=0.1)
HEADER = "document.querySelector('header').getBoundingClientRect().bottom"
# The warning lies just under Streamlit's header: the scroll after Start landed on it.
ON_WARNING = ("() => { const box = document.querySelector('[class*=syn_queue_blocked]');"
              f" return !!box && Math.abs(box.getBoundingClientRect().top - {HEADER}) <= 3; }}")



def test_a_run_queued_behind_a_paused_one_names_it_in_view(server, page):
    url, store = server  # one worker slot, one warm worker
    page.goto(f"{url}/synthetic?pace=step")  # each run pauses after its first epoch
    start = page.get_by_role("button", name="Start run")
    start.wait_for()
    wait_until(lambda: any(w["ready_at"] for w in store.workers()), "a warm worker",
               timeout=180)
    start.click()
    [first] = wait_until(lambda: store.list_runs(), "the first run")
    wait_until(lambda: control_requests.is_paused(store, first["id"]), "its pause")
    start.scroll_into_view_if_needed()  # the user scrolls back up to Start
    click_until(start, lambda: len(store.list_runs()) == 2, "the second run")
    second = store.list_runs()[0]
    assert second["status"] == "queued"  # the paused run holds the only slot
    warning = page.locator("[class*=syn_queue_blocked]")
    warning.get_by_text(f"Queued: #{second['id']}. Its worker slot is held by "
                        f"#{first['id']}, paused after epoch 1: Resume #{first['id']} to let "
                        f"it finish, or Stop it to free the slot now.").wait_for()
    page.wait_for_function(ON_WARNING)
    page.get_by_test_id("stSidebar").get_by_text(
        f"Workers: 1 of 1 slot(s) busy (#{first['id']} paused, holding its slot), 1 run(s) "
        "queued").wait_for()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "synthetic_queued_behind_a_paused_run.png"))
    control_requests.request_stop(store, first["id"])  # as from another tab: the slot frees
    wait_until(lambda: store.get_run(second["id"])["status"] != "queued", "the second's start")
    warning.wait_for(state="detached")
