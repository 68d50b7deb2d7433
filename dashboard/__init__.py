"""Streamlit building blocks shared by the pages: the run-config form and the live panel.

Widgets and layout only; every number shown comes from `divebatch` (plots, analysis, the run queue).
"""

import streamlit as st


def remember_linked_runs(known) -> None:
    """The runs a shared link names (`?runs=3,4`), kept in the session before a lab form
    rewrites the address bar; the first run picker the session opens shows them.
    `known(run_id) -> bool`: whether the store holds the run; the others, and parts that
    are no run id, are kept in "linked_runs_refused" for the picker to name."""
    if "linked_runs" not in st.session_state:
        parts = [part.strip() for part in st.query_params.get("runs", "").split(",")
                 if part.strip()]
        ids = [int(part) for part in parts if part.isdigit()]
        st.session_state.linked_runs = [run_id for run_id in ids if known(run_id)]
        st.session_state.linked_runs_refused = [
            f"#{part}" if part.isdigit() else repr(part) for part in parts
            if not part.isdigit() or not known(int(part))]
