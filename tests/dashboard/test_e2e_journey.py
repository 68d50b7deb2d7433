"""Every page through the life of its runs, in a real browser (Debian's chromium through
playwright), as a class would see it: an empty store, a lab before Start, a run paused,
stepped, hot-changed, finished, deleted while viewed and killed; a race from first point to
verdict; a reproduction and a sweep, running and done. Normal mode at 1440x900, instructor mode at
1280x720.

Every page visited is checked for what a class must never see: an exception element, a
chart without y tick labels, a cut label, a chart title under the modebar; and, over the whole
module, no request leaves the server, and the server's log holds no traceback and no
deprecation warning. What must be on screen at once is asserted where it matters: Start and
Race before a run, the charts with their legend while it runs, the charts with the verdict
after a race.

Every wait is on an event (an element, a text, a record count), never a fixed sleep. With
$DIVEBATCH_SCREENSHOTS set (scripts/screenshots.sh), each state is saved as a picture of the
whole page, named page_state[_instructor].png.
"""

import os
import re
import signal
import threading
from functools import partial
from pathlib import Path

import pytest

from tests.helpers.gates import click_until, stop_runs_and_wait, wait_for
from tests.helpers.serve import browser_or_skip, FIRST_POINT, dashboard_server, launch_chromium
from divebatch.runs.store import RunStore

pytestmark = pytest.mark.browser
sync_api = browser_or_skip()

SHOTS = os.environ.get("DIVEBATCH_SCREENSHOTS")
WAIT_MS = 60_000
wait_until = partial(wait_for, timeout=WAIT_MS / 1000, poll_s=0.1)  # page polls
NORMAL, PROJECTOR = (1440, 900), (1280, 720)
PAGES = {"home": ("", "How it works"), "learn": ("learn", "Learn: gradient diversity"),
         "synthetic": ("synthetic", "Synthetic lab"), "images": ("images", "Image lab"),
         "runs": ("runs", "Runs"), "sweep": ("sweep", "Sweep"),
         "reproduce": ("reproduce", "Reproduce the paper")}
TINY = "n_samples=400&dim=8&batch_size=16&max_batch_size=256"
LONG = "n_samples=2000&dim=20&batch_size=8&max_batch_size=256&epochs=2000&progress_every=0.5"
RACE = ("problem=classification&n_samples=1600&epochs=16&batch_size=16&max_batch_size=256"
        "&delta=0.02&resize_every=2&lr=0.05&momentum=0.9&schedule=cosine")

# Charts drawn (not the 10 px preload, not the legend) whose y axis shows no tick label.
CHARTS_WITHOUT_Y_TICKS = """() => [...document.querySelectorAll('.js-plotly-plot')]
  .filter(e => e._fullLayout && e.getBoundingClientRect().height > 40
          && e._fullLayout.yaxis && e._fullLayout.yaxis.visible !== false)
  .filter(e => ![...e.querySelectorAll('.ytick text')].some(t => t.textContent.trim()))
  .map(e => (e._fullLayout.title && e._fullLayout.title.text) || 'untitled chart')"""
# Button and widget labels cut short by their column (text overflowing its box).
CUT_LABELS = """() => [...document.querySelectorAll(
    '[data-testid=stMain] button *, [data-testid=stMain] [data-testid=stWidgetLabel] *')]
  .filter(e => e.offsetParent && e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
  .map(e => e.innerText)"""
# Chart titles that the modebar, shown on hover, would cover (it is laid out, transparent,
# before the pointer comes).
TITLES_UNDER_MODEBAR = """() => [...document.querySelectorAll('.js-plotly-plot')]
  .filter(e => e.getBoundingClientRect().height > 40)
  .map(e => [e.querySelector('.gtitle'), e.querySelector('.modebar')])
  .filter(([title, bar]) => title && bar && bar.getBoundingClientRect().width > 0)
  .filter(([title, bar]) => {
    const t = title.getBoundingClientRect(), b = bar.getBoundingClientRect();
    return t.right > b.left && t.bottom > b.top && t.top < b.bottom; })
  .map(([title]) => title.textContent)"""
# The page's script run is over and the browser has drawn all it sent (no skeleton left:
# a busy browser draws the elements seconds after the script ended).
SCRIPT_DONE = """() => document.querySelector('[data-testid=stApp]')
    ?.getAttribute('data-test-script-state') === 'notRunning'
  && !document.querySelector('[data-testid=stSkeleton], [data-testid=stStatusWidget]')"""
