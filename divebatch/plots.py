"""Plotly figures and tables for the dashboard, built from stored runs (plain dicts).

Every chart takes a list of `RunData` (a run dict, its epoch records, its events) and
`ChartOptions` (x axis, log y, smoothing, how to read the diversity) and returns a
`plotly.graph_objects.Figure`: one colour per run, hot changes drawn as dotted vertical lines.

Per-epoch settings (batch size, learning rate) are drawn as steps from the start of the epoch
that used them; measured values (losses, accuracy, diversity) sit at the end of their epoch.

>>> records = [{"epoch": 1, "samples_seen": 100, "step": 10, "train_time": 0.5},
...            {"epoch": 2, "samples_seen": 200, "step": 15, "train_time": 0.25}]
>>> epoch_ends(records, "train_time"), epoch_starts(records, "samples_seen")
([0.5, 0.75], [0, 100])
>>> [round(v, 3) if v else v for v in ema([1.0, None, 3.0], 0.5)]
[1.0, None, 2.333]
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import plotly.graph_objects as go
from plotly.colors import qualitative

from . import analysis
from .commands import COMPARE_COLUMNS
from .target_table import labelled_rows

X_AXES = {"samples_seen": "examples seen", "step": "optimizer steps", "epoch": "epochs",
          "train_time": "training time (s)"}
DIVERSITY_VIEWS = {"diversity": "Δ̂  gradient diversity",
                   "bound": "n·Δ̂  Yin's batch-size bound",
                   "noise_scale": "n·Δ̂ − 1  gradient noise scale"}
CHARTS = {"diversity": "Gradient diversity (fixed probe after each epoch, not timed)", "batch_size": "Batch size",
          "lr": "Learning rate", "loss": "Loss", "val_acc": "Validation accuracy"}
COLORS = qualitative.Plotly
CHART_HEIGHT = 320


@dataclass
class RunData:
    """One run as the charts need it."""
    run: dict                                    # RunStore.get_run() row
    records: list[dict]                          # RunStore.records(), by epoch
    events: list[dict] = field(default_factory=list)

    @property
    def n_train(self) -> int | None:
        return (self.run.get("info") or {}).get("n_train")


@dataclass
class ChartOptions:
    x_axis: str = "samples_seen"       # one of X_AXES
    log_y: bool = False                # log-scale y (not applied to accuracy)
    smoothing: float = 0.0             # EMA weight of the past, 0 <= smoothing < 1
    diversity_view: str = "diversity"  # one of DIVERSITY_VIEWS

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


# --- series helpers (unit tested)

def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def ema(values: list, smoothing: float) -> list[float | None]:
    """Debiased exponential moving average (as TensorBoard): s_t = a s_{t-1} + (1-a) x_t,
    divided by 1 - a^t. Missing or non-finite values stay None and are skipped."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing should be a float in [0, 1), but got smoothing={smoothing!r}")
    out, total, weight = [], 0.0, 0.0
    for value in values:
        value = _finite(value)
        if value is None:
            out.append(None)
            continue
        total = smoothing * total + (1.0 - smoothing) * value
        weight = smoothing * weight + (1.0 - smoothing)
        out.append(total / weight)
    return out


def epoch_ends(records: list[dict], axis: str) -> list[float]:
    """x of the end of each record's epoch; "train_time" is cumulative training seconds."""
    if axis == "train_time":
        ends, elapsed = [], 0.0
        for record in records:
            elapsed += float(record.get("train_time") or 0.0)
            ends.append(elapsed)
        return ends
    if axis not in X_AXES:
        raise ValueError(f"axis should be one of {', '.join(X_AXES)}, but got axis={axis!r}")
    return [record[axis] for record in records]


def epoch_starts(records: list[dict], axis: str) -> list[float]:
    """x of the start of each record's epoch (the previous epoch's end, 0 for the first)."""
    return [0, *epoch_ends(records, axis)[:-1]] if records else []


def diversity_values(records: list[dict], n_train: int | None, view: str) -> list:
    """Delta_hat per epoch, or n * Delta_hat (Yin's bound), or n * Delta_hat - 1 (the noise
    scale B_simple); None where unmeasured, or where n is unknown for the scaled views.
    The chart-only probe's value (divebatch.probe) where the run has one, else the diversity
    the method measured while training."""
    raw = [_finite(r.get("probe_diversity")) if r.get("probe_diversity") is not None
           else _finite(r.get("diversity")) for r in records]
    if view == "diversity":
        return raw
    if not n_train:
        return [None] * len(raw)
    offset = 1.0 if view == "noise_scale" else 0.0
    return [None if d is None else n_train * d - offset for d in raw]


def proposals(records: list[dict], n_train: int | None) -> list:
    """DiveBatch's proposal delta * n * Delta_hat per epoch (before the clamp to
    [B_old, B_max]), with the delta in force in that epoch."""
    return [None if not n_train or _finite(r.get("diversity")) is None or r.get("delta") is None
            else r["delta"] * n_train * r["diversity"] for r in records]


