"""Who may change things on this dashboard server: the instructor, or nobody (a viewer).

`DIVEBATCH_ROLE=viewer` makes the whole server read-only: every control that starts, stops,
changes, resumes or deletes a run is hidden, and its callback refuses when a crafted request
invokes it anyway. The instructor serves a second, read-only dashboard on the same store for
the class (`scripts/dashboard.sh --viewer`) and keeps their own on 127.0.0.1. A role is per
server, not per session: nothing a browser sends can raise it.

Every callback that changes the store starts with `if not require_instructor("what"): return`;
`can_change()` decides whether to draw a control at all.
"""

from __future__ import annotations

import os

import streamlit as st

ROLE_ENV = "DIVEBATCH_ROLE"
ROLES = ("instructor", "viewer")
READ_ONLY_NOTE = ("Read-only dashboard: you can watch, pick runs and export them; starting, "
                  "stopping and changing runs is for the instructor's dashboard.")


def server_role() -> str:
    """'instructor' (the default) or 'viewer'; an unknown value reads as 'viewer' (fail
    closed) and role_problem() says so."""
    role = os.environ.get(ROLE_ENV, "").strip().lower() or "instructor"
    return role if role in ROLES else "viewer"


def role_problem() -> str | None:
    role = os.environ.get(ROLE_ENV, "").strip().lower()
    if role and role not in ROLES:
        return (f"{ROLE_ENV} should be one of {', '.join(ROLES)}, but got {ROLE_ENV}="
                f"{role!r}: this dashboard is read-only until it is fixed.")
    return None


def can_change() -> bool:
    """True when this server may start, stop, change, resume or delete runs."""
    return server_role() == "instructor"


def require_instructor(action: str) -> bool:
    """First line of every callback that changes something: False (and a toast saying
    why) on a read-only server, so the change is never made."""
    if can_change():
        return True
    st.session_state["refused_action"] = action
    st.toast(f"Refused: {action} is not allowed on this read-only dashboard.",
             icon=":material/block:")
    return False


def read_only_banner() -> None:
    """One line at the top of a page whose controls are hidden."""
    problem = role_problem()
    if problem:
        st.error(problem)
    elif not can_change():
        st.info(READ_ONLY_NOTE, icon=":material/visibility:")
