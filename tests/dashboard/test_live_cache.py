"""dashboard.live_cache: one dispatch a second, one store read and one chart build shared by
every viewer of the same runs."""

import base64
import json
import math
import sys
import threading
import time

import numpy as np
import plotly.io
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import live_cache
from divebatch.runs import queue
from divebatch.report import figures as plots
from divebatch.report.figures import ChartOptions
from divebatch.runs.store import RunStore


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.db")


def add_epoch(store, run_id, epoch):
    store.append_record(run_id, {"epoch": epoch, "samples_seen": 10 * epoch, "step": epoch,
                                 "train_time": 0.1, "batch_size": 8 * epoch, "lr": 0.1,
                                 "val_loss": 1.0 / epoch, "train_loss": 1.0 / epoch})


def test_dispatch_runs_at_most_once_a_second_whoever_asks(store, monkeypatch):
    calls = []
    monkeypatch.setattr(queue, "dispatch", lambda s: calls.append(s))
    monkeypatch.setattr(live_cache, "_last_dispatch", {})
    for _ in range(10):  # ten viewers' updates in the same second
        live_cache.dispatch(store)
    assert len(calls) == 1
    monkeypatch.setitem(live_cache._last_dispatch, str(store.path), -1e9)  # a second later
    live_cache.dispatch(store)
    assert len(calls) == 2


def test_viewers_share_one_snapshot_and_one_chart_build(store, monkeypatch):
    run_id = store.create_run({"method": "sgd", "batch_size": 8})
    add_epoch(store, run_id, 1)
    add_epoch(store, run_id, 2)
    builds = []
    real = plots.figure_specs
    monkeypatch.setattr(plots, "figure_specs", lambda *a: builds.append(1) or real(*a))
    first = live_cache.snapshot(store, [run_id])
    assert live_cache.snapshot(store, [run_id]) is first  # within SNAPSHOT_TTL_S
    charts = live_cache.charts(first, ChartOptions())
    assert live_cache.charts(first, ChartOptions()) is charts and len(builds) == 1
    assert dict(charts[1])["lr"].startswith("Learning rate: 0.1")  # constant: a note

    monkeypatch.setattr(live_cache, "SNAPSHOT_TTL_S", 0.0)
    monkeypatch.setattr(live_cache, "REBUILD_EVERY_S", 0.0)
    add_epoch(store, run_id, 3)
    grown = live_cache.snapshot(store, [run_id])
    assert len(grown.records[run_id]) == 3 and grown.version != first.version
    assert live_cache.charts(grown, ChartOptions()) is not charts and len(builds) == 2
    unchanged = live_cache.snapshot(store, [run_id])
    assert unchanged.records[run_id] is grown.records[run_id]  # not decoded again


def test_forget_drops_the_named_caches_and_the_next_read_rebuilds(store):
    run_id = store.create_run({"method": "sgd", "batch_size": 8})
    add_epoch(store, run_id, 1)
    snap = live_cache.snapshot(store, [run_id])
    charts = live_cache.charts(snap, ChartOptions())
    live_cache.forget("charts")
    assert live_cache.snapshot(store, [run_id]) is snap
    assert live_cache.charts(snap, ChartOptions()) is not charts
    live_cache.forget()
    assert live_cache.snapshot(store, [run_id]) is not snap
    with pytest.raises(KeyError):
        live_cache.forget("figures")


