"""Plotly figures for the Learn page, drawn from divebatch.report.learn's numbers."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from divebatch.report.learn import PointSummary, ToyProblem, loss_surface

WINDOW = (-3.0, 3.0)       # both weights: the sliders' range and the contour's
CLICK_GRID = 41            # invisible points per axis that make the contour clickable
ARROW_FRACTION = 0.35      # the longest arrow spans this fraction of the window
PATH_COLOUR, MEAN_COLOUR = "#444444", "#d62728"  # descent path, mean arrow: never alike
SAMPLE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                  "#17becf", "#bcbd22")


def arrow_scale(summary: PointSummary) -> float:
    """One factor for every arrow, so their lengths compare: the longest per-sample arrow
    gets ARROW_FRACTION of the window (the mean is never longer than the longest)."""
    lengths = np.linalg.norm(summary.gradients, axis=1)
    longest = float(lengths.max())
    return ARROW_FRACTION * (WINDOW[1] - WINDOW[0]) / longest if longest > 0 else 1.0


def gradient_field(problem: ToyProblem, summary: PointSummary,
                   path: np.ndarray | None = None) -> go.Figure:
    """Loss contours; at w, each sample's pull -g_i and the mean pull -(sum_i g_i)/n as
    arrows (the direction SGD would move); w*; optionally a gradient-descent path. Invisible
    grid points make a click select a new w."""
    axis = np.linspace(*WINDOW, 121)
    figure = go.Figure(go.Contour(
        x=axis, y=axis, z=np.log10(loss_surface(problem, axis, axis)), colorscale="Greys",
        reversescale=True, showscale=False, contours={"coloring": "lines"}, ncontours=24,
        hovertemplate="w1=%{x:.2f}, w2=%{y:.2f}<extra>log10 loss %{z:.2f}</extra>"))
    clicks = np.linspace(*WINDOW, CLICK_GRID)
    figure.add_trace(go.Scatter(
        x=np.repeat(clicks, CLICK_GRID), y=np.tile(clicks, CLICK_GRID), mode="markers",
        marker={"size": 12, "opacity": 0.0}, hoverinfo="none", showlegend=False,
        name="click to move w"))
    if path is not None:
        figure.add_trace(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers",
                                    marker={"size": 4, "color": PATH_COLOUR},
                                    line={"color": PATH_COLOUR, "width": 1, "dash": "dot"},
                                    name="gradient descent from w"))
    optimum = problem.optimum
    figure.add_trace(go.Scatter(x=[optimum[0]], y=[optimum[1]], mode="markers",
                                marker={"symbol": "star", "size": 16, "color": "gold",
                                        "line": {"color": "black", "width": 1}},
                                name="optimum w*"))
    scale = arrow_scale(summary)
    for index, gradient in enumerate(summary.gradients):
        _arrow(figure, summary.w, -gradient * scale, SAMPLE_COLOURS[index % len(SAMPLE_COLOURS)],
               2, f"−g{index + 1} (sample {index + 1})")
    mean = summary.gradient_sum / len(summary.gradients)
    _arrow(figure, summary.w, -mean * scale, MEAN_COLOUR, 4, "−Σg/n (mean)")
    # w last, so that it is drawn above the path and the arrows that start at it
    figure.add_trace(go.Scatter(x=[summary.w[0]], y=[summary.w[1]], mode="markers",
                                marker={"size": 13, "color": "black",
                                        "line": {"color": "white", "width": 2}}, name="w"))
    figure.update_layout(height=560, margin={"l": 40, "r": 10, "t": 30, "b": 40},
                         xaxis={"range": WINDOW, "title": "w1", "constrain": "domain"},
                         yaxis={"range": WINDOW, "title": "w2", "scaleanchor": "x"},
                         legend={"x": 1.02, "y": 1.0}, clickmode="event+select",
                         dragmode="pan")
    return figure


def _arrow(figure: go.Figure, start: np.ndarray, vector: np.ndarray, colour: str,
           width: int, name: str) -> None:
    """A line trace (named in the legend) with an arrowhead annotation at its end."""
    end = start + vector
    figure.add_trace(go.Scatter(x=[start[0], end[0]], y=[start[1], end[1]], mode="lines",
                                line={"color": colour, "width": width}, name=name,
                                hoverinfo="skip"))
    figure.add_annotation(x=end[0], y=end[1], ax=start[0], ay=start[1], xref="x", yref="y",
                          axref="x", ayref="y", showarrow=True, arrowhead=2, arrowsize=1.3,
                          arrowwidth=2, arrowcolor=colour, text="")


def diversity_along_path(along: dict[str, list[float]]) -> go.Figure:
    """Delta and n*Delta (log scale) and the loss along the gradient-descent iterates."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        "diversity along the path", "mean loss along the path"))
    figure.add_trace(go.Scatter(x=along["step"], y=along["yin_bound"], name="n·Δ (Yin's bound)",
                                mode="lines+markers"), row=1, col=1)
    figure.add_trace(go.Scatter(x=along["step"], y=along["diversity"], name="Δ",
                                mode="lines+markers"), row=1, col=1)
    figure.add_trace(go.Scatter(x=along["step"], y=along["loss"], name="loss",
                                mode="lines+markers", line={"color": "gray"}), row=1, col=2)
    figure.update_yaxes(type="log", dtick=1, exponentformat="power")  # a tick per decade
    figure.update_xaxes(title_text="gradient-descent step")
    figure.update_layout(height=330, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                         legend={"orientation": "h", "y": -0.4})
    return figure


