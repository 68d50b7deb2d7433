"""Streamlit building blocks shared by the pages: the run-config form and the live panel.

Widgets and layout only; every number shown comes from `divebatch` (plots, analysis, jobs).
"""

import sys

import streamlit as st


def ensure_router() -> None:
    """Call first in every page script.

    Streamlit quirk (1.67): on a fresh server, while no script has called st.navigation yet,
    a request for a sub-URL (a reload of /runs after a restart) runs pages/<name>.py directly
    in the legacy pages-folder mode, skipping app.py. Leave that mode and rerun: app.py's
    st.navigation then resolves the same page (url_path = file stem keeps the mapping).
    """
    from streamlit.runtime.pages_manager import PagesManager
    if PagesManager.uses_pages_directory or _run_by_the_legacy_router():
        PagesManager.uses_pages_directory = False
        st.rerun()
    remember_linked_runs()


def _run_by_the_legacy_router() -> bool:
    """True when Streamlit's legacy router (its `_mpa_v1`) runs this page: the flag above is
    global, so when several viewers open a sub-URL of a fresh server at once, the first one
    clears it while the others are already on the legacy path."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_mpa_v1":
            return True
        frame = frame.f_back
    return False


def remember_linked_runs() -> None:
    """The runs a shared link names (`?runs=3,4`), kept in the session before a lab form
    rewrites the address bar; the first run picker the session opens shows them."""
    if "linked_runs" not in st.session_state:
        text = st.query_params.get("runs", "")
        st.session_state.linked_runs = [int(part) for part in text.split(",")
                                        if part.strip().isdigit()]
