"""In chromium, on a real server: the Runs page's animation expander, a speed click and the
GIF button download the race's GIF, made on click by the server (Streamlit's deferred
download), at the chosen speed."""


import pytest
from PIL import Image

from tests.helpers.serve import browser_or_skip, dashboard_server, launch_chromium
from divebatch.runs.store import RunStore
from tests.helpers.races import stored_race

pytestmark = pytest.mark.browser
sync_api = browser_or_skip()

WAIT_MS = 120_000  # a busy 2-core machine: the page, then the file made on click


def test_the_runs_page_downloads_the_race_as_a_gif_at_the_chosen_speed(tmp_path):
    db = tmp_path / "runs.db"
    ids = stored_race(RunStore(db))
    with dashboard_server(db, env={"DIVEBATCH_WARM_WORKERS": "0"}) as url, \
            sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900},
                                    accept_downloads=True)
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{url}/runs?runs={','.join(map(str, ids))}")
            page.get_by_text("Animation of this race").click()
            page.get_by_text("fast (10 epochs/s)").click()
            button = page.get_by_role("button", name="Download GIF")
            page.get_by_text("--format gif --speed fast").wait_for()  # the rerun with it
            with page.expect_download(timeout=WAIT_MS) as download:
                button.click()
            path = tmp_path / download.value.suggested_filename
            download.value.save_as(path)
        finally:
            browser.close()
    assert path.name == f"divebatch-race-{'-'.join(map(str, ids))}.gif"
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.info["duration"] == 100
