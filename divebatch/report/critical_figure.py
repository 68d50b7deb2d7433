"""The critical-batch chart: over training, the measured critical batch size, the gradient
noise scale B_simple, DiveBatch's proposal delta * n * Delta_hat, and the batch size each
method used (log y). The sentence under it is `critical_batch.critical_batch_sentence`."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from divebatch.presets import VARIANTS, variant_of
from divebatch.report.chart_style import styles_for
from divebatch.report.critical_batch import measured_points
from divebatch.report.figures import RunData
from divebatch.report.log_ticks import log_ticks
from divebatch.report.run_labels import run_label
from divebatch.report.series import diversity_values, proposals

SYMBOLS = {"inside": "circle", "above": "triangle-up", "below": "triangle-down"}
NOISE_COLOUR, CRITICAL_COLOUR = "#9467bd", "#111111"


def critical_batch_figure(summaries: list[dict], measured: RunData,
                          runs: list[RunData]) -> go.Figure:
    """`summaries` (experiments.critical_batch.summarize) of a measurement of `measured`;
    `runs`: the runs whose batch sizes to draw (the race it belongs to, or itself)."""
    figure = go.Figure()
    for run, (colour, dash) in zip(runs, styles_for([r.run["config"] for r in runs])):
        _add_batch_used(figure, run, colour, dash)
        if variant_of(run.run["config"]) == "divebatch" and run.n_train:
            _add_line(figure, run.record_columns["epoch"],
                      proposals(run.record_columns, run.n_train), "DiveBatch's proposal δ·n·Δ̂",
                      colour, "dot")
    if measured.n_train:
        _add_line(figure, measured.record_columns["epoch"],
                  diversity_values(measured.record_columns, measured.n_train, "noise_scale"),
                  f"B_simple = n·Δ̂ − 1 ({_short(measured)})", NOISE_COLOUR, "dot")
    _add_measured(figure, summaries)
    # the legend (four rows or more on a narrow page) below the axis title, never over it
    figure.update_layout(title="Critical batch size over training", height=460,
                         margin=dict(l=50, r=10, t=40, b=40),
                         legend=dict(orientation="h", yanchor="top", y=-0.3),
                         xaxis_title="epoch", yaxis_title="batch size (examples)")
    ys = np.concatenate([np.empty(0), *(np.asarray(t.y, dtype=float) for t in figure.data)])
    ys = ys[np.isfinite(ys) & (ys > 0)]  # ticks written out: "2000", not a bare "2"
    figure.update_yaxes(type="log", **(log_ticks(ys.min(), ys.max()) if len(ys) else {}))
    return figure


def _short(run: RunData) -> str:
    return VARIANTS.get(variant_of(run.run["config"]), run_label(run.run))


def _add_batch_used(figure: go.Figure, run: RunData, colour: str, dash: str) -> None:
    columns = run.record_columns
    if not len(columns):
        return
    starts = columns["epoch"] - 1  # an epoch's batch size, drawn from its start
    x = np.append(starts, columns["epoch"][-1])
    y = np.append(columns["batch_size"], columns["batch_size"][-1])
    figure.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color=colour, dash=dash,
                                shape="hv"), name=f"batch used: {_short(run)}"))


def _add_line(figure: go.Figure, x, y, name: str, colour: str, dash: str) -> None:
    y = np.where(np.asarray(y, dtype=float) > 0, y, np.nan)  # the log axis drops the rest
    if np.isfinite(y).any():
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, connectgaps=True,
                                    line=dict(color=colour, dash=dash, width=1.5)))


def _add_measured(figure: go.Figure, summaries: list[dict]) -> None:
    starts = [s for s in summaries if s.get("noise_scale") and s["noise_scale"] > 0]
    if starts:
        figure.add_trace(go.Scatter(
            x=[s["epoch"] for s in starts], y=[s["noise_scale"] for s in starts],
            mode="markers", name="B_simple at the checkpoint",
            marker=dict(symbol="diamond-open", size=10, color=NOISE_COLOUR)))
    points = measured_points(summaries)
    if points:
        figure.add_trace(go.Scatter(
            x=[p["epoch"] for p in points], y=[p["value"] for p in points],
            mode="lines+markers+text", name="critical batch size (measured)",
            text=[p["label"] for p in points], textposition="top center",
            line=dict(color=CRITICAL_COLOUR, width=2),
            marker=dict(size=11, color=CRITICAL_COLOUR,
                        symbol=[SYMBOLS[p["bound"]] for p in points])))
