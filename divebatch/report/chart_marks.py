"""What the charts draw over their lines: a dotted line where each hot change landed, with
its new values ("δ 0.5"; "delta 0.1 → 0.5 at epoch 7" on hover), the stretches where an
adaptive run's batch is capped at B_max (shaded, named by the legend), the fixed x range
that keeps those words from widening the axis, and the x axis's name on every hover. Shapes
and annotations are plain plotly dicts; `colors` gives each run's colour and `runs` are
figures.RunData."""

from __future__ import annotations

import numpy as np

from divebatch.report.hot_limits import ADAPTIVE
from divebatch.report.run_labels import hot_change_short, hot_change_text
from divebatch.report.series import Columns, epoch_ends, epoch_starts


NOTE_ROWS = 3     # hot-change labels stacked above a chart's plot area, then again from the first
NOTE_ROW_PX = 16  # the height of a row of them (11 px type)


def named_x(traces: list[dict], label: str) -> list[dict]:
    """`traces`, their hover naming the x value by the x axis's `label` ("epochs: 3")."""
    for trace in traces:
        if "hovertemplate" in trace:
            trace["hovertemplate"] = trace["hovertemplate"].replace(
                "<br>%{x", f"<br>{label}: %{{x", 1)
    return traces


def notes_margin(notes: list) -> int:
    """Pixels the labels of `notes` need above the plot area (room in the top margin)."""
    return NOTE_ROW_PX * min(len(notes), NOTE_ROWS)


def hot_change_marks(runs: list, colors: list[str], x_axis: str) -> tuple[list, list]:
    """A dotted vertical line at the end of the epoch in which each hot change landed, and
    its new values ("δ 0.5") above the plot area, over the line's top (inside the plot they
    hid the curve's last points); the whole change ("delta 0.1 → 0.5 at epoch 7") shows on
    hover."""
    shapes, notes = [], []
    if not any(event.get("kind") == "hot_change" for d in runs for event in d.events):
        return shapes, notes
    right_half = max((np.nanmax(epoch_ends(d.record_columns, x_axis), initial=0.0)
                      for d in runs), default=0.0) / 2
    for data, color in zip(runs, colors):
        changes = [event for event in data.events if event.get("kind") == "hot_change"]
        if not changes:
            continue
        ends = epoch_ends(data.record_columns, x_axis).tolist()
        by_epoch = {r["epoch"]: x for r, x in zip(data.records, ends)}
        for event in changes:
            x = by_epoch.get(event.get("epoch"), ends[-1] if ends else 0)
            shapes.append(dict(type="line", xref="x", yref="y domain", x0=x, x1=x, y0=0, y1=1,
                               line=dict(color=color, dash="dot", width=1.5)))
            notes.append(dict(
                x=x, xref="x", y=1, yref="y domain", yanchor="bottom",
                yshift=NOTE_ROW_PX * (len(notes) % NOTE_ROWS), showarrow=False,
                text=hot_change_short(event),
                hovertext=hot_change_text(event, data.records, data.run.get("config") or {}),
                xanchor="right" if x > right_half else "left", font=dict(size=11, color=color)))
    return shapes, notes


def capped_spans(columns: Columns, config: dict, x_axis: str) -> list[tuple[float, float]]:
    """(start, end) on the x axis of each stretch of epochs whose batch size is at B_max
    (the record's own B_max, after a hot change, else the config's)."""
    cap = columns["max_batch_size"]
    cap = np.where(np.isnan(cap) | (cap == 0), config.get("max_batch_size") or np.nan, cap)
    capped = np.nan_to_num(columns["batch_size"]) >= cap  # (epochs,); NaN caps compare False
    edges = np.diff(np.concatenate([[0], capped.astype(np.int8), [0]]))
    first, last = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    starts, ends = epoch_starts(columns, x_axis), epoch_ends(columns, x_axis)
    return list(zip(starts[first].tolist(), ends[last].tolist()))


def capped_shading(runs: list, colors: list[str], x_axis: str) -> tuple[list, list]:
    """Shade where an adaptive run's batch is capped at B_max (SGD at B_max always is).
    No words on the chart: the legend's "shaded: capped at B_max" says it (words at the
    foot of the band lay over the small batches' line and markers)."""
    shapes = []
    for data, color in zip(runs, colors):
        config = data.run.get("config") or {}
        if config.get("method") not in ADAPTIVE:
            continue
        for start, end in capped_spans(data.record_columns, config, x_axis):
            shapes.append(dict(type="rect", xref="x", yref="y domain", x0=start, x1=end,
                               y0=0, y1=1, fillcolor=color, opacity=0.1, layer="below",
                               line=dict(width=0)))
    return shapes, []


def fixed_x_range(traces: list[dict], shapes: list[dict]) -> dict:
    """The x range of the data and marks, fixed: plotly's autorange would widen the axis
    to fit an annotation's words (a hot change's label at the right edge stretched the
    axis to -200k examples seen)."""
    xs = [np.asarray(trace["x"], dtype=float) for trace in traces]
    xs += [np.asarray([shape["x0"], shape["x1"]], dtype=float) for shape in shapes
           if shape.get("xref") == "x"]
    values = np.concatenate([np.empty(0), *xs])
    values = values[np.isfinite(values)]
    if not len(values):
        return {}
    low, high = float(values.min()), float(values.max())
    pad = 0.02 * (high - low) or 0.5
    return {"range": [low - pad, high + pad], "autorange": False}
