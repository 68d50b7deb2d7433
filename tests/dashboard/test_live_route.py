"""dashboard.live_route: its query's checks (a clear error naming the field), and an answer
read from a store through the route, as a page gets it."""

import json

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from dashboard import live_route
from divebatch.report.figures import ChartOptions
from divebatch.runs.store import RunStore


def test_parse_reads_runs_options_and_interval():
    runs, options, every = live_route.parse({
        "runs": "3,1", "every": "2", "options": json.dumps({"x_axis": "train_time",
                                                            "log_y": True, "smoothing": 0.5})})
    assert runs == [3, 1] and every == 2.0
    assert options == ChartOptions(x_axis="train_time", log_y=True, smoothing=0.5)


@pytest.mark.parametrize("query, names", [
    ({"runs": ""}, "runs should name 1 to 64 runs"),
    ({"runs": "1,x"}, "runs should be run ids"),
    ({"runs": "1", "options": "[1]"}, "options should be a JSON object with keys"),
    ({"runs": "1", "options": "{"}, "options should be a JSON object"),
    ({"runs": "1", "options": '{"x_axis": "epochs!"}'}, "options.x_axis should be one of"),
    ({"runs": "1", "options": '{"smoothing": 1.5}'}, "smoothing should be a float in [0, 1)"),
    ({"runs": "1", "every": "soon"}, "could not convert"),
])
def test_parse_refuses_bad_queries_naming_the_field(query, names):
    with pytest.raises(ValueError, match=names.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        live_route.parse(query)


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("DIVEBATCH_DB", str(tmp_path / "runs.db"))
    return TestClient(Starlette(routes=live_route.routes()))


def test_the_route_answers_the_charts_then_only_what_is_new(client, tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run({"problem": "classification", "epochs": 9, "seed": 0})
    store.mark_running(run_id, 1)
    row = {"epoch": 1, "step": 10, "samples_seen": 100, "train_time": 1.0, "val_loss": 1.0,
           "train_loss": 1.2, "val_acc": 0.5, "batch_size": 32, "lr": 0.1}
    store.append_record(run_id, row)
    first = client.get(live_route.PATH, params={"runs": str(run_id)}).json()
    assert first["charts"]["base"] is None and "legend" in first["charts"]["figures"]
    assert first["state"]["statuses"] == {str(run_id): "running"}
    assert first["state"]["progress"][0][1].endswith("1/9 epochs")
    store.append_record(run_id, {**row, "epoch": 2, "train_time": 2.0, "val_loss": 0.5})
    live_route.live_cache.SNAPSHOT_TTL_S, ttl = 0.0, live_route.live_cache.SNAPSHOT_TTL_S
    live_route.live_cache.REBUILD_EVERY_S, rebuild = 0.0, live_route.live_cache.REBUILD_EVERY_S
    try:
        second = client.get(live_route.PATH, params={"runs": str(run_id),
                                                     "have": first["charts"]["serial"]}).json()
    finally:
        live_route.live_cache.SNAPSHOT_TTL_S, live_route.live_cache.REBUILD_EVERY_S = ttl, rebuild
    loss = second["charts"]["figures"]["loss"]["traces"]
    assert second["charts"]["base"] == first["charts"]["serial"]
    assert [keep for keep, _, _ in loss] == [1, 1] and loss[0][2] == [0.5]  # val, then train


def test_two_runs_bring_their_verdict_and_time_to_target_table(client, tmp_path):
    store = RunStore(tmp_path / "runs.db")
    row = {"epoch": 1, "step": 10, "samples_seen": 100, "train_time": 1.0, "val_loss": 1.0,
           "train_loss": 1.2, "val_acc": 0.5, "batch_size": 32, "lr": 0.1}
    run_ids = [store.create_run({"problem": "classification", "epochs": 9, "seed": 0,
                                 "method": method, "batch_size": 32})
               for method in ("sgd", "divebatch")]
    for run_id in run_ids:
        store.append_record(run_id, row)
    one = client.get(live_route.PATH, params={"runs": str(run_ids[0])}).json()["state"]
    both = client.get(live_route.PATH, params={"runs": ",".join(map(str, run_ids))}).json()
    assert one["table"] is None and one["verdict"] is None
    table = both["state"]["table"]
    assert table["title"].startswith("Time to target") and len(table["rows"]) == 3
    assert table["rows"][0][:2] == ["method", "final accuracy"] and both["state"]["verdict"]


def test_a_bad_query_is_a_400_naming_the_field(client):
    answer = client.get(live_route.PATH, params={"runs": "1", "options": '{"log": 1}'})
    assert answer.status_code == 400 and "options should be" in answer.json()["error"]


def test_the_route_serves_plotly_js(client):
    answer = client.get(f"{live_route.PATH}/plotly.min.js")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(
        "text/javascript")
