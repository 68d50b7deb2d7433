"""What the Sweep and Reproduce pages share: where the runs train (this machine or a Ray
cluster), and the progress line of a group of runs, with Stop."""

from __future__ import annotations

import streamlit as st

from divebatch.runs.ray_backend import LOCAL, RayBackend, RayOptions
from divebatch.runs.store import RunStore
from divebatch.runs.groups import stop_group

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


BACKENDS = {"local": "this machine", "ray": "a Ray cluster"}


def backend_controls(prefix: str) -> None:
    """Inside a form: where the runs train; the Ray settings matter only for "ray"."""
    st.session_state.setdefault(f"{prefix}_backend", "local")
    st.session_state.setdefault(f"{prefix}_ray_address", LOCAL)
    st.session_state.setdefault(f"{prefix}_gpus_per_run", 0.0)
    where, address, gpus = st.columns([2, 2, 1])
    where.radio("train on", list(BACKENDS), format_func=BACKENDS.get, horizontal=True,
                key=f"{prefix}_backend")
    address.text_input("Ray address", key=f"{prefix}_ray_address",
                       help="local (a cluster started for these runs), auto (the running "
                            "cluster) or HOST:PORT of a head node")
    gpus.number_input("GPUs per run", min_value=0.0, max_value=64.0, step=0.25,
                      key=f"{prefix}_gpus_per_run", help="fractions share a GPU")


def chosen_backend(prefix: str) -> RayBackend | None:
    """None for this machine's workers; a RayBackend (ValueError on bad settings)."""
    if st.session_state[f"{prefix}_backend"] != "ray":
        return None
    return RayBackend(RayOptions(address=st.session_state[f"{prefix}_ray_address"].strip(),
                                 gpus_per_run=float(st.session_state[f"{prefix}_gpus_per_run"])))


def form_and_message(draw_form, message_key: str) -> None:
    """A Sweep / Reproduce page's start form (instructors only; viewers see why not), then
    the message its last Start left in session state."""
    roles.read_only_banner()
    if roles.can_change():
        draw_form()
    if st.session_state[message_key]:
        kind, text = st.session_state[message_key]
        getattr(st, kind)(text)
