"""End to end in a real browser: the dashboard served by `streamlit run`, driven by Debian's
chromium through playwright. Races four methods (one warm worker trains them in turns), watches
the charts update on their own, changes delta while DiveBatch runs, stops the race, downloads
a CSV, and saves a screenshot of every page to $DIVEBATCH_SCREENSHOTS (default: a temporary
folder; `bash scripts/screenshots.sh` refreshes docs/screenshots/ on purpose). Also: a run
started on a warm worker, step by step, paused, stepped, re-paced and stopped from the
buttons, in instructor mode at 1280x720, and deleted alone from the Runs page.
"""

import os
import re
import signal
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from divebatch.runs.store import RunStore
from tests.helpers.gates import HELD, click_until, wait_for
from tests.helpers.serve import (SHOTS, FIRST_POINT, browser_or_skip, dashboard_server,
                                 launch_chromium, server_pid)

pytestmark = pytest.mark.browser
sync_api = browser_or_skip()

# Long enough to still be running while we interact; the test stops it.
SETUP = "n_samples=2000&dim=20&batch_size=8&max_batch_size=256&epochs=2000&progress_every=0.5"
WAIT_MS = 90_000
wait_until = partial(wait_for, timeout=WAIT_MS / 1000, poll_s=0.2)  # page polls


@pytest.fixture
def page():
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900},
                                    accept_downloads=True)
            page.set_default_timeout(WAIT_MS)  # a busy 2-core machine redraws slowly
            yield page
        finally:
            browser.close()


