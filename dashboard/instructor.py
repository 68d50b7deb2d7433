"""Instructor mode, for a projector (1280x720): larger type, big Start / Race buttons, only
the preset and the three DiveBatch knobs on the lab form, the setup folded away after Start
and the page scrolled to the charts. On with the sidebar toggle or `?instructor=1`, which
every page keeps in its address while the mode is on."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import streamlit as st

FIELDS = ("delta", "max_batch_size", "resize_every")  # the lab form's only knobs
LIVE_ANCHOR = "live"  # the live panel's header
SCROLL_SCRIPT = (Path(__file__).parent / "scroll_to_charts.js").read_text()

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


def ask_for_charts(prefix: str, verdict: bool = False) -> None:
    """Have the lab page's next run scroll to the charts: after a Start (a new request),
    or, with `verdict`, to a race's verdict as it ends: the sequel of this page's last Start
    (or of its opening on runs training, `watch_from_open`), so never on a page that started
    nothing (a viewer following the instructor keeps what
    they look at), and left out by the browser once the user has clicked, scrolled or typed
    since that Start."""
    start = st.session_state.get(f"{prefix}_scroll_start")
    if verdict and start is None:
        return
    if not verdict:
        start = uuid.uuid4().hex
        st.session_state[f"{prefix}_scroll_start"] = start
    st.session_state[f"{prefix}_scroll"] = {"id": uuid.uuid4().hex, "start": start}


def watch_from_open(prefix: str) -> None:
    """A page that opens on runs training (the instructor's reload during a race) counts as
    having started them: their race's end lands on its verdict (ask_for_charts) unless the
    user has clicked, scrolled or typed since the page opened. Nothing scrolls now."""
    start = st.session_state.setdefault(f"{prefix}_scroll_start", uuid.uuid4().hex)
    call = json.dumps({"id": uuid.uuid4().hex, "start": start, "watch": True})
    st.html(f"<script>({SCROLL_SCRIPT})({call});</script>", unsafe_allow_javascript=True)


def scroll_to_charts(prefix: str, anchor: str) -> None:
    """The scroll asked for, if any (see scroll_to_charts.js; `anchor`: the id of the
    element to steer to until the charts are drawn), in this page run only: it goes once
    Streamlit has taken the script, whose loop lives on in the browser."""
    request = st.session_state.get(f"{prefix}_scroll")
    if request:
        call = json.dumps({**request, "anchor": anchor})
        st.html(f"<script>({SCROLL_SCRIPT})({call});</script>", unsafe_allow_javascript=True)
        del st.session_state[f"{prefix}_scroll"]
