"""Malformed URL query parameters on the lab pages: refused as a whole with an st.error,
never an exception, never half-applied."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from streamlit.testing.v1 import AppTest

from divebatch.config import config_fields
from divebatch.presets import PRESETS

APP = str(Path(__file__).resolve().parents[2] / "app.py")
LAB_PAGES = ("app_pages/synthetic.py", "app_pages/images.py")
DEFAULT_PRESET = {"app_pages/synthetic.py": ("syn", "convex"),  # (form prefix, preset) per page
                  "app_pages/images.py": ("img", "digits_race")}
FIELD_NAMES = [f.name for f in config_fields()]
NASTY = ["nan", "NaN", "inf", "-inf", "1e999", "-1", "0", "9" * 5000, "", " ", "\x00",
         "true", "[1, 2]", "{}", "0x10", "1_000", "٣", "<script>alert(1)</script>",
         "../../etc/passwd", "'; DROP TABLE runs; --", "%00", "\u202e", "a" * 5000]


def open_page(page: str, query: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    at.run()
    at.switch_page(page).run()
    return at


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


def check_refused_or_applied(at: AppTest, query: dict) -> None:
    """No exception; an error naming the refusal, or (all values valid) a success."""
    assert not at.exception, at.exception
    if at.error:
        assert "were refused" in texts(at.error)
    else:
        assert "Settings loaded from the link" in texts(at.success), query


@pytest.mark.parametrize("page", LAB_PAGES)
@pytest.mark.parametrize("query", [
    {"lr": "nan"}, {"epochs": "9" * 5000}, {"seed": "-1", "delta": "inf"},
    {"problem": "<script>alert(1)</script>"}, {"no_such_field": "1"},
    {"augment": "maybe"},
    {"name": "\x00"}, {"n_samples": "10000000", "dim": "100000"},
])
def test_malformed_links_are_refused_with_an_error(page, query):
    at = open_page(page, query)
    assert not at.exception, at.exception
    assert "were refused" in texts(at.error)
    prefix, preset = DEFAULT_PRESET[page]
    expected = PRESETS[preset].config()  # the page's default: nothing from the link
    for name in ("problem", "epochs", "seed", "batch_size", "max_batch_size", "delta", "lr"):
        assert at.session_state[f"{prefix}_{name}"] == getattr(expected, name)


@pytest.mark.parametrize("page", LAB_PAGES)
def test_a_link_keeps_its_good_settings_and_names_the_refused_one_by_label(page):
    at = open_page(page, {"batch_size": "512", "max_batch_size": "64"})
    assert not at.exception, at.exception
    error = texts(at.error)
    assert "the others were applied" in error and "max_batch_size" not in error
    prefix, _ = DEFAULT_PRESET[page]
    assert at.session_state[f"{prefix}_batch_size"] == 512
    assert at.session_state[f"{prefix}_max_batch_size"] != 64


QUERY = st.dictionaries(
    st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12)),
    st.one_of(st.sampled_from(NASTY), st.text(max_size=30)),
    min_size=1, max_size=4)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(page=st.sampled_from(LAB_PAGES), query=QUERY)
def test_fuzzed_links_never_raise(page, query):
    query.pop("instructor", None)
    if not query:
        return
    check_refused_or_applied(open_page(page, query), query)
