"""Work every viewer of this server process shares, so that 30 open tabs cost little more
than one: the store read once per SNAPSHOT_TTL_S for a set of runs, each chart built once per
data version, and queue.dispatch run at most once per DISPATCH_EVERY_S.

The cached values are read-only by contract: snapshots hold tuples of rows read for the
cache alone, nothing that draws them mutates them, and figures are never mutated after they
are built (st.plotly_chart serialises a deep copy), so no session can change what another
one draws.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import OrderedDict
from dataclasses import astuple, dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa

from divebatch.runs import queue
from divebatch.report import figures as plots
from divebatch.report.figures import ChartOptions, RunData
from divebatch.report.run_labels import labelled_with_hot_values
from divebatch.report.series import Columns
from divebatch.runs.store import ACTIVE_STATUSES, RunStore
from divebatch.report.target_table import TargetTable, build as build_target_table

DISPATCH_EVERY_S = 1.0  # start queued runs and mark dead workers at most this often
SNAPSHOT_TTL_S = 0.5    # a viewer's update may show data this much older than the store's
CHART_SETS_KEPT = 64    # (runs, chart options) combinations kept built
REBUILD_EVERY_S = 1.0   # the charts of the same runs and options are rebuilt at most this often
TABLE_EVERY_S = 5.0     # and their time-to-target table, while some run is live

_lock = threading.Lock()
_last_dispatch: dict[str, float] = {}
_snapshots: OrderedDict = OrderedDict()  # (db, runs) -> Snapshot
_records: dict[tuple[str, int], tuple[tuple, tuple]] = {}  # (db, run) -> (version, records)
_columns: dict[tuple[str, int], Columns] = {}  # (db, run) -> the records as columns
_latest: OrderedDict = OrderedDict()  # (runs, options) -> (built at, version, charts)
_tables: OrderedDict = OrderedDict()  # (runs, statuses) -> (built at, counts, table)
_flights: dict[tuple, threading.Lock] = {}  # (cache, key) -> held while it is built


def forget(*caches: str) -> None:
    """Drop what viewers share, so that the next read rebuilds it: "snapshots" (store
    reads), "charts", "tables" (all of them when none is named). For benchmarks that time
    the rebuild."""
    kept = {"snapshots": _snapshots, "charts": _latest, "tables": _tables}
    for name in caches or kept:
        kept[name].clear()


def dispatch(store: RunStore) -> None:
    """queue.dispatch (which also reaps dead workers), at most once per DISPATCH_EVERY_S for
    this store in this process, whoever asks."""
    key = str(store.path)
    with _lock:
        now = time.monotonic()
        if now - _last_dispatch.get(key, float("-inf")) < DISPATCH_EVERY_S:
            return
        _last_dispatch[key] = now
    queue.dispatch(store)


@dataclass(frozen=True)
class Snapshot:
    """What the live charts of a set of runs need, read from the store at `read_at`."""
    read_at: float
    runs: tuple[dict, ...]                  # store rows of the runs that still exist
    records: dict[int, tuple[dict, ...]]    # by run id, by epoch
    columns: dict[int, Columns]             # the records as float columns, by run id
    events: dict[int, tuple[dict, ...]]
    progress: dict[int, dict | None]
    version: tuple                          # changes whenever a chart would
    source: str = ""                        # the store's path

    def labels_in_force(self) -> dict[int, str]:
        """Each run's label with the hot values in force, as the charts' legend names it."""
        return {run["id"]: labelled_with_hot_values(run, list(self.records[run["id"]]),
                                                    list(self.events[run["id"]]))
                for run in self.runs}

    def has_point(self, run: dict) -> bool:
        """Whether the run has anything to chart: an epoch, or its measured start."""
        return bool(self.records[run["id"]]) or "initial" in run.get("info", {})

    @property
    def has_points(self) -> bool:
        return any(map(self.has_point, self.runs))

    def table(self) -> "SharedTable":
        """The time-to-target table of these runs (target_table, shared)."""
        return target_table(list(self.runs), {i: list(rows) for i, rows in self.records.items()},
                            {i: list(rows) for i, rows in self.events.items()})

    def run_data(self) -> list[RunData]:
        return [RunData(run, list(self.records[run["id"]]), list(self.events[run["id"]]),
                        self.columns[run["id"]]) for run in self.runs]


def snapshot(store: RunStore, run_ids: list[int], max_age_s: float | None = None
             ) -> Snapshot:
    """The runs' state, read at most once per SNAPSHOT_TTL_S (or `max_age_s`) for the same
    runs; a run's records are decoded again only when its record count or last epoch
    changed."""
    max_age_s = SNAPSHOT_TTL_S if max_age_s is None else max_age_s
    return _shared(_snapshots, (str(store.path), tuple(run_ids)),
                   lambda snap: time.monotonic() - snap.read_at < max_age_s,
                   lambda: _read_snapshot(store, run_ids), keep=4 * CHART_SETS_KEPT)


def _shared(cache: OrderedDict, key, usable, build, keep: int = CHART_SETS_KEPT):
    """cache[key] while usable(it), else build() kept there, the most recent `keep` kept.
    Viewers whose updates ask for the same key at the same moment (their timers often fire
    together) wait for the first one's build and share it, rather than each building it."""
    with _lock:
        entry = cache.get(key)
    if entry is not None and usable(entry):
        return entry
    with _lock:
        flight = _flights.setdefault((id(cache), key), threading.Lock())
    with flight:
        with _lock:
            entry = cache.get(key)
        if entry is not None and usable(entry):
            return entry
        entry = build()
        with _lock:
            cache[key] = entry
            cache.move_to_end(key)
            while len(cache) > keep:
                stale, _ = cache.popitem(last=False)
                _flights.pop((id(cache), stale), None)
    return entry