def test_viewers_asking_at_the_same_moment_wait_for_one_read_and_one_build(store,
                                                                          monkeypatch):
    run_id = store.create_run({"method": "sgd", "batch_size": 8})
    add_epoch(store, run_id, 1)
    reads, builds, started = [], [], threading.Barrier(8)
    real_view, real_specs = store.live_view, plots.figure_specs

    def slow_view(ids):
        reads.append(1)
        time.sleep(0.2)  # long enough for every viewer to arrive meanwhile
        return real_view(ids)

    def slow_specs(*args):
        builds.append(1)
        time.sleep(0.2)
        return real_specs(*args)

    monkeypatch.setattr(store, "live_view", slow_view)
    monkeypatch.setattr(plots, "figure_specs", slow_specs)
    seen = []

    def viewer():
        started.wait()
        snap = live_cache.snapshot(store, [run_id])
        seen.append((snap, live_cache.charts(snap, ChartOptions())))

    threads = [threading.Thread(target=viewer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reads) == 1 and len(builds) == 1
    assert len({id(snap) for snap, _ in seen}) == 1 and len({id(c) for _, c in seen}) == 1


def test_a_growing_run_decodes_only_its_new_epochs_and_a_rewritten_one_all(store,
                                                                          monkeypatch):
    monkeypatch.setattr(live_cache, "SNAPSHOT_TTL_S", 0.0)
    run_id = store.create_run({"method": "sgd", "batch_size": 8})
    for epoch in (1, 2):
        add_epoch(store, run_id, epoch)
    first_snap = live_cache.snapshot(store, [run_id])
    first = first_snap.records[run_id]
    first_snap.columns[run_id]["lr"]  # made by a chart
    reads = []
    real = store.records_many
    monkeypatch.setattr(store, "records_many", lambda ids: reads.extend(ids) or real(ids))
    add_epoch(store, run_id, 3)
    grown_snap = live_cache.snapshot(store, [run_id])
    grown = grown_snap.records[run_id]
    assert grown[:2] == first and [r["epoch"] for r in grown] == [1, 2, 3] and not reads
    columns = grown_snap.columns[run_id]
    assert columns.records is grown and "lr" in columns._made  # grown, not made anew
    assert columns["lr"].tolist() == [r["lr"] for r in grown]
    store.mark_finished(run_id, "stopped")
    store.requeue(run_id, keep_epochs=1)  # a resume drops epochs 2-3, then trains them anew
    store.mark_running(run_id, pid=1)
    for epoch in (2, 3, 4):
        store.append_record(run_id, {**grown[0], "epoch": epoch, "lr": 0.5})
    rewritten_snap = live_cache.snapshot(store, [run_id])
    rewritten = rewritten_snap.records[run_id]
    assert [r["lr"] for r in rewritten] == [0.1, 0.5, 0.5, 0.5] and reads == [run_id]
    assert rewritten_snap.columns[run_id]["lr"].tolist() == [0.1, 0.5, 0.5, 0.5]


def test_a_growing_live_run_is_rebuilt_at_most_once_a_second(store, monkeypatch):
    run_id = store.create_run({"method": "sgd", "batch_size": 8})
    store.mark_running(run_id, 1)
    add_epoch(store, run_id, 1)
    monkeypatch.setattr(live_cache, "SNAPSHOT_TTL_S", 0.0)
    charts = live_cache.charts(live_cache.snapshot(store, [run_id]), ChartOptions(x_axis="epoch"))
    add_epoch(store, run_id, 2)
    assert live_cache.charts(live_cache.snapshot(store, [run_id]),
                         ChartOptions(x_axis="epoch")) is charts  # held back < 1 s
    store.mark_finished(run_id, "completed")
    final = live_cache.charts(live_cache.snapshot(store, [run_id]), ChartOptions(x_axis="epoch"))
    assert final is not charts  # a finished run's last epoch is never held back


def test_a_live_runs_table_is_rebuilt_every_few_seconds_and_at_once_when_it_ends(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(live_cache.time, "monotonic", lambda: clock[0])
    run = {"id": 7, "status": "running", "name": "", "group": "", "info": {},
           "config": {"method": "sgd", "batch_size": 8, "problem": "classification"}}
    records = {7: [{"epoch": 1, "train_time": 1.0, "val_acc": 0.5}]}
    first = live_cache.target_table([run], records)
    records[7].append({"epoch": 2, "train_time": 1.0, "val_acc": 0.7})
    clock[0] += live_cache.TABLE_EVERY_S - 0.1
    assert live_cache.target_table([run], records) is first  # held back while live
    clock[0] += 0.2
    grown = live_cache.target_table([run], records)
    assert grown is not first and grown.table.rows[0] != first.table.rows[0]
    ended = live_cache.target_table([{**run, "status": "completed"}], records)
    assert ended is not grown  # a status change shows at once
    assert live_cache.target_table([{**run, "status": "completed"}], records) is ended


def render_both(spec: dict) -> None:
    """st.plotly_chart of plotly's own validated Figure, then of the shared figure."""
    import copy

    import plotly.graph_objects as go
    import streamlit as st

    from dashboard import live_cache
    st.plotly_chart(go.Figure(copy.deepcopy(spec)))
    st.plotly_chart(live_cache._frozen(copy.deepcopy(spec)))


@pytest.mark.parametrize("chart", ["loss", "batch_size", "legend"])
def test_st_plotly_chart_sends_a_shared_figure_as_it_sends_plotlys_own(store, chart,
                                                                        monkeypatch):
    run_id = store.create_run({"method": "divebatch", "batch_size": 8, "max_batch_size": 16})
    for epoch in (1, 2, 3):
        add_epoch(store, run_id, epoch)
    data = live_cache.snapshot(store, [run_id]).run_data()
    spec = plots.legend_spec(data) if chart == "legend" \
        else plots.figure_specs(data, ChartOptions())[chart]
    # Streamlit runs the script as __main__ and leaves it there; multiprocessing's spawn
    # would run it again in every later child process
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    at = AppTest.from_function(render_both, kwargs={"spec": spec}).run()
    plotlys, shared_one = (json.loads(element.proto.spec)
                           for element in at.get("plotly_chart"))
    assert decoded(shared_one, "<f4") == decoded(plotlys, "<f4")  # the same but the width
    assert {a["dtype"] for t in shared_one["data"] for a in (t["x"], t["y"])} == {"f4"}


def decoded(spec: dict, dtype: str) -> dict:
    """The spec with its base64 typed arrays as lists of `dtype` numbers (NaN as None)."""
    def values(array):
        if not isinstance(array, dict):
            return array
        numbers = np.frombuffer(base64.b64decode(array["bdata"]), array["dtype"])
        return [None if math.isnan(v) else v for v in numbers.astype(dtype).tolist()]

    return {**spec, "data": [{**trace, "x": values(trace["x"]), "y": values(trace["y"])}
                             for trace in spec["data"]]}


def test_a_shared_figure_is_built_once_and_never_changed_by_serialising(store):
    run_id = store.create_run({"method": "divebatch", "batch_size": 8})
    for epoch in (1, 2, 3):
        add_epoch(store, run_id, epoch)
    snap = live_cache.snapshot(store, [run_id])
    figure = dict(live_cache.charts(snap, ChartOptions())[1])["loss"]
    assert figure is dict(live_cache.charts(snap, ChartOptions())[1])["loss"]
    before = json.dumps(figure.to_dict(), sort_keys=True)
    plotly.io.to_json(figure, validate=False)  # what st.plotly_chart does on each update
    assert json.dumps(figure.to_dict(), sort_keys=True) == before


def test_the_time_to_target_table_is_shared_ready_for_the_browser():
    runs = [{"id": i, "status": "completed", "name": "", "group": "race",
             "config": {"method": method, "batch_size": 8, "max_batch_size": 64,
                        "problem": "classification"}, "info": {"n_train": 100}}
            for i, method in ((1, "sgd"), (2, "divebatch"))]
    records = {1: [{"epoch": e, "train_time": 1.0, "val_acc": 0.1 * e} for e in (1, 2, 3)],
               2: [{"epoch": e, "train_time": 0.5, "val_acc": 0.1 * e} for e in (1, 2, 3)]}
    shown = live_cache.target_table(runs, records)
    assert live_cache.target_table(runs, records) is shown
    assert shown.rows.column_names == list(shown.table.rows[0])
    assert shown.rows.to_pylist() == live_cache.starred(shown.table.rows, shown.table.winner)
    assert shown.table.winner == 1 and shown.rows.to_pylist()[1]["method"].endswith(" ★")
    assert shown.details.to_pylist() == shown.table.details


def test_the_winner_gets_a_star_and_the_rest_stay_as_they_are():
    rows = [{"method": "SGD B=8", "speed-up": "1.00x"}, {"method": "DiveBatch", "speed-up": "2x"}]
    assert [r["method"] for r in live_cache.starred(rows, 1)] == ["SGD B=8", "DiveBatch ★"]
    assert live_cache.starred(rows, None) == rows


@pytest.mark.parametrize("shown, now, ended", [
    ({1: "running", 2: "queued"}, ("completed", "stopped"), True),   # a race ended
    ({1: "running", 2: "completed"}, ("completed", "completed"), True),
    ({1: "running", 2: "queued"}, ("completed", "running"), False),  # one still goes
    ({1: "completed", 2: "completed"}, ("completed", "completed"), False),  # ended before
    ({1: "running"}, ("completed",), False),                         # a lone run: no verdict
])
def test_a_race_ended_when_one_of_several_was_going_and_none_is(shown, now, ended):
    runs = [{"id": run_id, "status": status} for run_id, status in zip(shown, now)]
    assert live_cache.race_ended(shown, runs) is ended
