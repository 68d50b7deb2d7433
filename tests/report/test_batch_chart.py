"""The batch-size chart as divebatch.report.figures builds it: the y range of the batch sizes
and B_max, DiveBatch's proposals off it on the plot's edge with their values (the range rule
itself is tested in test_batch_axis.py)."""

import math

import pytest

from divebatch.report import figures as plots
from divebatch.report.figures import ChartOptions, RunData
from tests.helpers.figure_data import record, run


def climbing(epochs=6, cap=64):
    """DiveBatch capped at B_max = `cap` from epoch 3 while its proposal δ·n·Δ̂ (n = 100)
    climbs past it to 500 times B_max, as on the convex preset (51,200 against 2048)."""
    return [record(e, batch_size=min(8 * 4 ** (e - 1), cap), max_batch_size=cap,
                   diversity=8 * 10 ** (e - 1) / 10) for e in range(1, epochs + 1)]


@pytest.mark.parametrize("log_y", [True, False])
def test_proposals_above_the_batch_range_sit_on_its_top_edge_with_their_values(log_y):
    spec = plots.figure_specs([RunData(run(), climbing())],
                              ChartOptions(x_axis="epoch", log_y=log_y))["batch_size"]
    axis = spec["layout"]["yaxis"]
    low, high = [10 ** v for v in axis["range"]] if log_y else axis["range"]
    assert axis["autorange"] is False
    assert low < (8 if log_y else 0) and 64 < high < 200  # batch sizes, B_max and headroom
    steps, inside, above = spec["data"]
    assert list(steps["y"]) == [8, 32, 64, 64, 64, 64, 64]
    proposals = [8.0, 80.0, 800.0, 8000.0, 80000.0, 800000.0]  # 0.1 * 100 * Δ̂
    assert list(above["x"]) == [1, 2, 3, 4, 5, 6]
    edge = [y for y in above["y"] if not math.isnan(y)]
    assert len(set(edge)) == 1 and 64 < edge[0] < high  # one height: the top edge, inside
    off = [p > edge[0] for p in proposals]  # every proposal above it: a triangle there
    assert off == [False, True, True, True, True, True]
    assert [y for y in inside["y"] if not math.isnan(y)] == \
        pytest.approx([p for p, o in zip(proposals, off) if not o])
    assert [c for c in above["customdata"] if not math.isnan(c)] == \
        pytest.approx([p for p, o in zip(proposals, off) if o])  # the real values, for hover
    assert above["marker"]["symbol"] == "triangle-up"
    assert "%{customdata:,.0f}" in above["hovertemplate"]  # "proposal 80,000: above the chart"
    assert "above the chart" in above["hovertemplate"] and "above the chart" in above["name"]
    legend = [t["name"] for t in plots.legend_spec([RunData(run(), climbing())],
                                                   ChartOptions(log_y=log_y))["data"]]
    assert "proposal above the chart" in legend  # after its triangle
    go_figure = plots.batch_size_figure([RunData(run(), climbing())], ChartOptions(log_y=log_y))
    assert go_figure.data[2].marker.symbol == "triangle-up"  # plotly takes the spec


def test_the_batch_range_keeps_b_max_and_the_proposals_inside_it_stay_dots():
    records = [record(1, diversity=0.5), record(2, diversity=1.0)]  # B 8, 16; proposals 5, 10
    spec = plots.figure_specs([RunData(run(max_batch_size=2048), records)],
                              ChartOptions(log_y=True))["batch_size"]
    low, high = [10 ** v for v in spec["layout"]["yaxis"]["range"]]
    assert low < 5 and 2048 < high < 3 * 2048  # B_max = 2048 (the config's) is in view
    assert len(spec["data"]) == 2 and spec["data"][1]["marker"].get("symbol") is None
    assert "1000" in spec["layout"]["yaxis"]["ticktext"]  # ticks over the whole range
    legend = [t["name"] for t in plots.legend_spec([RunData(run(), records)])["data"]]
    assert not [name for name in legend if "chart" in name]
    sgd = plots.figure_specs([RunData(run(method="sgd", max_batch_size=2048), records)],
                             ChartOptions(log_y=True))["batch_size"]
    assert 10 ** sgd["layout"]["yaxis"]["range"][1] < 100  # SGD never grows to B_max


def test_a_proposal_below_the_batch_range_sits_on_its_bottom_edge():
    records = [record(1, batch_size=32, diversity=0.001), record(2, batch_size=64, diversity=3)]
    spec = plots.figure_specs([RunData(run(), records)],
                              ChartOptions(log_y=True))["batch_size"]
    below = spec["data"][2]
    low = 10 ** spec["layout"]["yaxis"]["range"][0]
    assert below["marker"]["symbol"] == "triangle-down" and low < below["y"][0] < 32
    assert below["customdata"][0] == pytest.approx(0.01) and math.isnan(below["y"][1])
