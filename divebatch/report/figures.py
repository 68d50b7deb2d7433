"""Plotly figures for the dashboard, built from stored runs (plain dicts).

Every chart takes a list of `RunData` (a run dict, its epoch records, its events) and
`ChartOptions` (x axis, log y, smoothing, how to read the diversity) and returns a
`plotly.graph_objects.Figure`: one colour and dash per method (chart_style), every trace
thinned to about 500 points (thinning), hot changes drawn as dotted vertical lines with their
words, and one legend for all charts (legend_figure) instead of one per chart.

The series (x positions, smoothing, diversity readings) come from `series`; settings are
steps from the start of their epoch, measured values sit at its end. A run that measured its
starting point (RunData.chart_records) begins at epoch 0, x = 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import plotly.graph_objects as go

from divebatch.experiments import analysis
from divebatch.report import batch_axis
from divebatch.report.log_ticks import log_ticks
from divebatch.report.chart_style import styles_for
from divebatch.report.chart_marks import (capped_shading, capped_spans, named_x,  # noqa: F401
                                          fixed_x_range, hot_change_marks, notes_margin)
from divebatch.report.run_labels import (LINE_BREAK, chart_label, format_value,  # noqa: F401
                                         hot_change_text, legend_label,
                                         progress, run_label)  # progress, run_label: re-exported
from divebatch.report.series import (X_AXES, Columns, diversity_values, effective_lr, ema,
                                     epoch_ends, epoch_starts, proposals)
from divebatch.report.thinning import change_points, thin_indices

DIVERSITY_VIEWS = {"diversity": "Δ̂  gradient diversity",
                   "bound": "n·Δ̂  Yin's batch-size bound",
                   "noise_scale": "n·Δ̂ − 1  gradient noise scale"}
CHARTS = {"diversity": "Gradient diversity (epoch-end probe)",
          "batch_size": "Batch size", "lr": "Learning rate", "loss": "Loss",
          "val_acc": "Validation accuracy",
          "effective_lr": "Effective learning rate LR / B (log scale)"}
CHART_NOTES = {"effective_lr": (  # a sentence drawn under the chart: what to read in it
    "A batch increase without LR rescaling acts like an LR cut: LR / B, the step each example "
    "gets, falls the same way, and for SGD on noisy linear regression the two are equivalent "
    "(Meterez et al., \"Seesaw\", arXiv 2510.14717).")}

CHART_HEIGHT = 320
# A projector (1280x720) shows the 2x2 grid whole: lower charts, larger type.
PROJECTOR_CHART_HEIGHT = 204
PROJECTOR_FONT_SCALE = 1.3
# The legend at 1280 px, sidebar open: its width (instructor mode's margins leave less), a
# character's mean width in ems of its font (a little over), an entry's line sample and gaps.
LEGEND_WIDTH_PX = {False: 820, True: 760}  # by ChartOptions.projector
LEGEND_CHAR_EM = 0.45
LEGEND_SYMBOL_PX = 45


@dataclass
class RunData:
    """One run as the charts need it."""
    run: dict                                    # RunStore.get_run() row
    records: list[dict]                          # RunStore.records(), by epoch
    events: list[dict] = field(default_factory=list)
    known_columns: Columns | None = None         # the records as columns, if already made

    @property
    def n_train(self) -> int | None:
        return (self.run.get("info") or {}).get("n_train")

    @property
    def initial(self) -> dict | None:
        """The measured starting point (ChartInstruments.initial: diversity, validation loss and
        accuracy at epoch 0, no training loss), if the run measured one."""
        return (self.run.get("info") or {}).get("initial")

    @cached_property  # every chart reads it: the list is made once per build
    def chart_records(self) -> list[dict]:
        """The records, after the starting point (epoch 0, at x = 0) if there is one."""
        return [self.initial, *self.records] if self.initial else self.records

    @cached_property
    def record_columns(self) -> Columns:
        """The epoch records alone (no starting point) as float columns."""
        return self.known_columns if self.known_columns is not None else Columns(self.records)

    @cached_property
    def columns(self) -> Columns:
        """chart_records as float columns (series.Columns)."""
        initial = self.initial
        return self.record_columns.after(initial) if initial else self.record_columns


@dataclass
class ChartOptions:
    x_axis: str = "samples_seen"       # one of X_AXES
    log_y: bool = False                # log-scale y (not applied to accuracy)
    smoothing: float = 0.0             # EMA weight of the past, 0 <= smoothing < 1
    diversity_view: str = "diversity"  # one of DIVERSITY_VIEWS
    projector: bool = False            # instructor mode: charts sized for 1280x720

    @property
    def height(self) -> int:
        return PROJECTOR_CHART_HEIGHT if self.projector else CHART_HEIGHT

    def font_size(self, size: float) -> int:
        return round(size * (PROJECTOR_FONT_SCALE if self.projector else 1.0))

    def __post_init__(self):
        if self.x_axis not in X_AXES:
            raise ValueError(f"x_axis should be one of {', '.join(X_AXES)}, "
                             f"but got x_axis={self.x_axis!r}")
        if self.diversity_view not in DIVERSITY_VIEWS:
            raise ValueError(f"diversity_view should be one of {', '.join(DIVERSITY_VIEWS)}, "
                             f"but got diversity_view={self.diversity_view!r}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing should be a float in [0, 1), "
                             f"but got smoothing={self.smoothing!r}")


# --- figures (traces are plain dicts and the Figure is built once: add_trace and add_vline
# deep-copy the figure on every call, which made a refresh of 4 runs cost 0.2 s). Values are
# numpy arrays (sent as base64, not as JSON lists) and the template is small: Streamlit's
# theme styles the chart in the browser, and copying plotly's default template cost 5 ms per
# chart on every viewer's update.

TEMPLATE = {"layout": {"hovermode": "closest"}}
BLANK = {"data": [{"type": "scatter", "x": [], "y": [], "hoverinfo": "skip"}],  # no points
         "layout": {"height": 10, "margin": dict(l=0, r=0, t=0, b=0),
                    "xaxis": {"visible": False}, "yaxis": {"visible": False}}}


@dataclass(frozen=True)
class _Style:
    color: str
    dash: str


def _styles(runs: list[RunData]) -> list[_Style]:
    return [_Style(*pair) for pair in styles_for([d.run.get("config") or {} for d in runs])]


def _figure(title: str, y_title: str, options: ChartOptions, log_y: bool, traces: list[dict],
            runs: list[RunData], shapes: tuple[list, list] = ([], [])) -> dict:
    marks, notes = hot_change_marks(runs, [style.color for style in _styles(runs)],
                                    options.x_axis)
    if options.projector:  # half a 1280 px screen: the short title says it all
        title, y_title = title.split(" (")[0], ""
    shapes, annotations = shapes[0] + marks, shapes[1] + notes
    above = notes_margin(notes)  # the hot changes' labels sit between title and plot
    return dict(data=named_x(traces, X_AXES[options.x_axis]), layout=dict(
        template=TEMPLATE, title=dict(text=title, x=0.0, font=dict(size=options.font_size(15)),
                                      **({"y": 1, "yanchor": "top", "pad": {"t": 6}}
                                         if above else {})),
        font=dict(size=options.font_size(12)),
        height=options.height, margin=dict(l=10, r=10, t=40 + above, b=10), showlegend=False,
        xaxis=dict(title=dict(text=X_AXES[options.x_axis]),
                   **(fixed_x_range(traces, shapes) if annotations else {})),
        yaxis=dict(title=dict(text=y_title), type="log" if log_y else "linear",
                   **(_log_ticks(traces, options) if log_y else {})),
        **_present(shapes=shapes, annotations=annotations)))


def _log_ticks(traces: list[dict], options: ChartOptions) -> dict:
    """A log axis's ticks: a few labelled values (1, 2, 5 ... times a power of ten) written
    out in full (log_ticks), fewer on a projector's lower charts; plotly's own where the
    data leave no room for two (a nearly flat line)."""
    ys = np.concatenate([np.empty(0), *(np.asarray(t["y"], dtype=float) for t in traces)])
    ys = ys[np.isfinite(ys) & (ys > 0)]
    ticks = log_ticks(float(ys.min()), float(ys.max()),
                      max_ticks=5 if options.projector else 8) if len(ys) else {}
    return {"exponentformat": "power",
            **(ticks or {"nticks": 4 if options.projector else 6})}


def _present(**parts: list) -> dict:
    """The non-empty parts (plotly drops empty ones: the spec then is what it sends)."""
    return {name: part for name, part in parts.items() if part}


def _trace(x, y, name: str, style: _Style, *, y_label: str, step: bool = False,
           width: float = 2.0, opacity: float = 1.0, markers_only: bool = False) -> dict:
    """A line of at most about thinning.MAX_POINTS points; a step line keeps every change.
    x and y: equal-length sequences of numbers (None or NaN = missing)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    shown = thin_indices(y, keep=change_points(y) if step else ())
    mode = "markers" if markers_only else "lines+markers" if len(shown) < 40 else "lines"
    return dict(type="scatter", x=x[shown], y=y[shown], name=name,
                mode=mode, opacity=opacity, connectgaps=True,
                line=dict(color=style.color, dash=style.dash, width=width,
                          shape="hv" if step else "linear"),
                marker=dict(size=5 if not markers_only else 6, color=style.color),
                hovertemplate=f"<b>{name}</b><br>%{{x:.4~g}}<br>{y_label} %{{y:.4~g}}"
                              "<extra></extra>")


