"""The lower half of both lab pages: presets, the config form, Start / Race, and the live panel."""

from __future__ import annotations

import streamlit as st

from dashboard import form, live, roles
from dashboard.common import open_store

RUNS_TO_PICK_FROM = 60  # the newest runs of the lab's problems offered for the charts


def form_and_live_panel(prefix: str, problems: tuple[str, ...],
                        hidden: tuple[str, ...]) -> None:
    """Everything below a lab page's header, for runs of `problems`; `hidden` fields do not
    apply to them and stay off the form."""
    if roles.can_change():
        form.preset_picker(prefix, problems)
        config = form.config_form(prefix, problems, hidden=hidden)
        form.start_buttons(prefix, config, form.runnable_problem(config) if config else None)
    else:
        roles.read_only_banner()
    form.show_the_code(prefix)

    st.header("Live")
    store = open_store()
    newest = store.list_runs(limit=RUNS_TO_PICK_FROM)
    linked = [run for run in map(store.get_run, st.session_state.get("linked_runs", []))
              if run and run["id"] not in {r["id"] for r in newest}]
    candidates = [run for run in newest + linked
                  if run["config"].get("problem") in problems]
    live.live_panel(prefix, live.run_picker(prefix, candidates))
