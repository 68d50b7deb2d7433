"""RunStore: round trips of every method and lifecycle rules (several threads and processes at
once: test_store_concurrency.py)."""

import doctest
import json
import math
import sqlite3
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divebatch.runs import store as store_module
from divebatch.runs.schema import MIGRATIONS
from divebatch.runs.store import RunStore
from tests.helpers.records import RECORD

CHILD_TABLES = ("records", "progress", "events", "controls")
RUN_KEYS = {"id", "name", "group", "config", "status", "created_at", "started_at",
            "finished_at", "error", "worker_pid", "info"}
@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One store for property tests (hypothesis reruns the body, not function fixtures)."""
    return RunStore(tmp_path_factory.mktemp("shared") / "runs.db")


def rows_of(store, table, run_id):
    with sqlite3.connect(store.path) as db:
        return db.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()[0]


def test_docstring_example_runs():
    assert doctest.testmod(store_module).failed == 0


# --- runs

def test_create_and_get_run_round_trip(store):
    before = time.time()
    run_id = store.create_run({"method": "divebatch", "delta": 0.1}, name="demo", group="sweep")
    run = store.get_run(run_id)
    assert set(run) == RUN_KEYS
    assert run["id"] == run_id and run["name"] == "demo" and run["group"] == "sweep"
    assert run["config"] == {"method": "divebatch", "delta": 0.1}
    assert run["status"] == "queued" and run["info"] == {}
    assert before <= run["created_at"] <= time.time()
    assert run["started_at"] is run["finished_at"] is run["error"] is run["worker_pid"] is None


def test_records_after_an_epoch_are_the_later_ones_in_order(store):
    run_id = store.create_run({"problem": "sine"})
    for epoch in (3, 1, 2):
        store.append_record(run_id, {"epoch": epoch, "train_loss": 1.0 / epoch})
    assert [r["epoch"] for r in store.records_after(run_id, 1)] == [2, 3]
    assert store.records_after(run_id, 3) == [] and store.records_after(999, 0) == []


def test_reads_of_a_missing_run_are_empty(store):
    assert store.get_run(99) is None
    assert store.records(99) == [] and store.events(99) == [] and store.take_controls(99) == []
    assert store.get_progress(99) is None


def test_list_runs_newest_first_with_filters_and_limit(store):
    ids = [store.create_run({"seed": i}, group="a" if i % 2 else "b") for i in range(6)]
    store.set_status(ids[0], "completed")
    assert [run["id"] for run in store.list_runs()] == ids[::-1]
    assert [run["id"] for run in store.list_runs(limit=2)] == ids[:-3:-1]
    assert [run["id"] for run in store.list_runs(group="a")] == [ids[5], ids[3], ids[1]]
    assert [run["id"] for run in store.list_runs(status="completed")] == [ids[0]]
    assert len(store.list_runs(status=("queued", "completed"), group="b")) == 3
    assert store.list_runs(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        store.list_runs(limit=-1)


@pytest.mark.parametrize("call", [
    lambda s, r: s.create_run({}, status="done"),
    lambda s, r: s.set_status(r, "done"),
    lambda s, r: s.list_runs(status="done"),
    lambda s, r: s.mark_finished(r, "running"),
])
def test_unknown_status_names_the_field_and_the_choices(store, call):
    run_id = store.create_run({})
    with pytest.raises(ValueError, match=r"status should be one of .*completed.*status="):
        call(store, run_id)


def test_config_must_be_a_dict(store):
    with pytest.raises(TypeError, match="config should be a dict"):
        store.create_run([1, 2])


def test_lifecycle_sets_times_pid_and_error(store):
    run_id = store.create_run({})
    store.mark_running(run_id, 4321)
    run = store.get_run(run_id)
    assert (run["status"], run["worker_pid"]) == ("running", 4321) and run["started_at"]
    store.set_progress(run_id, {"epoch": 3, "fraction": 0.5})
    store.mark_finished(run_id, "failed", "RuntimeError: boom")
    run = store.get_run(run_id)
    assert (run["status"], run["error"]) == ("failed", "RuntimeError: boom")
    assert run["worker_pid"] is None
    assert run["finished_at"] >= run["started_at"]
    assert store.get_progress(run_id) is None  # a finished run has no live progress
    store.set_status(run_id, "queued")
    assert (store.get_run(run_id)["status"], store.get_run(run_id)["error"]) == ("queued", None)


def test_update_info_merges(store):
    run_id = store.create_run({})
    store.update_info(run_id, n_train=1000, approximate=False)
    store.update_info(run_id, approximate=True, device="cpu")
    assert store.get_run(run_id)["info"] == {"n_train": 1000, "approximate": True, "device": "cpu"}


@pytest.mark.parametrize("write", [
    lambda s: s.mark_running(99, 1), lambda s: s.mark_finished(99, "completed"),
    lambda s: s.set_status(99, "queued"), lambda s: s.update_info(99, a=1),
    lambda s: s.append_record(99, {"epoch": 1}), lambda s: s.set_progress(99, {}),
    lambda s: s.add_event(99, "note", "hi"), lambda s: s.send_control(99, "stop"),
])
def test_writes_to_a_missing_run_raise_key_error(store, write):
    with pytest.raises(KeyError, match="no run with id 99"):
        write(store)


def test_delete_run_removes_everything(store):
    doomed, kept = store.create_run({}), store.create_run({})
    for run_id in (doomed, kept):
        store.append_record(run_id, RECORD)
        store.set_progress(run_id, {"fraction": 0.1})
        store.add_event(run_id, "note", "hello")
        store.send_control(run_id, "stop")
    store.delete_run(doomed)
    store.delete_run(doomed)  # deleting twice is harmless
    assert store.get_run(doomed) is None and store.get_run(kept) is not None
    assert [rows_of(store, table, doomed) for table in CHILD_TABLES] == [0, 0, 0, 0]
    assert [rows_of(store, table, kept) for table in CHILD_TABLES] == [1, 1, 1, 1]


# --- records and progress

def test_records_keep_nan_inf_and_none(store):
    run_id = store.create_run({})
    store.append_record(run_id, {**RECORD, "train_loss": math.nan, "val_loss": math.inf,
                                 "lr": -math.inf})
    (stored,) = store.records(run_id)
    assert math.isnan(stored["train_loss"]) and stored["val_loss"] == math.inf
    assert stored["lr"] == -math.inf and stored["diversity"] is None
    assert {k: v for k, v in stored.items() if k not in ("train_loss", "val_loss", "lr")} == \
        {k: v for k, v in RECORD.items() if k not in ("train_loss", "val_loss", "lr")}


numbers = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 63, 2 ** 63),
                    st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10), numbers, max_size=8))
def test_any_record_of_numbers_round_trips(shared_store, extra):
    run_id = shared_store.create_run({})
    record = {**extra, "epoch": 7}
    shared_store.append_record(run_id, record)
    (stored,) = shared_store.records(run_id)
    assert list(stored) == list(record)
    for key, value in record.items():
        assert stored[key] == value or (math.isnan(stored[key]) and math.isnan(value))
        assert type(stored[key]) is type(value)


def test_append_record_replaces_the_same_epoch_and_sorts_by_epoch(store):
    run_id = store.create_run({})
    for epoch in (3, 1, 2):
        store.append_record(run_id, {"epoch": epoch, "val_acc": 0.1 * epoch})
    store.append_record(run_id, {"epoch": 2, "val_acc": 0.99})
    assert store.records(run_id) == [{"epoch": 1, "val_acc": 0.1},
                                     {"epoch": 2, "val_acc": 0.99},
                                     {"epoch": 3, "val_acc": 0.1 * 3}]


@pytest.mark.parametrize("record", [{}, {"epoch": 1.5}, {"epoch": "3"}])
def test_append_record_needs_an_int_epoch(store, record):
    run_id = store.create_run({})
    with pytest.raises(ValueError, match="epoch"):
        store.append_record(run_id, record)


def test_scalars_with_item_are_stored_as_numbers(store):
    class Scalar:  # stands in for numpy / torch scalars
        def item(self):
            return 0.25

    run_id = store.create_run({})
    store.append_record(run_id, {"epoch": 1, "lr": Scalar()})
    assert store.records(run_id) == [{"epoch": 1, "lr": 0.25}]
    with pytest.raises(TypeError, match="cannot store a object"):
        store.append_record(run_id, {"epoch": 2, "lr": object()})


def test_records_many_returns_every_requested_run(store):
    first, second, empty = (store.create_run({}) for _ in range(3))
    for epoch in range(1, 4):
        store.append_record(first, {"epoch": epoch})
    store.append_record(second, {"epoch": 1})
    by_run = store.records_many([second, first, empty, 404])
    assert by_run == {second: [{"epoch": 1}], first: [{"epoch": e} for e in (1, 2, 3)],
                      empty: [], 404: []}
    assert store.records_many([]) == {}


def test_record_counts_change_with_every_new_epoch(store):
    first, empty = store.create_run({}), store.create_run({})
    for epoch in (1, 2, 5):
        store.append_record(first, {"epoch": epoch})
    assert store.record_counts([first, empty]) == {first: (3, 5), empty: (0, 0)}
    store.append_record(first, {"epoch": 6})
    assert store.record_counts([first])[first] == (4, 6)


def test_records_after_many_reads_each_runs_later_epochs(store):
    first, second, empty = (store.create_run({}) for _ in range(3))
    for epoch in range(1, 5):
        store.append_record(first, {"epoch": epoch})
        store.append_record(second, {"epoch": epoch, "lr": 0.1})
    assert store.records_after_many({first: 2, second: 0, empty: 7}) == {
        first: [{"epoch": 3}, {"epoch": 4}],
        second: [{"epoch": e, "lr": 0.1} for e in (1, 2, 3, 4)], empty: []}
    assert store.records_after_many({}) == {}


def test_live_view_is_what_the_single_reads_return(store):
    first, second = store.create_run({"method": "sgd"}), store.create_run({}, name="b")
    for epoch in (1, 2, 5):
        store.append_record(first, {"epoch": epoch})
    store.add_event(first, "hot_change", "delta 0.1 -> 0.2", epoch=2, payload={"delta": 0.2})
    store.add_event(second, "note", "hello")
    store.add_event(first, "note", "later")
    store.set_progress(first, {"epoch": 6, "batch": 3})
    view = store.live_view([second, 404, first, second])
    ids = [second, first]
    assert view["runs"] == [store.get_run(run_id) for run_id in ids]
    assert view["counts"] == store.record_counts(ids)
    assert view["events"] == {run_id: store.events(run_id) for run_id in ids}
    assert view["progress"] == {first: store.get_progress(first), second: None}
    assert store.live_view([]) == {"runs": [], "counts": {}, "events": {}, "progress": {}}


def test_progress_round_trip(store):
    run_id = store.create_run({})
    store.set_progress(run_id, {"epoch": 2, "fraction": 0.25})
    before = time.time()
    store.set_progress(run_id, {"epoch": 2, "fraction": 0.5, "train_loss": math.nan})
    progress = store.get_progress(run_id)
    assert progress["fraction"] == 0.5 and math.isnan(progress["train_loss"])
    assert before <= progress.pop("updated_at") <= time.time()
    assert set(progress) == {"epoch", "fraction", "train_loss"}


def test_dashboard_queries_are_fast(store):
    run_ids = [store.create_run({"seed": seed}) for seed in range(100)]
    # Bulk-load 100 x 200 records straight into the table: 20,000 append_record calls
    # would dominate the test's time and are not what is measured here.
    with sqlite3.connect(store.path) as db:
        db.executemany("INSERT INTO records (run_id, epoch, data) VALUES (?, ?, ?)",
                       ((run_id, epoch, json.dumps({**RECORD, "epoch": epoch}))
                        for run_id in run_ids for epoch in range(1, 201)))
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        runs = store.list_runs(limit=100)
        by_run = store.records_many([run["id"] for run in runs[:4]])
        timings.append(time.perf_counter() - start)
    assert len(runs) == 100 and [len(records) for records in by_run.values()] == [200] * 4
    assert min(timings) < 0.1, timings


# --- events and controls

def test_events_round_trip(store):
    run_id = store.create_run({})
    first = store.add_event(run_id, "hot_change", "delta 0.1 -> 0.2", epoch=4,
                            payload={"delta": 0.2})
    second = store.add_event(run_id, "diverged", "loss is NaN")
    events = store.events(run_id)
    assert [event["id"] for event in events] == [first, second]
    assert {k: events[0][k] for k in ("run_id", "epoch", "kind", "message", "payload")} == \
        {"run_id": run_id, "epoch": 4, "kind": "hot_change", "message": "delta 0.1 -> 0.2",
         "payload": {"delta": 0.2}}
    assert events[1]["epoch"] is None and events[1]["payload"] is None
    assert events[0]["created_at"] <= events[1]["created_at"]


def test_controls_are_taken_once_oldest_first(store):
    run_id, other = store.create_run({}), store.create_run({})
    set_id = store.send_control(run_id, "set", {"delta": 0.2, "max_batch_size": 512})
    stop_id = store.send_control(run_id, "stop")
    store.send_control(other, "stop")
    taken = store.take_controls(run_id)
    assert [(c["id"], c["kind"], c["payload"]) for c in taken] == \
        [(set_id, "set", {"delta": 0.2, "max_batch_size": 512}), (stop_id, "stop", None)]
    assert all(c["run_id"] == run_id and c["consumed_at"] >= c["created_at"] for c in taken)
    assert store.take_controls(run_id) == []
    assert len(store.take_controls(other)) == 1


def test_unknown_control_kind_is_rejected(store):
    run_id = store.create_run({})
    with pytest.raises(ValueError,
                       match=r"kind should be one of stop, set, .*, but got kind=.explode."):
        store.send_control(run_id, "explode")


# --- the file

def test_creates_its_folder_in_wal_mode_with_a_schema_version(tmp_path):
    store = RunStore(tmp_path / "a" / "b" / "runs.db")
    assert store.path.parent.is_dir() and store.path.is_absolute()
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_a_file_written_by_one_store_is_read_by_another(tmp_path):
    path = tmp_path / "runs.db"
    run_id = RunStore(path).create_run({"seed": 1}, name="first")
    RunStore(path).append_record(run_id, RECORD)
    reopened = RunStore(str(path))
    assert reopened.get_run(run_id)["name"] == "first"
    assert reopened.records(run_id) == [RECORD]


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "runs.db"
    RunStore(path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this divebatch"):
        RunStore(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just some text that is long enough to have a header" * 20)
    with pytest.raises(sqlite3.DatabaseError):
        RunStore(path)


def test_default_path_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIVEBATCH_DB", str(tmp_path / "elsewhere.db"))
    assert RunStore.default_path() == tmp_path / "elsewhere.db"


def test_default_path_is_under_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("DIVEBATCH_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert RunStore.default_path() == tmp_path / ".divebatch" / "runs.db"


def test_a_requeued_run_keeps_its_first_start_and_the_seconds_of_its_earlier_starts(store):
    run_id = store.create_run({"epochs": 3})
    for first, ended in ((100.0, 110.0), (200.0, 204.0)):  # two starts, then a third
        store.write(lambda db: db.execute(
            "UPDATE runs SET status = 'stopped', started_at = ?, finished_at = ? WHERE id = ?",
            (first, ended, run_id)))
        assert store.requeue(run_id, keep_epochs=0)
    info = store.get_run(run_id)["info"]
    assert info["first_started_at"] == 100.0 and info["earlier_s"] == pytest.approx(14.0)
    assert not store.requeue(run_id, keep_epochs=0)  # queued: not requeued, info unchanged
    assert store.get_run(run_id)["info"] == info
