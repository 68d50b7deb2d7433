"""dashboard.instructor's scroll requests: a Start asks for the charts, a race's end for its
verdict only as the sequel of that page's Start."""

from streamlit.testing.v1 import AppTest


def _ask(calls: list[bool]) -> None:
    import streamlit as st

    from dashboard.instructor import ask_for_charts
    for verdict in calls:
        st.session_state.pop("syn_scroll", None)
        ask_for_charts("syn", verdict=verdict)
        st.session_state.setdefault("asked", []).append(st.session_state.get("syn_scroll"))


def asked(calls: list[bool]) -> list[dict | None]:
    at = AppTest.from_function(_ask, args=(calls,)).run()
    assert not at.exception
    return at.session_state["asked"]


def test_a_race_end_on_a_page_that_started_nothing_asks_for_no_scroll():
    assert asked([True]) == [None]


def test_a_race_end_follows_the_last_start_and_a_new_start_starts_anew():
    first, end, second, second_end = asked([False, True, False, True])
    assert end["start"] == first["start"] and end["id"] != first["id"]
    assert second["start"] != first["start"] and second_end["start"] == second["start"]
