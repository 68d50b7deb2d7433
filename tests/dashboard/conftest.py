"""Fixtures of the real-browser tests: one dashboard server per test module, its store emptied
between tests."""

import pytest

from divebatch.runs.store import RunStore
from tests.helpers.gates import stop_runs_and_wait
from tests.helpers.serve import dashboard_server, launch_chromium

PROJECTOR_WAIT_MS = 90_000


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """One dashboard (one worker slot, one warm worker, so that a Start's first point comes at
    once) for the tests of a module: a server's start-up and first page cost about 15 s on 2
    cores."""
    from divebatch.runs import warm_pool
    db = tmp_path_factory.mktemp("dashboard") / "runs.db"
    store = RunStore(db)
    env = {"DIVEBATCH_MAX_WORKERS": "1", "DIVEBATCH_WARM_WORKERS": "1"}
    with dashboard_server(db, env=env) as url:
        try:
            yield url, store
        finally:  # never leave workers training into a deleted folder
            stop_runs_and_wait(store)
            warm_pool.stop_warm_workers(store)


@pytest.fixture
def server(dashboard):
    """The shared dashboard, its store emptied of runs for the next test."""
    url, store = dashboard
    try:
        yield url, store
    finally:
        stop_runs_and_wait(store)
        store.delete_runs()


@pytest.fixture
def page():
    """A chromium page in a projector's 1280x720 window, its waits 90 s by default (a module
    that needs another window defines its own `page`)."""
    from tests.helpers.serve import browser_or_skip
    with browser_or_skip().sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.set_default_timeout(PROJECTOR_WAIT_MS)
            yield page
        finally:
            browser.close()
