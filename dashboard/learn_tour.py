"""The Learn page's guided tour: a card in the sidebar that walks through the page's own
figures, one outlined at a time, with the lab tour's ideas on the page's toy problem; its
last step sends the class to the Synthetic lab's tour on a real run.

Like the lab's tour, its state (the step shown) lives in the store (`RunStore.set_tour`,
page "learn"), so a viewer of the read-only twin shows the instructor's step within one
refresh; only the instructor's page moves it. The steps and their words come from
`divebatch.report.learn_tour`; each page fills them with its own numbers.

As in the lab, a page that took part in the tour (started or moved it, or showed it while it
was under way) keeps it to its end; a page opened once it is over (on its last step, or left
unmoved: see `divebatch.report.learn_tour.is_over`) offers a new one instead, which replaces it.
"""

from __future__ import annotations

import streamlit as st

from divebatch.report import tour
from divebatch.report.learn_tour import PAGE, STEPS, is_over, shown_index, started
from divebatch.report.tour import Step

from . import pacing, roles
from .store import open_store
from .tour import COMPACT, IDLE_POLL_S, show_step

LAB_PAGE = "app_pages/synthetic.py"


def learn_tour(steps: list[Step]) -> None:
    """The card, for the page's steps (learn_tour.learn_steps of its numbers)."""
    every = pacing.refresh_interval() if _shown(steps) else IDLE_POLL_S
    with st.sidebar:
        st.fragment(run_every=every)(_card)(steps)


def _shown(steps: list[Step]) -> dict | None:
    """The tour this session shows: the store's, unless it is over and this session took no
    part in it (then the card offers a new one). Showing it while it is under way is taking
    part: the session keeps it to its end."""
    state = open_store().get_tour(PAGE)
    if state is None:
        return None
    joined = f"{PAGE}_tour_joined"
    started_at = state.get("started_at")  # None in a state stored before tours were stamped
    if started_at is not None and st.session_state.get(joined) == started_at:
        return state
    if is_over(state, steps):
        return None
    st.session_state[joined] = started_at
    return state


def _card(steps: list[Step]) -> None:
    state = _shown(steps)
    with st.container(border=True, key=f"{PAGE}_tour"):
        if state is None:
            _invitation(steps)
            return
        index = shown_index(state, steps)
        st.html(COMPACT.format(prefix=PAGE))
        if roles.can_change():
            _buttons(index, len(steps))
        else:
            st.caption("The instructor moves the tour; this page follows it.")
        show_step(PAGE, steps[index], index, len(steps))
        if index == len(steps) - 1:
            st.page_link(LAB_PAGE, label="The lab's tour", icon=":material/science:")


def _invitation(steps: list[Step]) -> None:
    st.markdown("**Guided tour**")
    if roles.can_change():
        st.caption(f"Up to {len(STEPS)} short steps over this page's figures.")
        st.button("Take the guided tour", key=f"{PAGE}_tour_start", width="stretch",
                  icon=":material/tour:", on_click=_start, args=(steps,))
    else:
        st.caption("No guided tour under way.")


def _buttons(index: int, total: int) -> None:
    back, forward = st.columns(2)
    back.button("Back", key=f"{PAGE}_tour_back", disabled=index == 0, width="stretch",
                on_click=_move, args=(index - 1,))
    forward.button("Next", key=f"{PAGE}_tour_next", type="primary", width="stretch",
                   disabled=index >= total - 1, on_click=_move, args=(index + 1,))
    st.button("Leave the tour", key=f"{PAGE}_tour_leave", width="stretch", on_click=_leave)


def _start(steps: list[Step]) -> None:
    if roles.require_instructor("tour") and _shown(steps) is None:
        open_store().set_tour(PAGE, started())  # replaces a tour that is over
    # else a second click, another tab: join the tour under way


def _move(index: int) -> None:
    if roles.require_instructor("tour"):
        store = open_store()
        store.set_tour(PAGE, tour.moved_to(store.get_tour(PAGE) or started(), index))


def _leave() -> None:
    if roles.require_instructor("tour"):
        open_store().set_tour(PAGE, None)