def _read_snapshot(store: RunStore, run_ids: list[int]) -> Snapshot:
    read_at = time.monotonic()
    view = store.live_view(run_ids)
    runs, counts, events = tuple(view["runs"]), view["counts"], view["events"]
    progress = {run["id"]: view["progress"][run["id"]] if run["status"] == "running" else None
                for run in runs}
    records = _records_of(store, {run["id"]: (*counts[run["id"]], run["started_at"])
                                  for run in runs})
    version = tuple((run["id"], run["status"], counts[run["id"]], len(events[run["id"]]),
                     json.dumps(run["config"], sort_keys=True), run.get("name"),
                     "initial" in run["info"])
                    for run in runs)
    columns = {run_id: _columns_of(str(store.path), run_id, rows)
               for run_id, rows in records.items()}
    return Snapshot(read_at, runs, records, columns,
                    {run_id: tuple(rows) for run_id, rows in events.items()}, progress, version,
                    str(store.path))


def _columns_of(source: str, run_id: int, records: tuple[dict, ...]) -> Columns:
    """The records as columns: the cached ones, grown by the new epochs alone when the
    records extend the cached ones (so a live run's columns cost its new epochs only)."""
    with _lock:
        cached = _columns.get((source, run_id))
    if cached is not None and cached.records is records:
        return cached
    columns = cached.grown(records) if cached is not None and cached.extends(records) \
        else Columns(records)
    with _lock:
        _columns[(source, run_id)] = columns
    return columns


def _records_of(store: RunStore, versions: dict[int, tuple]) -> dict[int, tuple[dict, ...]]:
    """Each run's records, by `versions` (run id -> record count, last epoch, started_at):
    the cached ones while the version holds, the cache plus only the new epochs when the run
    has grown in the same execution (one query for all such runs), else read anew (within
    one execution a run only appends epochs; only a resume rewrites them)."""
    source = str(store.path)
    with _lock:
        cached = {run_id: _records.get((source, run_id)) for run_id in versions}
    out = {run_id: entry[1] for run_id, entry in cached.items()
           if entry and entry[0] == versions[run_id]}
    grown = {run_id: entry[1][-1]["epoch"] for run_id, entry in cached.items()
             if run_id not in out and _grows(entry, versions[run_id])}
    for run_id, new in store.records_after_many(grown).items():
        if len(cached[run_id][1]) + len(new) == versions[run_id][0]:
            out[run_id] = cached[run_id][1] + tuple(new)
    stale = [run_id for run_id in versions if run_id not in out]
    out.update((run_id, tuple(rows)) for run_id, rows in store.records_many(stale).items())
    with _lock:
        for run_id, records in out.items():
            _records[(source, run_id)] = (versions[run_id], records)
    return {run_id: out[run_id] for run_id in versions}


def _grows(cached: tuple | None, version: tuple) -> bool:
    """Whether the cached records can be extended to `version`: same execution (started_at),
    more records than cached."""
    return bool(cached and cached[1]) and version[2] == cached[0][2] \
        and version[0] > cached[0][0]


def any_active(runs) -> bool:
    """Whether some run is queued or running (its charts and table are still growing)."""
    return any(run["status"] in ACTIVE_STATUSES for run in runs)


def race_ended(shown: dict[int, str], runs) -> bool:
    """Whether the runs on the charts (`shown`: their statuses as the page drew them; `runs`:
    as stored now) are a comparison of several that was going and has ended."""
    return (len(runs) > 1 and any(status in ACTIVE_STATUSES for status in shown.values())
            and not any_active(runs))


