"""What the growing live charts fetch (dashboard/live_route.py serves it): the live panel's
legend and charts as versions, and for a page that holds one version the points of the next
one after those it has.

A version is figures.legend_spec / figure_specs of a snapshot, prepared once per data
version and chart options for every page (shared), and named by a serial that is unique to
this server process. A page asks with the serial it holds; the answer sends, per chart, how
many of each trace's points still hold and the points after them (the layout only when it
changed), or the chart whole when its traces changed otherwise (runs added or removed, a
trace switching to lines) and everything when the page holds nothing this process still
keeps. The browser then keeps the first `keep` points of each trace and appends the rest
(dashboard/growing_charts.js), so nothing is lost or doubled whatever it missed. A trace's
numeric `customdata` (a value per point, shown on hover: a proposal drawn on the batch-size
chart's edge) grows with its points in the same way.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import astuple, dataclass

import numpy as np

from divebatch.report import figures as plots
from divebatch.report.figures import ChartOptions

from . import live_cache

VERSIONS_KEPT = 256   # versions a page may still hold, across every set of runs and options
MESSAGES_KEPT = 256   # answers kept encoded: pages one version behind share one
_NONCE = os.urandom(4).hex()  # a serial of a former server process names nothing here
_serials = itertools.count(1)
_lock = threading.Lock()
_built: OrderedDict = OrderedDict()     # (runs, options) -> (built at, data version, Version)
_versions: OrderedDict = OrderedDict()  # serial -> Version
_messages: OrderedDict = OrderedDict()  # (serial had, serial now) -> encoded figures


@dataclass(frozen=True)
class Prepared:
    """One chart, ready to send whole or as the points after those a page has."""
    shape: str                 # the traces without their points, and the config: JSON
    layout: dict
    layout_json: str
    xs: tuple[np.ndarray, ...]
    ys: tuple[np.ndarray, ...]
    config: dict
    caption: str | None = None
    wide: bool = False
    cs: tuple[np.ndarray | None, ...] = ()  # each trace's customdata, or None

    def custom(self, index: int) -> np.ndarray | None:
        return self.cs[index] if index < len(self.cs) else None

    def whole(self) -> dict:
        traces = json.loads(self.shape)["traces"]
        for index, (trace, x, y) in enumerate(zip(traces, self.xs, self.ys)):
            trace.update(x=listed(x), y=listed(y))
            if self.custom(index) is not None:
                trace["customdata"] = listed(self.custom(index))
        return {"full": {"data": traces, "layout": self.layout, "config": self.config,
                         "caption": self.caption, "wide": self.wide}}


@dataclass(frozen=True)
class Version:
    serial: str
    parts: tuple[tuple[str, Prepared], ...]  # the legend, then the charts in drawing order
    notes: tuple[str, ...]                   # charts whose value never changed, as sentences


def prepare(spec: dict, config: dict, caption: str | None = None, wide: bool = False
            ) -> Prepared:
    xs, ys, cs, traces = [], [], [], []
    for trace in spec["data"]:
        xs.append(np.asarray(trace["x"], dtype=float))
        ys.append(np.asarray(trace["y"], dtype=float))
        custom = trace.get("customdata")
        cs.append(None if custom is None else np.asarray(custom, dtype=float))
        # the shape says which traces have customdata: a trace gaining some comes whole
        traces.append({k: v for k, v in trace.items() if k not in ("x", "y", "customdata")}
                      | ({} if custom is None else {"customdata": True}))
    layout_json = json.dumps(spec["layout"], sort_keys=True, default=float)
    layout = json.loads(layout_json)  # numbers as plain floats
    shape = json.dumps({"traces": traces, "config": config}, sort_keys=True)
    return Prepared(shape, layout, layout_json, tuple(xs), tuple(ys), config, caption, wide,
                    tuple(cs))


def latest(snap: live_cache.Snapshot, options: ChartOptions, fresh: bool = False
           ) -> Version:
    """The snapshot's charts as a version, built once per data version and options for
    every page (and, while runs are live and unless `fresh`, at most once per
    live_cache.REBUILD_EVERY_S)."""
    live = live_cache.any_active(snap.runs) and not fresh

    def usable(entry: tuple) -> bool:
        built_at, data_version, _ = entry
        return data_version == snap.version or live and \
            time.monotonic() - built_at < live_cache.REBUILD_EVERY_S

    def build() -> tuple:
        version = _build(snap, options)
        with _lock:
            _versions[version.serial] = version
            while len(_versions) > VERSIONS_KEPT:
                _versions.popitem(last=False)
        return time.monotonic(), snap.version, version

    key = (snap.source, tuple(run["id"] for run in snap.runs), astuple(options))
    return live_cache._shared(_built, key, usable, build)[2]


def _build(snap: live_cache.Snapshot, options: ChartOptions) -> Version:
    data = snap.run_data()
    parts = [("legend", prepare(plots.legend_spec(data, options), {"displayModeBar": False},
                                wide=True))]
    specs = plots.figure_specs(data, options)
    notes = tuple(spec for spec in specs.values() if isinstance(spec, str))
    charts = [(name, spec) for name, spec in specs.items() if not isinstance(spec, str)]
    if options.projector:  # the 2x2 grid on screen: diversity, batch size, loss, accuracy
        charts.sort(key=lambda item: item[0] == "lr")
    parts += [(name, prepare(spec, plots.png_config(name, data), plots.CHART_NOTES.get(name)))
              for name, spec in charts]
    return Version(f"{_NONCE}-{next(_serials)}", tuple(parts), notes)


def held(serial: str | None) -> Version | None:
    """The version named `serial`, if this process still keeps it."""
    with _lock:
        return _versions.get(serial or "")


def encoded_message(had: Version | None, now: Version) -> str:
    """message(had, now) as JSON, encoded once for every page that holds `had`."""
    key = (had and had.serial, now.serial)
    with _lock:
        text = _messages.get(key)
    if text is None:
        text = json.dumps(message(had, now), separators=(",", ":"), allow_nan=False)
        with _lock:
            _messages[key] = text
            while len(_messages) > MESSAGES_KEPT:
                _messages.popitem(last=False)
    return text


def message(had: Version | None, now: Version) -> dict:
    """What a page holding `had` (None: nothing) needs to hold `now`: {serial, base (had's
    serial, or None when every chart comes whole), order, notes, figures: {name: entry}}."""
    before = dict(had.parts) if had else {}
    figures = {}
    for name, part in now.parts:
        old = before.get(name)
        if old is None or old.shape != part.shape:
            figures[name] = part.whole()
        elif old is not part:
            figures[name] = _increment(old, part)
    whole = len(figures) == len(now.parts) and all("full" in f for f in figures.values())
    return {"serial": now.serial, "base": None if whole or had is None else had.serial,
            "order": [name for name, _ in now.parts], "notes": list(now.notes),
            "figures": figures}


def _increment(old: Prepared, new: Prepared) -> dict:
    traces = []
    for index, (old_x, old_y, x, y) in enumerate(zip(old.xs, old.ys, new.xs, new.ys)):
        keep = min(_common_prefix(old_x, x), _common_prefix(old_y, y))
        old_c, c = old.custom(index), new.custom(index)
        if c is None:
            traces.append([keep, listed(x[keep:]), listed(y[keep:])])
            continue
        keep = 0 if old_c is None else min(keep, _common_prefix(old_c, c))
        traces.append([keep, listed(x[keep:]), listed(y[keep:]), listed(c[keep:])])
    entry = {"traces": traces}
    if old.layout_json != new.layout_json:
        entry["layout"] = new.layout
    return entry


def _common_prefix(old: np.ndarray, new: np.ndarray) -> int:
    """How many leading values `old` and `new` share (NaN equal to NaN)."""
    n = min(len(old), len(new))
    if old is new:
        return n
    a, b = old[:n], new[:n]
    differs = np.flatnonzero((a != b) & ~(np.isnan(a) & np.isnan(b)))
    return int(differs[0]) if len(differs) else n


def listed(values: np.ndarray) -> list:
    """JSON-ready numbers, missing or infinite ones as null (JSON has neither)."""
    return [v if math.isfinite(v) else None for v in values.tolist()]
