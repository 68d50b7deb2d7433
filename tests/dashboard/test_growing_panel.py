"""dashboard.growing_panel.enabled: growing charts only where this process serves their
route, and only when DIVEBATCH_LIVE_CHARTS asks for them (the former path by default)."""

import pytest

from dashboard import growing_panel, live_route


@pytest.mark.parametrize("served, mode, grows", [
    (False, "grow", False),  # `streamlit run app.py`, AppTest: no route to poll
    (True, "grow", True), (True, " Grow ", True),
    (True, "full", False), (True, "", True), (True, None, True),  # grow: the default
])
def test_enabled_needs_the_route_and_not_the_former_path(monkeypatch, served, mode, grows):
    monkeypatch.setattr(live_route, "SERVED", served)
    if mode is None:
        monkeypatch.delenv(growing_panel.MODE_ENV, raising=False)
    else:
        monkeypatch.setenv(growing_panel.MODE_ENV, mode)
    assert growing_panel.enabled() is grows
