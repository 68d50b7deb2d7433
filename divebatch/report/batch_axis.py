"""The batch-size chart's y axis: the batch sizes the runs used and their B_max (and 0 on a
linear axis), with some headroom above and below, whatever DiveBatch proposed.

DiveBatch's proposal δ·n·Δ̂ may run far past B_max (51,200 against B_max = 2048 on the
convex preset); on an axis that took it in, the batch line lay squashed at the foot and the
dots looked like batch sizes above B_max. So the range is fixed here and a proposal outside
it is drawn on the plot's edge as a triangle pointing off the chart (▲ above, ▼ below), its
real value on hover. The browser's growing charts keep a range the spec sets
(dashboard/growing_lines.js grows a chart in place while its points fit that range and
redraws it when a new spec brings another), so the rule lives here alone.

>>> axis = fit([np.array([8.0, 512.0, 2048.0])], [2048.0], log=True)
>>> [round(10 ** end) for end in axis.range]
[3, 4705]
>>> [(side, v.tolist()) for side, v in split(axis, np.array([100.0, 51200.0, 1.0]))]
[('inside', [100.0, nan, nan]), ('above', [nan, 51200.0, nan]), ('below', [nan, nan, 1.0])]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from divebatch.report.hot_limits import ADAPTIVE

HEADROOM = 0.15      # of the span (in decades on a log axis) above the top and below the foot
MIN_HEADROOM = 0.1   # decades on a log axis; of the largest value on a linear one
EDGE = 0.35          # of the headroom: the off-chart markers' distance inside the plot's edge
SYMBOLS = {"above": "triangle-up", "below": "triangle-down"}
LEGEND = {"above": "proposal above the chart",  # after the legend's ▲; short: 3 to a row
          "below": "proposal below the chart"}
WORDS = {"above": "above the chart", "below": "below the chart"}


@dataclass(frozen=True)
class BatchAxis:
    """A fixed y range [low, high] in axis units (log10 of the value on a log axis)."""
    low: float
    high: float
    log: bool
    pad: float  # the headroom, in axis units

    @property
    def range(self) -> list[float]:
        return [self.low, self.high]

    @property
    def ends(self) -> list[float]:
        """The range's ends as batch sizes (for the ticks)."""
        return [10 ** v if self.log else v for v in self.range]

    def edge_unit(self, side: str) -> float:
        return self.high - EDGE * self.pad if side == "above" else self.low + EDGE * self.pad

    def edge(self, side: str) -> float:
        """Where a proposal off the chart on `side` is drawn, as a value on the axis: just
        inside the plot (the marker whole), beyond every proposal drawn as a dot."""
        return 10 ** self.edge_unit(side) if self.log else self.edge_unit(side)

    def split(self, values: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """("inside", `values` drawn as they are, NaN elsewhere), then ("above", ...) and
        ("below", ...) the values beyond the edges (outside the range, or in the sliver
        between an edge marker and the plot's edge), for the sides that have any."""
        values = np.asarray(values, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            units = np.log10(np.where(values > 0, values, np.nan)) if self.log else values
            sides = {"above": units > self.edge_unit("above"),
                     "below": (units < self.edge_unit("below")) | (self.log & (values <= 0))}
        inside = np.where(sides["above"] | sides["below"], np.nan, values)
        return [("inside", inside), *((side, np.where(off, values, np.nan))
                                      for side, off in sides.items() if off.any())]

    def yaxis(self) -> dict:
        return {"range": self.range, "autorange": False}


def caps(runs: list) -> list[float]:
    """B_max of each adaptive run (figures.RunData): its config's and any a hot change set."""
    out = []
    for data in runs:
        config = data.run.get("config") or {}
        if config.get("method") not in ADAPTIVE:
            continue
        recorded = [r.get("max_batch_size") for r in data.records]
        out += [float(v) for v in [config.get("max_batch_size"), *recorded]
                if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    return out


def fit(batch_sizes: list[np.ndarray], b_max: list[float], log: bool) -> BatchAxis | None:
    """The range of the batch sizes used and the B_max values, with HEADROOM; None when
    there is nothing to range (no batch size yet)."""
    values = np.concatenate([np.empty(0), *(np.asarray(b, dtype=float) for b in batch_sizes)])
    values = values[np.isfinite(values) & (values > 0 if log else True)]
    if not len(values):
        return None
    values = np.concatenate([values, np.asarray(b_max, dtype=float), [] if log else [0.0]])
    units = np.log10(values) if log else values
    low, high = float(units.min()), float(units.max())
    pad = max(HEADROOM * (high - low), MIN_HEADROOM if log else MIN_HEADROOM * abs(high) or 1.0)
    return BatchAxis(low - pad, high + pad, log, pad)


def split(axis: BatchAxis | None, values: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """axis.split(values); all "inside" where there is no axis."""
    return axis.split(values) if axis else [("inside", np.asarray(values, dtype=float))]


def edge_trace(trace: dict, side: str, axis: BatchAxis | None) -> dict:
    """A proposal trace (figures._trace) of the values split puts on `side`: as it is
    inside, else as triangles on that edge, each one's value on hover."""
    if side == "inside":
        return trace
    real = np.asarray(trace["y"], dtype=float)
    name = f"{trace['name']} {WORDS[side]}"
    number = ",.0f" if side == "above" else ",.3~g"
    return {**trace, "name": name, "customdata": real,
            "y": np.where(np.isnan(real), np.nan, axis.edge(side)),
            "marker": {**trace["marker"], "symbol": SYMBOLS[side], "size": 9},
            "hovertemplate": f"<b>{trace['name']}</b><br>%{{x:.4~g}}<br>"
                             f"proposal %{{customdata:{number}}}: {WORDS[side]}"
                             "<extra></extra>"}


def legend_keys(spec: dict, color: str) -> list[dict]:
    """The legend's keys of the triangles the batch-size chart `spec` draws (figures'
    legend traces: hovertemplate and all, in grey)."""
    drawn = {trace["marker"]["symbol"]: trace for trace in spec["data"] if "customdata" in trace}
    return [{**{key: v for key, v in drawn[symbol].items() if key != "customdata"},
             "x": [None], "y": [None], "name": LEGEND[side],
             "marker": {**drawn[symbol]["marker"], "color": color},
             "line": {**drawn[symbol]["line"], "color": color}}
            for side, symbol in SYMBOLS.items() if symbol in drawn]
