"""Instructor mode, for a projector (1280x720): larger type, big Start / Race buttons, only
the preset and the three DiveBatch knobs on the lab form, the setup folded away after Start
and the page scrolled to the charts. On with the sidebar toggle or `?instructor=1`, which
every page keeps in its address while the mode is on."""

from __future__ import annotations

import streamlit as st

FIELDS = ("delta", "max_batch_size", "resize_every")  # the lab form's only knobs
LIVE_ANCHOR = "live"  # the live panel's header

# Streamlit sizes its text in rem: a larger root font scales the whole page (about 1.4x).
STYLE = """<style>
html { font-size: 22px; }
.stButton button, .stFormSubmitButton button { min-height: 3.2rem; font-size: 1.15rem; }
</style>"""


def instructor_mode() -> bool:
    return bool(st.session_state.get("instructor"))


def keep_in_address() -> None:
    """`instructor=1` in every page's address while the mode is on, so that a reload (F5)
    keeps it; out of the address while it is off. Other parameters stay."""
    if instructor_mode():
        if st.query_params.get("instructor") != "1":
            st.query_params["instructor"] = "1"
    elif "instructor" in st.query_params:
        del st.query_params["instructor"]


def apply_style() -> None:
    """The projector's style, when instructor mode is on (call once per script run)."""
    if instructor_mode():
        st.html(STYLE)


def scroll_to_charts(anchor: str) -> None:
    """Scroll the page to the verdict above the charts, else their legend, once drawn, and
    keep it there while the controls above it appear (until it has stayed put for 3 s, for
    at most a minute; until then, to the element with id `anchor`, a header's anchor).
    The target's top lands just under Streamlit's header."""
    st.html(
        "<script>(() => { let tries = 0, still = 0;"
        "const go = () => { const drawn = document.querySelector("
        "'[class*=_verdict], [class*=_chart_legend]');"
        f" const target = drawn || document.getElementById('{anchor}');"
        " if (target) { const header = document.querySelector('header');"
        " const margin = header ? header.getBoundingClientRect().bottom : 0;"
        " target.style.scrollMarginTop = margin + 'px';"
        " const off = Math.abs(target.getBoundingClientRect().top - margin);"
        " if (off > 3) { target.scrollIntoView({block: 'start'}); still = 0; }"
        " else if (drawn) { still++; } }"
        " if (still < 30 && tries++ < 600) setTimeout(go, 100); }; go(); })();</script>",
        unsafe_allow_javascript=True)