BOX = "(e) => { const r = e.getBoundingClientRect(); return [r.top, r.bottom]; }"
HEADER = "() => document.querySelector('header').getBoundingClientRect().bottom"
PLOTS_DRAWN = ("() => [...document.querySelectorAll('[data-testid=stPlotlyChart]')]"
               ".every(e => e.querySelector('.main-svg'))")
# ... and painted at their current size, after two animation frames (for the pictures).
PLOTS_PAINTED = """() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(
  () => done([...document.querySelectorAll('.js-plotly-plot')].every(e => {
    const svg = e.querySelector('.main-svg');
    return svg && Math.abs(svg.getBoundingClientRect().width
                           - e.getBoundingClientRect().width) < 2
      && (e.getBoundingClientRect().height < 40 || e.querySelector('.plot .trace, .legend'));
  })))))"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One dashboard for the module (one worker slot, one warm worker), its log kept."""
    from divebatch.runs import warm_pool
    folder = tmp_path_factory.mktemp("journey")
    store, log = RunStore(folder / "runs.db"), folder / "server.log"
    env = {"DIVEBATCH_MAX_WORKERS": "1", "DIVEBATCH_WARM_WORKERS": "1"}
    with dashboard_server(folder / "runs.db", env=env, log=log) as url:
        try:
            yield url, store, log
        finally:
            stop_runs_and_wait(store)
            warm_pool.stop_warm_workers(store)
    said = log.read_text(errors="replace")
    assert "Traceback" not in said, said[-4000:]
    assert not re.search(r"deprecat", said, re.IGNORECASE), said[-4000:]


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


class Viewer:
    """A browser tab on the dashboard that records every request leaving the server and
    checks each state it is asked to look at."""

    def __init__(self, browser, url: str, size: tuple[int, int], instructor: bool):
        self.url, self.size, self.instructor = url, size, instructor
        self.page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        self.page.set_default_timeout(WAIT_MS)
        self.outside: list[str] = []
        self.page.on("request", self._request)

    def _request(self, request) -> None:
        if not request.url.startswith((self.url, "data:", "blob:", "about:")):
            self.outside.append(request.url)

    def open(self, path: str, marker: str) -> None:
        flag = "instructor=1" if self.instructor else "instructor=0"
        self.page.goto(f"{self.url}/{path}{'&' if '?' in path else '?'}{flag}")
        self.main.get_by_text(marker, exact=True).first.wait_for()
        self.page.wait_for_function(SCRIPT_DONE)

    @property
    def main(self):
        return self.page.locator("[data-testid=stMain]")

    def check(self, state: str) -> None:
        """What no page may show, in any state; then its picture."""
        page = self.page
        page.wait_for_function(SCRIPT_DONE)
        page.wait_for_function(PLOTS_DRAWN)
        assert page.locator("[data-testid=stException]").count() == 0, \
            page.locator("[data-testid=stException]").first.inner_text()
        assert page.evaluate(CHARTS_WITHOUT_Y_TICKS) == [], state
        assert page.evaluate(CUT_LABELS) == [], state
        assert page.evaluate(TITLES_UNDER_MODEBAR) == [], state
        assert self.outside == [], self.outside
        if SHOTS:
            self.screenshot(state + ("_instructor" if self.instructor else ""))

    def screenshot(self, name: str) -> None:
        """The whole page: Streamlit scrolls inside its main area, so the window grows to
        its height for the picture."""
        page = self.page
        height = page.evaluate("() => document.querySelector('[data-testid=stMain]')"
                               ".scrollHeight")
        page.set_viewport_size({"width": self.size[0], "height": max(height, self.size[1])})
        page.mouse.move(0, 0)  # no tooltip in the picture
        page.wait_for_function(PLOTS_PAINTED)
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))
        page.set_viewport_size({"width": self.size[0], "height": self.size[1]})

    def in_view(self, locator) -> bool:
        """Whether the element lies wholly inside the window, below Streamlit's header."""
        if not locator.count():
            return False
        top, bottom = locator.first.evaluate(BOX)
        return self.page.evaluate(HEADER) <= top + 1 and bottom <= self.size[1] + 1

    def wait_in_view(self, *locators, what: str) -> None:
        wait_until(lambda: all(self.in_view(loc) for loc in locators), what)

    def charts(self):
        return self.main.locator("[data-testid=stPlotlyChart]:not([class*=_chart_legend])"
                                 ":not([class*=_preload])")

    def legend(self):
        return self.main.locator("[class*=_chart_legend]")


