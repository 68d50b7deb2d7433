"""Streamlit building blocks shared by the pages: the run-config form and the live panel.

Widgets and layout only; every number shown comes from `divebatch` (plots, analysis, jobs).
"""

import streamlit as st


def remember_linked_runs() -> None:
    """The runs a shared link names (`?runs=3,4`), kept in the session before a lab form
    rewrites the address bar; the first run picker the session opens shows them."""
    if "linked_runs" not in st.session_state:
        text = st.query_params.get("runs", "")
        st.session_state.linked_runs = [int(part) for part in text.split(",")
                                        if part.strip().isdigit()]
