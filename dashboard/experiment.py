"""What the Sweep and Reproduce pages share: the progress line of a group of runs, with Stop."""

from __future__ import annotations

import streamlit as st

from divebatch.store import RunStore
from divebatch.sweeps import stop_group

from . import roles


def group_progress(store: RunStore, group: str, counts: dict, title: str, *, done: bool,
                   stop_label: str, stop_key: str, redo_with: str) -> None:
    """A progress bar over the group's runs (counts: finished, total, running, queued, to_do)
    and a button that stops its queued and running runs (finished ones are kept)."""
    head, stop = st.columns([4, 1])
    text = (f"{title}: {counts['finished']} of {counts['total']} runs finished, "
            f"{counts['running']} running, {counts['queued']} queued")
    if counts["to_do"]:
        text += f", {counts['to_do']} stopped or failed ({redo_with} redoes them)"
    head.progress(counts["finished"] / max(counts["total"], 1), text=text)
    if roles.can_change():
        stop.button(stop_label, key=stop_key, disabled=done, on_click=_stop_group,
                    args=(store, group))


def _stop_group(store: RunStore, group: str) -> None:
    if roles.require_instructor("stop"):
        st.toast(f"stopping {len(stop_group(store, group))} runs; finished runs are kept")