@pytest.fixture
def fresh(served):
    """The module's dashboard with an empty store after the test."""
    url, store, _ = served
    try:
        yield url, store
    finally:
        stop_runs_and_wait(store)
        store.delete_runs()


def test_normal_mode_pages_through_a_runs_life(fresh, browser):
    url, store = fresh
    viewer = Viewer(browser, url, NORMAL, instructor=False)
    page = viewer.page
    for name, (path, marker) in PAGES.items():  # the empty store
        viewer.open(path, marker)
        viewer.check(f"{name}_empty")
        if name in ("synthetic", "images"):
            viewer.wait_in_view(viewer.main.get_by_role("button", name="Start run"),
                                viewer.main.get_by_role("button", name="Race the 4 methods"),
                                what="Start and Race in view before a run")

    # a whole number too large for the browser's own int input (over 2**53) reaches
    # validation's error; the browser once kept the last good value, which Start then ran
    viewer.open("synthetic", "Synthetic lab")
    for name in ("epochs", "seed"):
        field = page.locator(f".st-key-syn_{name} input")
        field.fill("100000000000000000000")
        field.press("Tab")
        viewer.main.get_by_text(f"but got {name}=100000000000000000000").wait_for()
    assert page.get_by_role("button", name="Start run").is_disabled()
    viewer.check("synthetic_huge_numbers")

    # a step-by-step run: paused after epoch 1, the charts and legend in view
    viewer.open(f"synthetic?{TINY}&epochs=6", "Synthetic lab")
    page.get_by_text("Step by step (pauses after each epoch)").click()
    page.locator(".st-key-syn_start_pace [aria-checked=true], "
                 ".st-key-syn_start_pace [kind=segmented_controlActive]").first.wait_for()
    page.get_by_role("button", name="Start run").click()
    page.wait_for_function(FIRST_POINT)
    wait_until(lambda: len(store.list_runs()) == 1, "the run")
    run_id = store.list_runs()[0]["id"]
    caption = viewer.main.get_by_text(f"Run #{run_id} is paused after epoch 1.")
    caption.wait_for()
    viewer.wait_in_view(viewer.legend(), viewer.charts().first,
                        what="the legend and a chart in view after Start")
    assert page.get_by_role("button", name="Pause").is_disabled()
    viewer.check("synthetic_paused")

    page.get_by_role("button", name="Step").click()
    viewer.main.get_by_text(f"Run #{run_id} is paused after epoch 2.").wait_for()
    assert len(store.records(run_id)) == 2
    viewer.check("synthetic_stepped")

    # a hot change while paused, two fields typed as a user does (Tab between them: the form
    # starts no page run until Apply), sent as one change; the legend and the resize note
    # follow it at once
    for name, value in (("delta", "0.5"), ("resize_every", "4")):
        field = page.locator(f".st-key-syn_hot_{name}_{run_id} input")
        field.fill(value)
        field.press("Tab")
    for name, value in (("delta", "0.5"), ("resize_every", "4")):
        assert page.locator(f".st-key-syn_hot_{name}_{run_id} input").input_value() == value
    click_until(page.locator(".st-key-syn_hot_apply button").first,
                lambda: any(e["kind"] == "hot_change" for e in store.events(run_id)),
                "the hot change stored")
    hot = [e["payload"] for e in store.events(run_id) if e["kind"] == "hot_change"]
    assert hot == [{"delta": 0.5, "resize_every": 4}]
    # the legend is drawn where it is in view (a picture taken before leaves the page at its
    # top): look at it, as the user does
    viewer.legend().first.scroll_into_view_if_needed()
    page.locator("svg text", has_text="-> 0.5)").first.wait_for()  # legend: delta=0.1 -> 0.5
    viewer.main.get_by_text("The next resize is at the end of epoch 4").wait_for()
    viewer.check("synthetic_hot_changed")

    page.get_by_role("button", name="Resume").click()
    viewer.main.get_by_text("idle: no run on the charts is active").wait_for()
    assert store.get_run(run_id)["status"] == "completed"
    viewer.check("synthetic_finished")

    # the Runs page: a row clicked selects the run; deleted elsewhere while viewed
    viewer.open("runs", "Runs")
    grid = viewer.main.locator("[data-testid=stDataFrame]").first
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)  # the first row's tick box
    page.get_by_role("button", name="CSV (records)").wait_for()
    assert f"#{run_id} " in viewer.main.locator(".st-key-runs_shown").inner_text()
    viewer.charts().first.wait_for()
    viewer.check("runs_selected")
    store.delete_run(run_id)  # as another instructor would, from their own tab
    viewer.main.get_by_role("button", name="Refresh").click()  # a finished run: no timer
    viewer.main.get_by_text("No runs stored yet").wait_for()
    viewer.check("runs_deleted_while_viewed")

    # a worker killed mid-run: the run is marked interrupted, its records kept
    viewer.open(f"synthetic?{LONG}", "Synthetic lab")
    page.get_by_text("Real time", exact=True).click()
    page.get_by_role("button", name="Start run").click()
    page.wait_for_function(FIRST_POINT)
    wait_until(lambda: any(r["worker_pid"] for r in store.list_runs(status="running")),
               "the running run's worker")
    [run] = store.list_runs()
    viewer.check("synthetic_running")
    os.kill(run["worker_pid"], signal.SIGKILL)
    viewer.main.get_by_text("was interrupted").first.wait_for()
    assert store.get_run(run["id"])["status"] == "interrupted"
    viewer.check("synthetic_worker_killed")
    viewer.open(f"runs?runs={run['id']}", "Runs")
    viewer.charts().first.wait_for()
    viewer.check("runs_interrupted")


