"""Plotly figures for sweeps and the reproduction: heatmaps, curves, speed-up bars.

Built from the plain rows of divebatch.experiments.sweeps / divebatch.experiments.reproduce;
no numerics here beyond arranging those rows on axes.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from divebatch.report.chart_style import style_of_variant
from divebatch.experiments.sweeps import BASELINE
from divebatch.experiments.verdicts import format_mean_se

LOG10_2 = 0.30103  # a log axis with dtick = log10(2) has a tick at every power of two
AXIS_TITLES = {"delta": "delta", "max_batch_size": "B_max", "resize_every": "R (epochs)"}
HEATMAP_METRICS = {  # key -> (title, colour scale)
    "speedup": ("speed-up vs SGD baseline (x)", "RdBu"),   # coloured by log2, white at 1x
    "final": ("final {metric}", "Viridis"),
    "samples_to_target": ("examples seen to own-1pt", "Cividis"),
}
SPEEDUP_TICKS = (-3, -2, -1, 0, 1, 2, 3, 4)  # log2 of the speed-up


def heatmap(cells: list[dict], metric_key: str, x_field: str, y_field: str,
            fixed: dict | None = None, metric_name: str = "accuracy") -> go.Figure:
    """One metric's mean over seeds on an x_field by y_field grid; the text shows mean ±
    standard error. `fixed` picks the slice along the remaining grid axes. Each cell carries
    its label as customdata so a click (a point selection) names it."""
    fixed = fixed or {}
    rows = [c for c in cells if c["cell"] != BASELINE
            and all(c[k] == v for k, v in fixed.items())]
    xs = sorted({r[x_field] for r in rows})
    ys = sorted({r[y_field] for r in rows})
    at = {(r[x_field], r[y_field]): r for r in rows}
    z, text, labels = [], [], []
    scale = 100.0 if metric_key == "final" and metric_name == "accuracy" else 1.0
    colour = (lambda v: math.log2(v)) if metric_key == "speedup" else (lambda v: v * scale)
    for y in ys:
        cells_in_row = [at.get((x, y)) for x in xs]
        z.append([None if c is None or c[metric_key] is None else colour(c[metric_key])
                  for c in cells_in_row])
        text.append([_cell_text(c, metric_key, scale) for c in cells_in_row])
        labels.append([c["label"] if c else "" for c in cells_in_row])
    colors = HEATMAP_METRICS[metric_key][1]
    title = metric_title(metric_key, metric_name) + _narrow_scale_note(z, metric_key, scale)
    x_text, y_text = [_tick(v) for v in xs], [_tick(v) for v in ys]
    values = {v for row in z for v in row if v is not None}
    # one value (a sweep whose first cell just finished) has no scale: plotly would invent
    # one around it (-0.4 to 0.4 for a loss of 0.0046); the cell's own text says it
    colour_axis = {"colorbar": {"title": {"text": ""}}, "showscale": len(values) > 1}
    if metric_key == "speedup":
        colour_axis = {"zmid": 0.0, "colorbar": {"tickvals": SPEEDUP_TICKS, "ticktext": [
            f"{2.0 ** t:g}x" for t in SPEEDUP_TICKS]}}
    figure = go.Figure(go.Heatmap(
        x=x_text, y=y_text, z=z, text=text, texttemplate="%{text}", textfont={"size": 12},
        colorscale=colors, customdata=labels,
        hovertemplate="%{customdata}<br>%{text}<extra></extra>", **colour_axis))
    # invisible markers on the cell centres: plotly selects points, not heatmap cells
    figure.add_trace(go.Scatter(
        x=[x for _ in y_text for x in x_text], y=[y for y in y_text for _ in x_text],
        customdata=[label for row in labels for label in row], mode="markers",
        marker={"size": 40, "opacity": 0.0}, hoverinfo="none", showlegend=False))
    figure.update_layout(title=title, xaxis_title=AXIS_TITLES[x_field],
                         yaxis_title=AXIS_TITLES[y_field], height=340,
                         margin={"l": 60, "r": 20, "t": 50, "b": 50}, clickmode="event+select")
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    return figure


def metric_title(metric_key: str, metric_name: str = "accuracy") -> str:
    scale = metric_key == "final" and metric_name == "accuracy"
    return HEATMAP_METRICS[metric_key][0].format(metric=metric_name + (" (%)" if scale else ""))


def _narrow_scale_note(z: list[list], metric_key: str, scale: float) -> str:
    """Say so when an accuracy colour scale spans under 1 point: its colours exaggerate."""
    values = [v for row in z for v in row if v is not None]
    if metric_key != "final" or scale != 100.0 or len(values) < 2:
        return ""
    span = max(values) - min(values)
    return f"<br><sup>all cells within {span:.2f} points</sup>" if span < 1.0 else ""


def _tick(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell_text(cell: dict | None, key: str, scale: float) -> str:
    if cell is None or cell[key] is None:
        return "running" if cell and cell["finished"] < cell["planned"] else ""
    if key == "samples_to_target":
        se = cell[key + "_se"]
        text = f"{cell[key]:,.0f}" + ("" if se is None else f" ± {se:,.0f}")
    else:
        text = format_mean_se(cell[key], cell[key + "_se"], scale=scale)
    if cell["finished"] < cell["planned"]:
        text += f" ({cell['finished']}/{cell['planned']})"
    return text


# A legend under the plot, clear of the x tick labels and title above it (plotly pushes the
# bottom margin to fit it); nearer, it covered them under a projector's larger type.
LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0}


def curves(runs: list[dict], metric_name: str = "accuracy") -> go.Figure:
    """Validation metric against cumulative training time, and batch size per epoch.

    `runs`: dicts with "label", "records" and "method" (a chart_style variant key, e.g.
    "sgd_small" for a baseline; a paper_setup.METHODS label also names its method).
    """
    key = "val_acc" if metric_name == "accuracy" else "val_loss"
    shown = metric_name if metric_name.startswith("validation") else f"validation {metric_name}"
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        f"{shown} vs training time", "batch size per epoch"))
    seen: dict[str, int] = {}
    for run in runs:
        records = run["records"]
        elapsed, times = 0.0, []
        for record in records:
            elapsed += float(record.get("train_time") or 0.0)
            times.append(elapsed)
        color, dash = _method_style(run, seen)
        line = {"color": color, "dash": dash}
        figure.add_trace(go.Scatter(x=times, y=[r.get(key) for r in records], name=run["label"],
                                    mode="lines+markers", line=line, legendgroup=run["label"]),
                         row=1, col=1)
        figure.add_trace(go.Scatter(x=[r["epoch"] for r in records],
                                    y=[r.get("batch_size") for r in records], name=run["label"],
                                    mode="lines+markers", line={**line, "shape": "hv"},
                                    legendgroup=run["label"], showlegend=False), row=1, col=2)
    figure.update_xaxes(title_text="training seconds (evaluation excluded)", row=1, col=1)
    figure.update_xaxes(title_text="epoch", row=1, col=2)
    figure.update_yaxes(title_text=metric_name, row=1, col=1)
    figure.update_yaxes(title_text="batch size", type="log", dtick=LOG10_2, row=1, col=2)
    figure.update_layout(height=420, margin={"l": 60, "r": 20, "t": 50, "b": 50},
                         legend={**LEGEND_BELOW, "y": -0.3})
    return figure


def _method_style(run: dict, seen: dict[str, int]) -> tuple[str, str]:
    """The run's method's colour and dash (chart_style), the next shade for a repeat."""
    from divebatch.experiments.paper_setup import METHODS
    variant = run.get("method") or {v: k for k, v in METHODS.items()}.get(run["label"], "")
    seen[variant] = seen.get(variant, 0) + 1
    return style_of_variant(variant, seen[variant] - 1)


def method_bars(result, value: str) -> go.Figure:
    """Grouped bars per benchmark (the paper's three first), one bar per method, with
    standard-error bars: value "speedup" (x over SGD small batch) or "final_change" (points).
    `result` is a reproduce.ReproResults."""
    from divebatch.experiments.paper_setup import METHODS, PAPER, paper_change, paper_speedup
    paper_value = paper_speedup if value == "speedup" else paper_change
    scale = 1.0 if value == "speedup" else 100.0
    names = [f"paper: {d}" for d in PAPER] + [f"ours: {k}" for k in result.benchmarks()]
    figure = go.Figure()
    for method, label in METHODS.items():
        if method == "sgd_small":
            continue
        ys, errors = [], []
        for dataset in PAPER:
            ys.append(paper_value(dataset, method) if method in PAPER[dataset] else None)
            errors.append(None)
        for key in result.benchmarks():
            cell = result.cells[(key, method)]
            ys.append(None if cell[value] is None else cell[value] * scale)
            errors.append(None if cell[value + "_se"] is None else cell[value + "_se"] * scale)
        figure.add_trace(go.Bar(x=names, y=ys, name=label, marker_color=style_of_variant(method)[0],
                                error_y={"type": "data", "array": errors, "visible": True}))
    reference = 1.0 if value == "speedup" else 0.0
    figure.add_trace(go.Scatter(x=[names[0], names[-1]], y=[reference, reference], mode="lines",
                                line={"dash": "dot", "color": "gray"},
                                name="SGD, small batch (reference)"))
    title = ("speed-up over SGD at the small batch (time to own-1pt, log scale)"
             if value == "speedup" else "final accuracy minus SGD's at the small batch (points)")
    figure.update_layout(title=title, barmode="group", height=460,
                         margin={"l": 60, "r": 20, "t": 50, "b": 40},
                         legend=LEGEND_BELOW, xaxis={"tickangle": 0})
    if value == "speedup":
        figure.update_yaxes(type="log", tickvals=[0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100])
    return figure


def reproduce_figures(result, curves_by_benchmark: dict) -> dict[str, go.Figure]:
    """Every figure of the reproduction report, by name."""
    from divebatch.experiments.paper_setup import BENCHMARKS
    figures = {"speed-ups": method_bars(result, "speedup"),
               "accuracy changes": method_bars(result, "final_change")}
    for key, runs in curves_by_benchmark.items():
        figure = curves([{"label": label, "records": records} for label, records in runs])
        figure.update_layout(title=f"{BENCHMARKS[key].title} (seed {result.spec.seeds[0]})",
                             margin={"t": 80})
        figures[f"curves: {key}"] = figure
    return figures