def run_label(run: dict) -> str:
    """'#12 DiveBatch (delta=0.1)', or the run's name when it has one."""
    name = run.get("name") or analysis.method_label(run.get("config") or {})
    return f"#{run['id']} {name}"


def progress(run: dict, records: list[dict], live: dict | None) -> tuple[float, str]:
    """(fraction of the run done, words) from finished epochs plus the live mid-epoch row."""
    total = max(int((run.get("config") or {}).get("epochs") or 1), 1)
    done = len(records)
    text = f"{run_label(run)}: {done}/{total} epochs"
    fraction = done / total
    if live and live.get("epoch") == done + 1 and live.get("n_batches"):
        within = live["batch"] / live["n_batches"]
        fraction += within / total
        text += f" · epoch {done + 1}: batch {live['batch']}/{live['n_batches']}"
    return min(fraction, 1.0), text


def hot_change_text(event: dict) -> str:
    payload = event.get("payload") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(payload.items())) or event["message"]


# --- figures (traces are plain dicts and the Figure is built once: add_trace and add_vline
# deep-copy the figure on every call, which made a refresh of 4 runs cost 0.2 s)

def _figure(title: str, y_title: str, options: ChartOptions, log_y: bool, traces: list[dict],
            runs: list[RunData]) -> go.Figure:
    shapes, notes = _hot_change_marks(runs, options)
    return go.Figure(data=traces, layout=dict(
        title=dict(text=title, x=0.0, font=dict(size=15)), height=CHART_HEIGHT,
        margin=dict(l=10, r=10, t=40, b=10), hovermode="closest",
        legend=dict(orientation="h", yanchor="top", y=-0.22, x=0.0),
        xaxis=dict(title=dict(text=X_AXES[options.x_axis])),
        yaxis=dict(title=dict(text=y_title), type="log" if log_y else "linear",
                   **({"dtick": 1, "exponentformat": "power"} if log_y else {})),
        shapes=shapes, annotations=notes))


def _trace(x: list, y: list, name: str, color: str, *, y_label: str, dash: str = "solid",
           shape: str = "linear", legend: bool = True, group: str = "") -> dict:
    return dict(type="scatter", x=x, y=y, name=name,
                mode="lines+markers" if len(x) < 40 else "lines",
                line=dict(color=color, dash=dash, shape=shape), marker=dict(size=5),
                legendgroup=group or name, showlegend=legend, connectgaps=True,
                hovertemplate=f"<b>{name}</b><br>%{{x:.4~g}}<br>{y_label} %{{y:.4~g}}"
                              "<extra></extra>")


def _hot_change_marks(runs: list[RunData], options: ChartOptions) -> tuple[list, list]:
    """Dotted vertical lines (and their labels) at the end of the epoch in which each hot
    change landed."""
    shapes, notes = [], []
    for index, data in enumerate(runs):
        ends = epoch_ends(data.records, options.x_axis)
        by_epoch = {r["epoch"]: x for r, x in zip(data.records, ends)}
        for event in data.events:
            if event.get("kind") != "hot_change":
                continue
            x = by_epoch.get(event.get("epoch"), ends[-1] if ends else 0)
            shapes.append(dict(type="line", xref="x", yref="y domain", x0=x, x1=x, y0=0, y1=1,
                               line=dict(color=_color(index), dash="dot", width=1.5)))
            notes.append(dict(x=x, xref="x", y=1, yref="y domain", showarrow=False,
                              text=hot_change_text(event), textangle=-90, xanchor="right",
                              yanchor="top", font=dict(size=10, color=_color(index))))
    return shapes, notes


def _color(index: int) -> str:
    return COLORS[index % len(COLORS)]


def _steps(data: RunData, key: str, options: ChartOptions) -> tuple[list, list]:
    """A per-epoch setting as a step line: its value from each epoch's start to its end."""
    if not data.records:
        return [], []
    x = epoch_starts(data.records, options.x_axis) + epoch_ends(data.records,
                                                                options.x_axis)[-1:]
    y = [r.get(key) for r in data.records]
    return x, y + y[-1:]


def diversity_figure(runs: list[RunData], options: ChartOptions) -> go.Figure:
    view = options.diversity_view
    traces = [_trace(epoch_ends(data.records, options.x_axis),
                     ema(diversity_values(data.records, data.n_train, view), options.smoothing),
                     run_label(data.run), _color(index), y_label=view.replace("_", " "))
              for index, data in enumerate(runs)]
    return _figure(CHARTS["diversity"], DIVERSITY_VIEWS[view], options, options.log_y,
                   traces, runs)