def batch_along_path(steps: list[int], proposals: list[float], batch_sizes: list[int],
                     max_batch_size: int) -> go.Figure:
    """delta * n * Delta at each iterate against the batch size the rule keeps."""
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=steps, y=proposals, name="δ · n · Δ", mode="lines",
                                line={"dash": "dot"}))
    figure.add_trace(go.Scatter(x=steps, y=batch_sizes, name="B after the rule",
                                mode="lines+markers", line={"shape": "hv"}))
    figure.add_trace(go.Scatter(x=[steps[0], steps[-1]], y=[max_batch_size] * 2, mode="lines",
                                name="B_max", line={"dash": "dash", "color": "gray"}))
    figure.update_layout(height=320, margin={"l": 50, "r": 10, "t": 30, "b": 40},
                         xaxis_title="gradient-descent step (a resize at every step)",
                         yaxis={"title": "batch size", "type": "log", "dtick": 0.30103},
                         legend={"orientation": "h", "y": -0.4})
    return figure


def critical_batch_chart(trade_off: dict[str, np.ndarray], b_simple: float,
                         b_noise: float) -> go.Figure:
    """Steps and examples for the same progress against B (log-log), relative to their
    minima, with B_simple and the critical batch size B_noise marked."""
    figure = go.Figure()
    batches = trade_off["batch_size"]
    figure.add_trace(go.Scatter(x=batches, y=trade_off["steps"], name="steps S(B) / S_min",
                                mode="lines+markers"))
    figure.add_trace(go.Scatter(x=batches, y=trade_off["examples"], mode="lines+markers",
                                name="examples E(B) / E_min"))
    marks = ((b_simple, "B_simple", "dot", "right", 1.0), (b_noise, "B_noise", "dash", "left", 0.9))
    for value, name, dash, side, height in marks:
        if np.isfinite(value):  # on a log axis a shape takes B, an annotation log10(B)
            figure.add_shape(type="line", x0=value, x1=value, y0=0, y1=1, yref="y domain",
                             line={"dash": dash, "color": "gray"})
            figure.add_annotation(x=np.log10(value), y=height, yref="y domain",
                                  text=f" {name} = {value:.3g} ", showarrow=False,
                                  xanchor=side, yanchor="top")
    figure.update_layout(height=340, margin={"l": 50, "r": 10, "t": 30, "b": 40},
                         xaxis={"title": "batch size B", "type": "log", "dtick": 0.30103},
                         yaxis={"title": "relative to the minimum", "type": "log",
                                "dtick": 0.30103},
                         legend={"orientation": "h", "y": -0.4})
    return figure