def charts(snap: Snapshot, options: ChartOptions) -> tuple[go.Figure, tuple]:
    """(the shared legend, ((chart name, figure or one-line note), ...)) for the snapshot,
    built once per data version and chart options in this process, and for the same runs
    and options at most once per REBUILD_EVERY_S (four runs each ending an epoch a second
    would otherwise mean four builds a second)."""
    live = any_active(snap.runs)

    def usable(entry: tuple) -> bool:  # a finished run's last epoch is never held back
        built_at, version, _ = entry
        return version == snap.version or live and time.monotonic() - built_at < REBUILD_EVERY_S

    def build() -> tuple:
        data = snap.run_data()
        return time.monotonic(), snap.version, (
            _frozen(plots.legend_spec(data, options)),
            tuple((name, chart if isinstance(chart, str) else _frozen(chart))
                  for name, chart in plots.figure_specs(data, options).items()))

    key = (snap.source, tuple(run["id"] for run in snap.runs), astuple(options))
    return _shared(_latest, key, usable, build)[2]


@dataclass(frozen=True)
class SharedTable:
    """A time-to-target table and its two parts as Arrow tables, ready for st.dataframe
    (from a pandas frame, Streamlit converts to Arrow on every viewer's update: 8 ms)."""
    table: TargetTable
    rows: pa.Table      # the four main columns, the winner starred
    details: pa.Table   # every other column


def target_table(runs: list[dict], records: dict[int, list[dict]],
                 events: dict[int, list[dict]] | None = None) -> SharedTable:
    """target_table.build, computed once per runs' statuses, record and event counts (a hot
    change names a run anew), and while some run is live at most once per TABLE_EVERY_S for
    the same runs and statuses (a status change, such as a run finishing, shows at once)."""
    events = events or {}
    counts = tuple((len(records[run["id"]]), len(events.get(run["id"], ()))) for run in runs)
    live = any_active(runs)

    def usable(entry: tuple) -> bool:
        built_at, built_counts, _ = entry
        return built_counts == counts or live and time.monotonic() - built_at < TABLE_EVERY_S

    def build() -> tuple:
        table = build_target_table(runs, records, events_by_run=events)
        return time.monotonic(), counts, SharedTable(
            table, _arrow(starred(table.rows, table.winner)), _arrow(table.details))

    key = tuple((run["id"], run["status"]) for run in runs)
    return _shared(_tables, key, usable, build)[2]


def starred(rows: list[dict], winner: int | None) -> list[dict]:
    """The rows with a star after the winner's method. (A star, not a coloured row: pandas'
    Styler cost 15 ms of every viewer's update, the whole table 1 ms without it.)"""
    return [{**row, "method": row["method"] + " ★"} if index == winner else row
            for index, row in enumerate(rows)]


def _arrow(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)


class _FrozenFigure(go.Figure):
    """A figure spec that is never changed after it is built, in the one form
    st.plotly_chart reads: it takes a plotly Figure only through `to_dict()`
    (plotly.tools.return_figure_from_figure_or_data), then serialises that dict with
    plotly.io.to_json, which leaves it as it is. So the spec is handed over as built:
    plotly's object tree (1 ms a chart, even unvalidated) is never made, nor deep-copied
    on every viewer's update (2 ms a chart). A test checks st.plotly_chart's output
    against a plotly Figure's."""

    def __init__(self, spec: dict):  # plotly's own __init__ is skipped on purpose
        object.__setattr__(self, "_spec", spec)

    def to_dict(self) -> dict:
        return self._spec

    to_plotly_json = to_dict

    def __repr__(self) -> str:
        return f"_FrozenFigure({len(self._spec['data'])} traces)"


def _frozen(spec: dict) -> go.Figure:
    """The figure with its arrays as plotly's base64 typed arrays, built once here, and
    the cheapest form for st.plotly_chart to serialise on every viewer's update
    (measured: 1.9 ms a chart, against 6.7 ms for numpy arrays and 30 ms for lists).
    In float32: seven significant digits where the hover shows four, and half the bytes
    that every viewer's update sends (the live panel's 5 charts: 190 -> 100 kB)."""
    for trace in spec["data"]:
        for axis in ("x", "y"):
            if isinstance(trace.get(axis), np.ndarray):
                trace[axis] = {"dtype": "f4", "bdata": base64.b64encode(
                    trace[axis].astype("<f4").tobytes()).decode("ascii")}
    return _FrozenFigure(spec)  # our own specs: tests build them validated
