"""The dashboard through Streamlit's AppTest: open the app (on a page, with link parameters),
poll a page until a condition holds (fragment timers never fire in AppTest), element texts."""

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
DEADLINE_S = 90  # seconds a poll waits for runs that train in worker processes


def open_app(page: str | None = None, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query or {})
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def poll(at: AppTest, condition, what: str, timeout: float = DEADLINE_S):
    """at.run() until condition() is true (the fragment's timer does this in a browser),
    then once more so that the page shows the state that met the condition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        if condition():
            at.run()
            return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def sidebar_text(at: AppTest) -> str:
    """The sidebar's markdown as one line (a tour card's step, title and words)."""
    return " ".join(m.value for m in at.sidebar.markdown)


def set_numbers(at: AppTest, prefix: str, **values) -> None:
    """Type each value into the number field `<prefix>_<name>`, then rerun the page."""
    for name, value in values.items():
        at.number_input(key=f"{prefix}_{name}").set_value(value)
    at.run()