def screenshot(page, name: str, height: int = 900, width: int = 1440,
               from_top: bool = True) -> None:
    """The whole page: Streamlit scrolls inside its main area, so grow the viewport (and,
    `from_top`, scroll that area back to the top: Start scrolls it to the charts)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    page.set_viewport_size({"width": width, "height": height})
    if from_top:
        page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")
    page.mouse.move(0, 0)  # no tooltip in the picture
    time.sleep(1.5)  # let plotly finish drawing
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    page.set_viewport_size(before)


def epochs_done(page, run_id: int) -> int:
    """From the run's progress line ("#3 DiveBatch (delta=0.1): 12/2000 epochs ..."), not
    the legend, which also names the run."""
    progress = re.compile(rf"^#{run_id} .*: (\d+)/\d+ epochs")
    return int(progress.search(page.get_by_text(progress).first.inner_text()).group(1))


def test_race_live_hot_change_stop_and_export(server, page):
    url, store = server
    page.goto(f"{url}/synthetic?{SETUP}")
    race = page.get_by_role("button", name="Race the 4 methods")
    race.wait_for(timeout=WAIT_MS)
    race.click()
    wait_until(lambda: len(store.list_runs()) == 4, "four race runs")
    divebatch_id = min(run["id"] for run in store.list_runs())

    # The charts redraw on their own: epochs advance with no input from us.
    page.locator("[data-testid=stPlotlyChart]").nth(3).wait_for(timeout=WAIT_MS)
    first = epochs_done(page, divebatch_id)
    wait_until(lambda: epochs_done(page, divebatch_id) > first + 2, "the charts to update")

    delta = page.locator(f".st-key-syn_hot_delta_{divebatch_id} input")
    delta.fill("0.5")
    delta.press("Enter")
    click_until(page.locator(".st-key-syn_hot_apply button").first,
                lambda: any(e["kind"] == "hot_change" for e in store.events(divebatch_id)),
                "the hot change stored")
    page.get_by_text(f"Sent to run #{divebatch_id}: delta=0.5.").wait_for(timeout=WAIT_MS)
    # the charts are drawn where they are in view: look at the legend, as the user would
    page.locator(".growing-legend, [class*=_chart_legend]").first.scroll_into_view_if_needed()
    page.locator("svg text", has_text="-> 0.5)").first.wait_for(timeout=WAIT_MS)
    hot = [e for e in store.events(divebatch_id) if e["kind"] == "hot_change"]
    assert [e["payload"] for e in hot] == [{"delta": 0.5}]

    page.get_by_role("button", name=re.compile(r"^Stop all")).click()
    page.get_by_text("idle: no run on the charts is active").wait_for(timeout=WAIT_MS)
    assert {run["status"] for run in store.list_runs()} == {"stopped"}
    screenshot(page, "synthetic_lab", height=2400)  # once idle: the workers had the CPU

    page.goto(f"{url}/runs")
    picker = page.locator(".st-key-runs_shown input")
    picker.wait_for(timeout=WAIT_MS)
    picker.click()
    page.keyboard.press("ArrowDown")
    page.get_by_role("option", name=re.compile(rf"^#{divebatch_id} ")).click()
    page.keyboard.press("Escape")
    csv_button = page.get_by_role("button", name="CSV (records)")
    csv_button.wait_for(timeout=WAIT_MS)
    with page.expect_download() as download:
        csv_button.click()
    assert download.value.suggested_filename == f"divebatch-run-{divebatch_id}.csv"
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("epoch,step,samples_seen,train_time,batch_size,lr,diversity")
    assert len(lines) - 1 == len(store.records(divebatch_id)) >= 3
    page.locator("[data-testid=stPlotlyChart]").nth(3).wait_for(timeout=WAIT_MS)
    screenshot(page, "runs", height=2300)

    for name, path, marker, height in (
            ("home", "", "How it works", 900), ("learn", "learn", "4. From diversity to a "
                                                "batch size", 2600),
            ("image_lab", "images", "Datasets", 1500), ("sweep", "sweep", "Sweep", 1500),
            ("reproduce", "reproduce", "Reproduce the paper", 1500),
            ("synthetic_lab_instructor", "synthetic?instructor=1", "Synthetic lab", 900)):
        page.goto(f"{url}/{path}")
        page.get_by_text(marker, exact=True).first.wait_for(timeout=WAIT_MS)
        screenshot(page, name, height=height)
    assert page.get_by_text("Advanced settings").count() == 0  # instructor mode


def test_warm_start_step_by_step_pause_pace_and_delete_one(server, page):
    url, store = server
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{url}/synthetic?instructor=1&n_samples=400&dim=8&epochs=8&batch_size=16")
    start = page.get_by_role("button", name="Start run")
    start.wait_for(timeout=WAIT_MS)
    wait_until(lambda: any(w["ready_at"] for w in store.workers()), "a warm worker",
               timeout=180)
    warm_pid = store.workers()[0]["pid"]
    page.get_by_text("Step by step (pauses after each epoch)").click()
    time.sleep(1)  # the segmented control's rerun
    start.click()
    page.wait_for_function(FIRST_POINT, timeout=WAIT_MS)
    [run] = store.list_runs()
    assert run["worker_pid"] == warm_pid  # the warm worker took it: no start-up to wait for
    assert_the_chart_grid_fits_the_projector(page)
    screenshot(page, "synthetic_lab_instructor_1280x720", height=720, width=1280,
               from_top=False)

    from divebatch.runs.control_requests import is_paused, request_pace
    wait_until(lambda: is_paused(store, run["id"]), "the pause after epoch 1")
    assert len(store.records(run["id"])) == 1
    page.reload()  # the buttons show the state of the last page run
    resume = page.get_by_role("button", name="Resume")
    resume.wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name="Step").click()
    wait_until(lambda: len(store.records(run["id"])) == 2 and is_paused(store, run["id"]),
               "one more epoch, then paused again")
    assert len(store.records(run["id"])) == 2

    page.locator(f".st-key-syn_play_pace_{run['id']}").click()
    page.get_by_role("option", name=re.compile(r"^Slow")).click()
    wait_until(lambda: any(e["kind"] == "pace" for e in store.events(run["id"])),
               "the pace change")
    # the test's gate: once resumed, the run waits out this pace, so Stop finds it unfinished
    request_pace(store, run["id"], HELD)
    resume.click()
    wait_until(lambda: [e["kind"] for e in store.events(run["id"])].count("resumed") == 2
               and not is_paused(store, run["id"]), "the resume after epoch 2")
    page.locator(".st-key-syn_stop button").click()
    wait_until(lambda: store.get_run(run["id"])["status"] == "stopped", "the stop")
    assert len(store.records(run["id"])) == 2

    other = store.create_run({"problem": "sine", "method": "sgd"}, status="completed")
    page.goto(f"{url}/runs?instructor=0")
    picker = page.locator(".st-key-runs_shown input")
    picker.wait_for(timeout=WAIT_MS)
    for run_id in (run["id"], other):
        picker.click()
        page.get_by_role("option", name=re.compile(rf"^#{run_id} ")).click()
    page.keyboard.press("Escape")
    page.get_by_test_id("stAlertContentWarning").get_by_text("different problems").wait_for(
        timeout=WAIT_MS)
    page.get_by_text(f"Yes, delete run #{run['id']}").click()
    page.get_by_role("button", name="Delete").click()
    page.get_by_text(f"Deleted run #{run['id']} and its records.").wait_for(timeout=WAIT_MS)
    assert store.get_run(run["id"]) is None and store.get_run(other) is not None


def assert_the_chart_grid_fits_the_projector(page) -> None:
    """After Start in instructor mode the page scrolls to the charts, and the legend and the
    charts of the 2x2 grid under it lie inside the 1280x720 window, below Streamlit's header
    (a paused convex run after one epoch has two: its batch size and LR are still lines)."""
    boxes = "() => [...document.querySelectorAll('[data-testid=stPlotlyChart]')]" \
            ".map(e => e.getBoundingClientRect()).map(r => [r.top, r.bottom, r.height])"
    header = "() => document.querySelector('header').getBoundingClientRect().bottom"

    def grid_in_view():
        shown = [box for box in page.evaluate(boxes) if box[2] > 20]  # not the 10 px preload
        below = page.evaluate(header) - 1  # the scroll lands on a whole pixel
        return len(shown) >= 3 and all(below <= top and bottom <= 720
                                       for top, bottom, _ in shown[:5])
    try:
        wait_until(grid_in_view, "the legend and the 2x2 grid inside 1280x720", timeout=20)
    except AssertionError as error:
        raise AssertionError(f"{error}; charts (top, bottom, height): {page.evaluate(boxes)}, "
                             f"header bottom {page.evaluate(header)}")


# --- a class watching: several viewers on one read-only server

def grow(store: RunStore, run_id: int, stop: threading.Event) -> None:
    """An epoch every 0.5 s, as a live worker would write them (this process is the run's
    'worker', so the dashboard sees it alive)."""
    epoch = 0
    while not stop.wait(0.5):
        epoch += 1
        store.append_record(run_id, {"epoch": epoch, "samples_seen": 100 * epoch,
                                     "step": 10 * epoch, "train_time": 0.1,
                                     "batch_size": min(8 * 2 ** (epoch // 5), 64),
                                     "max_batch_size": 64, "lr": 0.1, "delta": 0.1,
                                     "diversity": 0.05, "train_loss": 1 / epoch,
                                     "val_loss": 1.1 / epoch})


def update_line(page) -> str:
    return page.locator("[data-testid=stCaptionContainer]",
                        has_text="Last update").first.inner_text()


def test_three_viewers_watch_a_live_run_on_a_read_only_server(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    run_id = store.create_run({"problem": "least_squares", "method": "divebatch",
                               "epochs": 10_000, "batch_size": 8, "max_batch_size": 64})
    store.mark_running(run_id, os.getpid())
    stop = threading.Event()
    writer = threading.Thread(target=grow, args=(store, run_id, stop))
    writer.start()
    try:
        with dashboard_server(db, env={"DIVEBATCH_ROLE": "viewer"}) as url, \
                sync_api.sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            pages = [browser.new_page(viewport={"width": 1440, "height": 900})
                     for _ in range(3)]
            for page in pages:
                page.goto(f"{url}/runs?runs={run_id}", wait_until="commit")
            for page in pages:  # each viewer loads, and its charts update on their own
                # the page's own content: Streamlit's header shows its own "Stop" (the script
                # run, not a run) while a refresh is under way
                main = page.locator("[data-testid=stMain]")
                main.locator("[data-testid=stPlotlyChart]").nth(3).wait_for(
                    timeout=2 * WAIT_MS)  # three page loads share the cores
                first = update_line(page)
                wait_until(lambda: update_line(page) != first, "an update", timeout=60)
                assert main.get_by_role("button", name="Delete").count() == 0
                assert main.get_by_role("button", name=re.compile("^Stop")).count() == 0
            page = pages[0]
            shot = Path(os.environ.get("DIVEBATCH_SHOTS", tmp_path)) / "runs_viewer.png"
            page.screenshot(path=str(shot), full_page=True)
            banner = page.locator("#divebatch-stale")
            # hidden while updates arrive (on a loaded machine one may come late, and the
            # banner rightly shows until the next one)
            banner.wait_for(state="hidden", timeout=60_000)
            server = server_pid(url)
            os.kill(server, signal.SIGSTOP)  # the server goes quiet; the browser notices
            try:
                banner.wait_for(state="visible", timeout=15_000)
                assert re.match(r"Last update \d+ s ago", banner.inner_text())
                frozen = update_line(page)
            finally:
                os.kill(server, signal.SIGCONT)
            wait_until(lambda: update_line(page) != frozen, "updates to resume", timeout=60)
            banner.wait_for(state="hidden", timeout=60_000)
            browser.close()
    finally:
        stop.set()
        writer.join()
        store.mark_finished(run_id, "stopped")