def _steps(data: RunData, key: str, options: ChartOptions) -> tuple[np.ndarray, np.ndarray]:
    """A per-epoch setting as a step line: its value from each epoch's start to its end."""
    columns = data.columns
    if not len(columns):
        return np.empty(0), np.empty(0)
    x = np.concatenate([epoch_starts(columns, options.x_axis),
                        epoch_ends(columns, options.x_axis)[-1:]])
    values = STEP_VALUES[key](columns)
    return x, np.concatenate([values, values[-1:]])


def _diversity(runs: list[RunData], options: ChartOptions) -> dict:
    view = options.diversity_view
    traces = [_trace(epoch_ends(data.columns, options.x_axis),
                     ema(diversity_values(data.columns, data.n_train, view), options.smoothing),
                     chart_label(data), style, y_label=view.replace("_", " "))
              for data, style in zip(runs, _styles(runs))]
    return _figure(CHARTS["diversity"], DIVERSITY_VIEWS[view], options, options.log_y,
                   traces, runs)


def _batch_size(runs: list[RunData], options: ChartOptions) -> dict:
    """Batch size per epoch as steps; DiveBatch's proposal delta * n * Delta_hat as dots;
    shaded where the batch is capped at B_max. The y range is the batch sizes' and B_max's
    (batch_axis): a proposal outside it is a triangle on the edge, its value on hover."""
    steps = [_steps(data, "batch_size", options) for data in runs]
    axis = batch_axis.fit([y for _, y in steps], batch_axis.caps(runs), options.log_y)
    traces = []
    for data, style, (x, y) in zip(runs, _styles(runs), steps):
        label = chart_label(data)
        traces.append(_trace(x, y, label, style, y_label="batch", step=True))
        if (data.run.get("config") or {}).get("method") == "divebatch":
            y = ema(proposals(data.columns, data.n_train), options.smoothing)
            for side, values in batch_axis.split(axis, y):
                traces.append(batch_axis.edge_trace(_trace(
                    epoch_ends(data.columns, options.x_axis), values, f"{label}: δ·n·Δ̂ proposal",
                    style, y_label="proposal", markers_only=True), side, axis))
    spec = _figure(CHARTS["batch_size"], "batch size", options, options.log_y, traces, runs,
                   capped_shading(runs, [style.color for style in _styles(runs)],
                                  options.x_axis))
    if axis:
        spec["layout"]["yaxis"].update(axis.yaxis(), **(_log_ticks([{"y": axis.ends}], options)
                                                        if options.log_y else {}))
    return spec