def batch_size_figure(runs: list[RunData], options: ChartOptions) -> go.Figure:
    """Batch size per epoch as steps; DiveBatch's proposal delta * n * Delta_hat dotted."""
    traces = []
    for index, data in enumerate(runs):
        label = run_label(data.run)
        x, y = _steps(data, "batch_size", options)
        traces.append(_trace(x, y, label, _color(index), y_label="batch", shape="hv"))
        if (data.run.get("config") or {}).get("method") == "divebatch":
            y = ema(proposals(data.records, data.n_train), options.smoothing)
            traces.append(_trace(epoch_ends(data.records, options.x_axis), y,
                                 f"{label}: δ·n·Δ̂ proposal", _color(index),
                                 y_label="proposal", dash="dot", group=label))
    return _figure(CHARTS["batch_size"], "batch size", options, options.log_y, traces, runs)


def lr_figure(runs: list[RunData], options: ChartOptions) -> go.Figure:
    traces = [_trace(*_steps(data, "lr", options), run_label(data.run), _color(index),
                     y_label="lr", shape="hv") for index, data in enumerate(runs)]
    return _figure(CHARTS["lr"], "learning rate", options, options.log_y, traces, runs)


def loss_figure(runs: list[RunData], options: ChartOptions) -> go.Figure:
    """Validation loss solid, training loss dashed, same colour per run."""
    traces = []
    for index, data in enumerate(runs):
        label, x = run_label(data.run), epoch_ends(data.records, options.x_axis)
        for key, dash, suffix in (("val_loss", "solid", "val"), ("train_loss", "dash", "train")):
            y = ema([r.get(key) for r in data.records], options.smoothing)
            traces.append(_trace(x, y, f"{label} {suffix}", _color(index),
                                 y_label=f"{suffix} loss", dash=dash,
                                 legend=key == "val_loss", group=label))
    return _figure(CHARTS["loss"], "loss (train dashed, validation solid)", options,
                   options.log_y, traces, runs)


def accuracy_figure(runs: list[RunData], options: ChartOptions) -> go.Figure:
    """Validation accuracy in percent (always a linear axis)."""
    traces = []
    for index, data in enumerate(runs):
        acc = [None if _finite(r.get("val_acc")) is None else 100.0 * r["val_acc"]
               for r in data.records]
        traces.append(_trace(epoch_ends(data.records, options.x_axis),
                             ema(acc, options.smoothing), run_label(data.run), _color(index),
                             y_label="accuracy %"))
    return _figure(CHARTS["val_acc"], "validation accuracy (%)", options, False, traces, runs)


FIGURES = {"diversity": diversity_figure, "batch_size": batch_size_figure, "lr": lr_figure,
           "loss": loss_figure, "val_acc": accuracy_figure}


def figures(runs: list[RunData], options: ChartOptions) -> dict[str, go.Figure]:
    """Every chart that applies: accuracy only when some run is a classification."""
    has_accuracy = any(analysis.uses_accuracy(d.records) for d in runs)
    return {name: make(runs, options) for name, make in FIGURES.items()
            if name != "val_acc" or has_accuracy}


def png_config(chart: str, runs: list[RunData]) -> dict:
    """plotly.js config: the modebar's camera button saves a PNG with a telling filename."""
    ids = "-".join(str(d.run["id"]) for d in runs[:8]) or "none"
    return {"displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": f"divebatch-{chart}-runs-{ids}",
                                     "scale": 2}}


# --- tables

def comparison_table(runs: list[dict], records_by_run: dict[int, list[dict]],
                     target: float | None = None) -> tuple[list[dict], float | None]:
    """The paper's time-to-target table (analysis.compare), SGD at the small batch first as
    the speed-up baseline; rows keyed by the CLI's column headings."""
    rows, common = labelled_rows(runs, records_by_run, target)
    return [{heading: row.get(key) for key, heading in COMPARE_COLUMNS} for row in rows], common


RUN_COLUMNS = ("run", "status", "name", "group", "problem", "method", "epochs", "duration s",
               "final acc", "final val loss", "train s to own-1pt", "note", "started")


def run_row(run: dict, records: list[dict], now: float | None = None) -> dict:
    """The Runs page's row for one stored run (keys: RUN_COLUMNS)."""
    summary = analysis.summarize(run, records)
    started, finished = run.get("started_at"), run.get("finished_at")
    return {
        "run": run["id"], "status": run["status"], "name": run.get("name") or "",
        "group": run.get("group") or "", "problem": summary["problem"],
        "method": summary["method"],
        "epochs": f"{len(records)}/{run['config'].get('epochs', '?')}",
        "duration s": None if started is None else (finished or now or time.time()) - started,
        "final acc": summary["final_acc"], "final val loss": summary["final_val_loss"],
        "train s to own-1pt": summary["time_to_target"],
        "note": summary["flag"],
        "started": None if started is None else time.strftime(
            "%Y-%m-%d %H:%M", time.localtime(started))}
