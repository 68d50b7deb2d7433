"""dashboard.growing's messages: a page that applies them as the browser does (keep the first
`keep` points of each trace, append the new ones; a whole chart replaces it) holds exactly
the latest figures, whatever changed between them."""

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from dashboard import growing


def spec(*traces, layout=None, mode="lines") -> dict:
    return {"data": [{"type": "scatter", "mode": mode, "x": np.asarray(x, float),
                      "y": np.asarray(y, float)} for x, y in traces],
            "layout": layout or {"height": 320}}


serials = iter(range(1, 10**6))


def version(*specs, notes=()) -> growing.Version:
    return growing.Version(f"test-{next(serials)}", tuple(
        (f"chart{i}", growing.prepare(s, {})) for i, s in enumerate(specs)), tuple(notes))


def apply(page: dict | None, message: dict) -> dict:
    """The browser's side (growing_charts.js), in Python: {name: (layout, [[x, y], ...])}."""
    if message["base"] is not None:
        assert page is not None and page["serial"] == message["base"]
    charts = dict(page["charts"]) if page else {}
    for name, entry in message["figures"].items():
        if "full" in entry:
            charts[name] = (entry["full"]["layout"],
                            [[t["x"], t["y"]] for t in entry["full"]["data"]])
        else:
            layout, traces = charts[name]
            charts[name] = (entry.get("layout", layout),
                            [[x[:keep] + xs, y[:keep] + ys] for (x, y), (keep, xs, ys, *_)
                             in zip(traces, entry["traces"])])
    return {"serial": message["serial"],
            "charts": {name: charts[name] for name in message["order"]}}


def listed(part: growing.Prepared) -> list:
    return [[growing.listed(x), growing.listed(y)] for x, y in zip(part.xs, part.ys)]


def test_a_first_answer_is_whole_and_the_next_sends_only_new_points():
    first = version(spec(([0, 1, 2], [5, 4, 3])))
    message = growing.message(None, first)
    assert message["base"] is None and "full" in message["figures"]["chart0"]
    grown = version(spec(([0, 1, 2, 3], [5, 4, 3, 2])))
    message = growing.message(first, grown)
    assert message["base"] == first.serial and message["serial"] == grown.serial
    assert message["figures"]["chart0"] == {"traces": [[3, [3.0], [2.0]]]}  # no layout: same


def test_nothing_is_sent_for_a_chart_not_rebuilt():
    first = version(spec(([0, 1], [1, 2])))
    same = growing.Version("test-same", first.parts, ())
    assert growing.message(first, same)["figures"] == {}


def test_a_changed_point_resends_from_it_and_a_new_layout_comes_along():
    first = version(spec(([0, 1, 2], [1, 2, 3])))
    message = growing.message(first, version(spec(([0, 1, 2.5, 3], [1, 2, 3, 4]),
                                                  layout={"height": 200})))
    assert message["figures"]["chart0"] == {"traces": [[2, [2.5, 3.0], [3.0, 4.0]]],
                                            "layout": {"height": 200}}


def test_missing_and_infinite_values_go_as_null():
    first = version(spec(([0, 1], [math.nan, 1])))
    message = growing.message(first, version(spec(([0, 1, 2], [math.nan, 1, math.inf]))))
    assert message["figures"]["chart0"]["traces"] == [[2, [2.0], [None]]]


def test_a_chart_whose_traces_changed_comes_whole_and_the_others_still_grow():
    first = version(spec(([0], [1])), spec(([0], [1])))
    message = growing.message(first, version(spec(([0, 1], [1, 2]), ([0], [3])),
                                             spec(([0, 1], [1, 2]))))
    assert "full" in message["figures"]["chart0"] and "traces" in message["figures"]["chart1"]
    assert message["base"] == first.serial


def test_an_answer_is_encoded_once_for_every_page_one_version_behind():
    first, second = version(spec(([0], [1]))), version(spec(([0, 1], [1, 2])))
    assert growing.encoded_message(first, second) is growing.encoded_message(first, second)


def test_a_version_this_process_does_not_keep_is_none():
    assert growing.held("another-process-1") is None and growing.held(None) is None


def test_customdata_grows_with_its_points_and_a_trace_gaining_some_comes_whole():
    """The batch-size chart's proposals off the chart carry their values as customdata."""
    def edge(n):
        return {"data": [{"type": "scatter", "mode": "markers", "x": np.arange(n, dtype=float),
                          "y": np.full(n, 90.0), "customdata": 1000.0 * np.arange(n)}],
                "layout": {"height": 320}}
    first, grown = version(edge(2)), version(edge(3))
    whole = growing.message(None, first)["figures"]["chart0"]["full"]["data"][0]
    assert whole["customdata"] == [0.0, 1000.0]
    assert growing.message(first, grown)["figures"]["chart0"] == {
        "traces": [[2, [2.0], [90.0], [2000.0]]]}
    changed = edge(3)
    changed["data"][0]["customdata"][1] = 5.0  # a value changed, its point did not
    assert growing.message(grown, version(changed))["figures"]["chart0"]["traces"] == [
        [1, [1.0, 2.0], [90.0, 90.0], [5.0, 2000.0]]]
    plain = version(spec(([0, 1], [90, 90]), mode="markers"))
    assert "full" in growing.message(plain, first)["figures"]["chart0"]


values = st.lists(st.one_of(st.floats(-5, 5), st.just(math.nan)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(values, st.booleans(), st.booleans()), min_size=1, max_size=6))
def test_a_page_applying_every_message_holds_the_latest_figures(updates):
    """Oracle: each figure's arrays written out, against the page's after each message."""
    page, had = None, None
    for ys, lines, tall in updates:
        figure = spec((list(range(len(ys))), ys), layout={"height": 300 if tall else 200},
                      mode="lines" if lines else "markers")
        latest = version(figure, spec(([0, 1], [len(ys), 1])))
        page, had = apply(page, growing.message(had, latest)), latest
        for name, part in latest.parts:
            layout, traces = page["charts"][name]
            assert traces == listed(part) and layout == part.layout