def _lr(runs: list[RunData], options: ChartOptions) -> dict:
    traces = [_trace(*_steps(data, "lr", options), chart_label(data), style, y_label="lr",
                     step=True) for data, style in zip(runs, _styles(runs))]
    return _figure(CHARTS["lr"], "learning rate", options, options.log_y, traces, runs)


def _effective_lr(runs: list[RunData], options: ChartOptions) -> dict:
    """LR / B per epoch as steps, on a log axis (B spans powers of two)."""
    traces = [_trace(*_steps(data, "effective_lr", options), chart_label(data), style,
                     y_label="LR / B", step=True) for data, style in zip(runs, _styles(runs))]
    return _figure(CHARTS["effective_lr"], "LR / B", options, True, traces, runs)


def _loss(runs: list[RunData], options: ChartOptions) -> dict:
    """Validation loss thick, training loss thin and faint, in the run's colour and dash."""
    traces = []
    for data, style in zip(runs, _styles(runs)):
        label, x = chart_label(data), epoch_ends(data.columns, options.x_axis)
        for key, suffix, width, opacity in (("val_loss", "validation", 2.5, 1.0),
                                            ("train_loss", "train", 1.2, 0.55)):
            y = ema(data.columns[key], options.smoothing)
            traces.append(_trace(x, y, f"{label} {suffix}", style, y_label=f"{suffix} loss",
                                 width=width, opacity=opacity))
    return _figure(CHARTS["loss"], "loss (thick: validation, thin: train)", options,
                   options.log_y, traces, runs)