def test_instructor_mode_race_and_reproduction(fresh, browser):
    url, store = fresh
    viewer = Viewer(browser, url, PROJECTOR, instructor=True)
    page = viewer.page
    viewer.open(f"synthetic?{RACE}", "Synthetic lab")
    viewer.wait_in_view(viewer.main.get_by_role("button", name="Start run"),
                        viewer.main.get_by_role("button", name="Race the 4 methods"),
                        what="Start and Race in view before a run")
    viewer.check("synthetic_before_start")

    page.get_by_role("button", name="Race the 4 methods").click()
    page.wait_for_function(FIRST_POINT)
    viewer.wait_in_view(viewer.legend(), viewer.charts().first,
                        what="the legend and a chart in view while the race runs")
    assert {run["config"]["problem"] for run in store.list_runs()} == {"classification"}
    viewer.check("synthetic_racing")

    viewer.main.get_by_text("idle: no run on the charts is active").wait_for()
    verdict = viewer.main.locator(".st-key-syn_verdict")
    viewer.wait_in_view(verdict, viewer.charts().nth(0), viewer.charts().nth(1),
                        what="the verdict and the first row of charts in view together")
    assert "Verdict:" in verdict.inner_text()
    assert {run["status"] for run in store.list_runs()} == {"completed"}
    viewer.check("synthetic_race_finished")

    viewer.open("runs", "Runs")  # the race's runs, none selected
    viewer.check("runs_race")

    # a reproduction trained by this process (as the CLI would): the page while its runs
    # go, with benchmarks that have no finished run yet, and when it is done
    from divebatch.experiments import reproduce
    spec = reproduce.ReproSpec(scale="tiny", benchmarks=("convex",), seeds=(0,))
    trainer = threading.Thread(target=reproduce.run_here, args=(store, spec))
    trainer.start()
    try:
        wait_until(lambda: store.list_runs(group=spec.group), "the reproduction's first run")
        viewer.open("reproduce", "Reproduce the paper")
        viewer.check("reproduce_running")
    finally:
        trainer.join()
    total = len(spec.plan())
    viewer.main.get_by_text(re.compile(rf"{total} of {total} runs finished")).wait_for()
    viewer.main.locator("[data-testid=stPlotlyChart]").nth(2).wait_for()
    viewer.check("reproduce_finished")

    from divebatch.experiments import sweeps
    sweep = sweeps.SweepSpec(base={"problem": "least_squares", "n_samples": 400, "dim": 8,
                                   "epochs": 3, "batch_size": 8, "max_batch_size": 64},
                             deltas=(0.1, 0.5), max_batch_sizes=(64,), resize_everys=(1,))
    trainer = threading.Thread(target=sweeps.run_here, args=(store, sweep))
    trainer.start()
    try:
        wait_until(lambda: store.list_runs(group=sweep.group), "the sweep's first run")
        viewer.open("sweep", "Sweep")
        viewer.check("sweep_running")
    finally:
        trainer.join()
    total = len(sweep.plan())
    viewer.main.get_by_text(re.compile(rf"{total} of {total} runs finished")).wait_for()
    viewer.check("sweep_finished")
