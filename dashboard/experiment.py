"""What the Sweep and Reproduce pages share: the page skeleton (title, start form, the
experiment shown and its live results), where the runs train (this machine or a Ray
cluster), and the progress line of a group of runs, with Stop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import streamlit as st

from divebatch.runs.ray_backend import LOCAL, RayBackend, RayOptions
from divebatch.runs.store import RunStore
from divebatch.runs.groups import stop_group

from . import roles
from .store import open_store

RESULTS_EVERY_S = 2.0  # the results' refresh while the experiment's runs train


@dataclass(frozen=True)
class Experiments:
    """How a page reads its kind of experiment (sweeps, reproductions) from the store."""
    load: Callable[[dict], Any]               # the spec from its dict (kept in session state)
    earlier: Callable[[RunStore], list]       # the stored specs, newest first
    results: Callable[[RunStore, Any], Any]   # (store, spec) -> results: .progress, .done


def experiment_page(prefix: str, experiments: Experiments, *, title: str, intro: str,
                    defaults: dict, draw_form: Callable[[], None], empty_note: str,
                    progress_title: Callable[[Any], str], stop_label: str, redo_with: str,
                    draw_results: Callable[[RunStore, Any, Any], None],
                    open_earlier: Callable[[list], None] | None = None) -> None:
    """A Sweep / Reproduce page: session defaults, title and intro, the start form and its
    message, `open_earlier(specs)` (a picker of stored experiments, if any), then the
    experiment in "<prefix>_spec" (else the latest stored one; else `empty_note` and the
    script stops): its progress with Stop and `draw_results(store, spec, results)`,
    refreshed every RESULTS_EVERY_S while its runs train."""
    spec_key = f"{prefix}_spec"
    for key, value in {**defaults, spec_key: None, f"{prefix}_message": None}.items():
        st.session_state.setdefault(key, value)
    store = open_store()
    st.title(title)
    st.markdown(intro)
    form_and_message(draw_form, f"{prefix}_message")
    earlier = experiments.earlier(store)
    if open_earlier and earlier:
        open_earlier(earlier)
    if earlier and st.session_state[spec_key] is None:
        st.session_state[spec_key] = earlier[0].to_dict()  # the latest one
    if st.session_state[spec_key] is None:
        st.info(empty_note)
        st.stop()
    spec = experiments.load(st.session_state[spec_key])
    running = not experiments.results(store, spec).done

    @st.fragment(run_every=RESULTS_EVERY_S if running else None)
    def show_results():
        result = experiments.results(store, spec)
        group_progress(store, spec.group, result.progress, progress_title(spec),
                       done=result.done, stop_label=stop_label, stop_key=f"{prefix}_stop",
                       redo_with=redo_with)
        if running and result.done:
            st.rerun()  # the whole page: timers off, final state
        draw_results(store, spec, result)

    show_results()


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