def _accuracy(runs: list[RunData], options: ChartOptions) -> dict:
    """Validation accuracy in percent (always a linear axis)."""
    traces = []
    for data, style in zip(runs, _styles(runs)):
        traces.append(_trace(epoch_ends(data.columns, options.x_axis),
                             ema(100.0 * data.columns["val_acc"], options.smoothing),
                             chart_label(data), style,
                             y_label="accuracy %"))
    return _figure(CHARTS["val_acc"], "validation accuracy (%)", options, False, traces, runs)


def legend_spec(runs: list[RunData], options: ChartOptions | None = None) -> dict:
    """The one legend for every chart of the panel: each run in its method's colour and
    dash (with the hot values in force, and where it ended if before its planned epochs),
    then the keys of the marks the charts use."""
    options = options or ChartOptions()
    grey = _Style("#555555", "solid")
    traces = [_trace([None], [None], legend_label(d), s, y_label="")
              for d, s in zip(runs, _styles(runs))]
    traces += [_trace([None], [None], "thick: validation loss", grey, y_label="", width=2.5),
               _trace([None], [None], "thin: train loss", grey, y_label="", width=1.2,
                      opacity=0.55)]
    if any((d.run.get("config") or {}).get("method") == "divebatch" for d in runs):
        traces.append(_trace([None], [None], "dots: δ·n·Δ̂ proposal", grey, y_label="",
                             markers_only=True))
        traces += batch_axis.legend_keys(_batch_size(runs, options), grey.color)
    traces += [_trace([None], [None], "shaded: capped at B_max", _Style("#bbbbbb", "solid"),
                      y_label="", width=10, opacity=0.5),
               _trace([None], [None], "dotted: hot change", _Style("#555555", "dot"),
                      y_label="", width=1.5)]
    for trace in traces:
        trace.update(mode="markers" if trace["mode"] == "markers" else "lines",
                     hoverinfo="skip")
        del trace["hovertemplate"]
    return dict(data=named_x(traces, X_AXES[options.x_axis]), layout=dict(
        template=TEMPLATE, height=legend_height([trace["name"] for trace in traces], options),
        margin=dict(l=0, r=0, t=0, b=0),
        showlegend=True, legend=dict(orientation="h", x=0, y=1, yanchor="top", maxheight=1,
                                     font=dict(size=options.font_size(13)), itemclick=False,
                                     itemdoubleclick=False),
        xaxis=dict(visible=False), yaxis=dict(visible=False)))


