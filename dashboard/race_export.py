"""The race as an animation, for slides: download buttons under a page's runs that make an
animated GIF or MP4 of the charts growing epoch by epoch (divebatch.report.animation), with
the verdict on the last frame. The file is made when a button is clicked, from the store,
with the chart options the page's panel shows."""

from __future__ import annotations

import streamlit as st

from divebatch.report import animation
from divebatch.report.animation_settings import DEFAULT_SPEED, FORMATS, SPEEDS
from divebatch.report.figures import ChartOptions
from divebatch.runs.store import RunStore

from .store import open_store

MIME = {"gif": "image/gif", "mp4": "video/mp4"}


def download_panel(prefix: str, run_ids: list[int]) -> None:
    """An expander with a speed choice and a GIF and an MP4 button for `run_ids` (named for
    a run, or a race of 2 or more); st.error (and no buttons) when they make no race: none,
    an unknown one, different problems."""
    what = "this run" if len(run_ids) == 1 else "this race"
    with st.expander(f"Animation of {what} (GIF, MP4) for slides"):
        store = open_store()
        try:
            animation.check_race(animation.stored_runs(store, run_ids))
        except animation.AnimationError as error:
            st.error(f"No animation: {error}.")
            return
        if not any(last for _, last in store.record_counts(run_ids).values()):
            st.info("The animation can be made once an epoch is recorded.")
            return
        speed = st.segmented_control(
            "Speed", list(SPEEDS), default=DEFAULT_SPEED, required=True,
            key=f"{prefix}_animation_speed",
            format_func=lambda name: f"{name} ({SPEEDS[name]} epochs/s)")
        options = _chart_options(prefix)
        columns = st.columns(len(FORMATS))
        for column, fmt in zip(columns, FORMATS):
            column.download_button(
                f"Download {fmt.upper()}",
                file_maker(str(store.path), run_ids, options, fmt, speed),
                file_name=animation.file_name(run_ids, fmt), mime=MIME[fmt],
                key=f"{prefix}_animation_{fmt}", on_click="ignore", width="stretch")
        st.caption(f"One frame per epoch (at most {animation.MAX_FRAMES}), drawn from the "
                   f"stored records with the charts' x axis and scale; the verdict stays on "
                   f"the last frame for {animation.HOLD_S:g} s. Made when you click (a few "
                   f"seconds). From a terminal: `divebatch export "
                   f"{' '.join(map(str, run_ids))} --format gif --speed {speed}`.")


def _chart_options(prefix: str) -> ChartOptions:
    """The options the page's chart panel shows (dashboard.live.chart_options), else its
    defaults."""
    state = st.session_state
    try:
        return ChartOptions(x_axis=state.get(f"{prefix}_x_axis", "samples_seen"),
                            log_y=bool(state.get(f"{prefix}_log_y", True)),
                            smoothing=float(state.get(f"{prefix}_smoothing", 0.0)),
                            diversity_view=state.get(f"{prefix}_diversity_view", "diversity"))
    except (TypeError, ValueError):
        return ChartOptions(log_y=True)


def file_maker(db: str, run_ids: list[int], options: ChartOptions, fmt: str, speed: str):
    """The button's data: called by Streamlit on click, outside the script run."""
    def make() -> bytes:
        race = animation.build_race(animation.load_runs(RunStore(db), run_ids), options)
        return animation.export_bytes(race, fmt, speed)
    return make