def legend_height(names: list[str], options: ChartOptions) -> int:
    """Pixels for the legend's entries: plotly gives each the width of the widest line, as
    many to a row as fit (at most 3 on a projector, 4 else), and a row with a two-line entry
    (legend_label) one line more."""
    font = options.font_size(13)
    widest = max(len(line) for name in names for line in name.split(LINE_BREAK))
    entry_px = widest * LEGEND_CHAR_EM * font + LEGEND_SYMBOL_PX
    per_row = max(1, min(3 if options.projector else 4,
                         int(LEGEND_WIDTH_PX[options.projector] // entry_px)))
    rows = [names[i:i + per_row] for i in range(0, len(names), per_row)]
    extra_lines = sum(max(name.count(LINE_BREAK) for name in row) for row in rows)
    return 20 + round(1.7 * font) * len(rows) + round(1.3 * font) * extra_lines


def diversity_figure(runs: list[RunData], options: ChartOptions) -> go.Figure:
    return go.Figure(_diversity(runs, options))


def batch_size_figure(runs: list[RunData], options: ChartOptions) -> go.Figure:
    return go.Figure(_batch_size(runs, options))


def lr_figure(runs: list[RunData], options: ChartOptions) -> go.Figure:
    return go.Figure(_lr(runs, options))


def loss_figure(runs: list[RunData], options: ChartOptions) -> go.Figure:
    return go.Figure(_loss(runs, options))


def accuracy_figure(runs: list[RunData], options: ChartOptions) -> go.Figure:
    return go.Figure(_accuracy(runs, options))


def legend_figure(runs: list[RunData]) -> go.Figure:
    return go.Figure(legend_spec(runs))


# name -> spec builder: plain dicts with numpy arrays, which go.Figure validates (slowly)
SPECS = {"diversity": _diversity, "batch_size": _batch_size, "lr": _lr, "loss": _loss,
         "val_acc": _accuracy, "effective_lr": _effective_lr}
STEP_VALUES = {"batch_size": lambda columns: columns["batch_size"],
               "lr": lambda columns: columns["lr"], "effective_lr": effective_lr}  # per epoch


def constant_note(runs: list[RunData], key: str) -> str | None:
    """'Learning rate: 0.1 in every epoch of every run.' when a setting never changed
    (a flat line tells nothing a sentence cannot), else None."""
    values = np.concatenate([np.empty(0), *(STEP_VALUES[key](d.columns) for d in runs)])
    if not len(values) or np.isnan(values).any() or (values != values[0]).any():
        return None
    name = CHARTS[key].split(" (")[0]
    return f"{name}: {format_value(values[0].item())} in every epoch of every run shown."


def figure_specs(runs: list[RunData], options: ChartOptions) -> dict[str, dict | str]:
    """Every chart that applies, as a plotly spec (a dict, not yet validated): accuracy
    only when some run is a classification; a step chart whose value never changed is a
    one-line note (a str) instead."""
    has_accuracy = any(analysis.uses_accuracy(d.chart_records) for d in runs)
    out: dict[str, dict | str] = {}
    for name, build in SPECS.items():
        if name == "val_acc" and not has_accuracy:
            continue
        note = constant_note(runs, name) if name in STEP_VALUES else None
        out[name] = note or build(runs, options)
    return out


def figures(runs: list[RunData], options: ChartOptions) -> dict[str, go.Figure | str]:
    """figure_specs as plotly Figures (notes stay str)."""
    return {name: spec if isinstance(spec, str) else go.Figure(spec)
            for name, spec in figure_specs(runs, options).items()}


# The modebar's only buttons on every chart of the dashboard: with all of plotly's, the modebar
# shown on hover covered the end of a chart's title (a 400-pixel live chart, the reproduction's
# bars at 1280x720). The charts that take clicks select points, not boxes or lassos.
MODEBAR_BUTTONS = ("toImage", "zoom2d", "pan2d", "resetScale2d")
CHART_CONFIG = {"displaylogo": False, "modeBarButtons": [list(MODEBAR_BUTTONS)]}


def png_config(chart: str, runs: list[RunData]) -> dict:
    """plotly.js config: the modebar's camera button saves a PNG with a telling filename;
    zoom, pan and reset are the other buttons."""
    ids = "-".join(str(d.run["id"]) for d in runs[:8]) or "none"
    return {**CHART_CONFIG,
            "toImageButtonOptions": {"format": "png", "filename": f"divebatch-{chart}-runs-{ids}",
                                     "scale": 2}}
