"""Fault injection: workers SIGKILLed at random points, concurrent writers, a dashboard that
dies under a live run, thousands of stored runs."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers.cli import ROOT, cli_in_process
from divebatch.training import checkpoint
from divebatch import cli
from divebatch.runs import processes, queue
from divebatch.config import RunConfig
from divebatch.runs.store import RunStore
from divebatch.training.trainer import train
from tests.helpers.records import comparable
from tests.helpers.gates import HELD, release

# ~200 short epochs: a kill 0-0.6 s after a worker's first record lands mid-epoch, in a
# record write or in a checkpoint write, long before the run would end; whatever the speed of
# the machine, a worker is killed by KILL_WITHIN_EPOCHS epochs past the point it waits for.
KILL_CONFIG = RunConfig(problem="least_squares", n_samples=300, dim=8, epochs=200,
                        batch_size=8, max_batch_size=64, method="divebatch", progress_every=0.1)
KILL_WITHIN_EPOCHS = 20
DEADLINE_S = 150.0


def wait_until(condition, timeout: float, what: str, poll: float = 0.02):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)
    return result


def last_epoch(store, run_id) -> int:
    records = store.records(run_id)
    return records[-1]["epoch"] if records else 0


def kill_at_random_points(store, workers: dict, rng: random.Random, *, early_share: float,
                          after: dict | None = None) -> list[int]:
    """SIGKILL each worker {run_id: pid} at a random moment: `early_share` of them 0-4 s
    after the start (starting up, loading, first epoch) but before their first record, the
    others 0-0.6 s after their first record past epoch `after[run_id]` but within
    KILL_WITHIN_EPOCHS epochs of it. Returns the run ids killed: every one of them, since no
    worker can reach the end of its run before its kill."""
    after = after or {}
    started = time.monotonic()
    plan = {run_id: rng.random() < early_share for run_id in workers}
    kill_at: dict[int, float] = {}
    kill_by_epoch = {run_id: 1 if plan[run_id] else after.get(run_id, 0) + KILL_WITHIN_EPOCHS
                     for run_id in workers}
    pending, killed = dict(workers), []
    while pending:
        assert time.monotonic() - started < DEADLINE_S, "workers did not start"
        now = time.monotonic()
        for run_id, pid in list(pending.items()):
            epoch = last_epoch(store, run_id)
            if run_id not in kill_at:
                if plan[run_id]:
                    kill_at[run_id] = started + rng.uniform(0.0, 4.0)
                elif epoch > after.get(run_id, 0):
                    kill_at[run_id] = now + rng.uniform(0.0, 0.6)
            if run_id in kill_at and (now >= kill_at[run_id] or epoch >= kill_by_epoch[run_id]):
                assert store.get_run(run_id)["status"] == "running"
                os.kill(pid, signal.SIGKILL)
                killed.append(run_id)
                del pending[run_id]
        time.sleep(0.005)
    return killed


def check_killed_run(store, run_id, reference):
    """Reaped as interrupted within seconds, records 1..k equal to the reference's, and a
    checkpoint of epoch k - 1 or k (a kill between a record and its checkpoint)."""
    wait_until(lambda: run_id in queue.reap(store) or
               store.get_run(run_id)["status"] != "running", 5.0, f"reap of run {run_id}")
    assert store.get_run(run_id)["status"] == "interrupted"
    records = store.records(run_id)
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1))
    assert comparable(records) == reference[:len(records)]
    path = checkpoint.run_checkpoint_path(store.path, run_id)
    saved = checkpoint.load(path)["epoch"] if path.exists() else 0
    assert saved in (len(records) - 1, len(records))


@pytest.mark.slow
def test_sigkilled_workers_leave_a_consistent_resumable_store(isolated_store, monkeypatch):
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", "4")
    rng = random.Random(20250916)
    store = RunStore(isolated_store)
    reference = comparable(train(KILL_CONFIG).records)
    run_ids = [store.create_run(KILL_CONFIG.to_dict()) for _ in range(4)]

    # round 1: four fresh workers, killed at random points
    assert sorted(queue.dispatch(store)) == run_ids
    workers = {run_id: store.get_run(run_id)["worker_pid"] for run_id in run_ids}
    killed = kill_at_random_points(store, workers, rng, early_share=0.25)
    for run_id in killed:
        check_killed_run(store, run_id, reference)
        assert store.integrity_ok()

    # round 2: resume three of them and kill one again; two run to the end
    resumed = rng.sample(killed, 3)
    after = {run_id: queue.resume(store, run_id) for run_id in resumed}
    workers = {run_id: wait_until(lambda: store.get_run(run_id)["worker_pid"], 30.0,
                                  "a resumed worker") for run_id in resumed}
    finishing = resumed[:2]
    again = kill_at_random_points(store, {r: workers[r] for r in resumed[2:]}, rng,
                                  early_share=0.0, after=after)
    for run_id in again:
        check_killed_run(store, run_id, reference)
    killed += again
    assert len(killed) >= 5
    assert store.integrity_ok()

    # the uninterrupted run's records, after one or two kills; once more through the CLI
    for run_id in finishing:
        wait_until(lambda: store.get_run(run_id)["status"] == "completed", 60.0,
                   f"run {run_id} to complete", poll=0.1)
    result = cli_in_process("resume", str(again[0]), "--wait")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(again[0])] * 2
    for run_id in [*finishing, again[0]]:
        assert store.get_run(run_id)["status"] == "completed"
        assert comparable(store.records(run_id)) == reference
        assert not checkpoint.run_checkpoint_path(store.path, run_id).exists()
    assert store.integrity_ok()


APPENDER = textwrap.dedent("""
    import sys
    from divebatch.runs.store import RunStore
    store = RunStore(sys.argv[1], timeout=60)
    run_id, n = int(sys.argv[2]), int(sys.argv[3])
    for epoch in range(1, n + 1):
        store.append_record(run_id, {"epoch": epoch, "train_loss": 1.0 / epoch})
        store.set_progress(run_id, {"epoch": epoch + 1, "batch": 1})
        if epoch % 25 == 0:
            store.add_event(run_id, "note", f"epoch {epoch}", epoch=epoch)
            store.update_info(run_id, **{f"seen_{epoch}": epoch})
""")


def test_eight_concurrent_writers_and_a_reader_lose_nothing(isolated_store):
    store = RunStore(isolated_store)
    n_records = 150
    run_ids = [store.create_run({"epochs": n_records}, status="running") for _ in range(8)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", APPENDER, str(store.path), str(run_id),
                                 str(n_records)], env=env, stderr=subprocess.PIPE, text=True)
               for run_id in run_ids]
    reads = 0
    while any(writer.poll() is None for writer in writers):  # the dashboard's reads
        for run_id, records in store.records_many(run_ids).items():
            epochs = [r["epoch"] for r in records]
            assert epochs == list(range(1, len(epochs) + 1))  # a prefix, never a gap
        store.list_runs()
        reads += 1
    for writer in writers:
        assert writer.wait() == 0 and writer.stderr.read() == ""
    assert reads > 1
    for run_id in run_ids:
        assert len(store.records(run_id)) == n_records
        assert len(store.events(run_id)) == n_records // 25
        assert store.get_run(run_id)["info"]["seen_150"] == 150
    assert store.integrity_ok()


PARENT = textwrap.dedent("""
    import sys, time
    from divebatch.runs import queue
    from divebatch.config import RunConfig
    from divebatch.runs.store import RunStore
    store = RunStore(sys.argv[1])
    config = RunConfig(problem="least_squares", n_samples=300, dim=8, epochs=60,
                       batch_size=16, method="sgd", pace_s=float(sys.argv[2]))
    print(queue.submit(store, config), flush=True)
    time.sleep(600)  # the "dashboard" keeps serving until it is killed
""")


def test_killing_the_dashboard_leaves_its_runs_going(isolated_store):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIVEBATCH_MAX_WORKERS": "1"}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(isolated_store), str(HELD)],
                              env=env, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    run_id = int(parent.stdout.readline())
    store = RunStore(isolated_store)
    worker = wait_until(lambda: store.get_run(run_id)["worker_pid"], 30.0, "the worker")
    wait_until(lambda: store.records(run_id), 60.0, "the first epoch (then held)")
    os.killpg(parent.pid, signal.SIGKILL)  # the dashboard and its whole process group
    parent.wait()
    assert processes.pid_alive(worker)
    release(store, run_id)
    wait_until(lambda: store.get_run(run_id)["status"] != "running", 60.0,
               "the run to end", poll=0.1)
    assert store.get_run(run_id)["status"] == "completed"
    assert len(store.records(run_id)) == 60


def test_reap_catches_a_dead_worker_and_a_reused_pid(isolated_store):
    store = RunStore(isolated_store)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = store.create_run({}, status="running")
    store.mark_running(dead, gone.pid)
    reused = store.create_run({}, status="running")
    store.mark_running(reused, os.getpid())  # alive, but not the process that started it
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE runs SET started_at = 1000 WHERE id = ?", (reused,))
    alive = store.create_run({}, status="running")
    store.mark_running(alive, os.getpid())
    assert sorted(queue.reap(store)) == [dead, reused]
    assert store.get_run(alive)["status"] == "running"


def test_list_and_show_reap_dead_workers(isolated_store, capsys):
    store = RunStore(isolated_store)
    gone = subprocess.Popen(["true"])
    gone.wait()
    for command in ("list", "show"):
        run_id = store.create_run({"problem": "least_squares"}, status="running")
        store.mark_running(run_id, gone.pid)
        assert cli.main([command] + ([str(run_id)] if command == "show" else [])) == 0
        assert "interrupted" in capsys.readouterr().out
        assert store.get_run(run_id)["status"] == "interrupted"


def test_every_dashboard_page_load_reaps_dead_workers(isolated_store):
    from streamlit.testing.v1 import AppTest
    store = RunStore(isolated_store)
    gone = subprocess.Popen(["true"])
    gone.wait()
    run_id = store.create_run({"problem": "least_squares"}, status="running")
    store.mark_running(run_id, gone.pid)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert store.get_run(run_id)["status"] == "interrupted"


def fill(store: RunStore, n_runs: int, n_records: int) -> None:
    """n_runs completed runs of n_records records each, written in bulk."""
    now = time.time()
    with sqlite3.connect(store.path) as db:
        db.executemany("INSERT INTO runs (id, name, config, status, created_at) "
                       "VALUES (?, '', '{\"method\": \"sgd\"}', 'completed', ?)",
                       [(i, now - 86400 * (n_runs - i) / n_runs * 30)
                        for i in range(1, n_runs + 1)])
        record = '{"epoch": %d, "train_loss": 0.5, "val_loss": 0.5, "train_time": 1.0}'
        db.executemany("INSERT INTO records (run_id, epoch, data) VALUES (?, ?, ?)",
                       [(i, e, record % e) for i in range(1, n_runs + 1)
                        for e in range(1, n_records + 1)])


def disk_size(store: RunStore) -> int:
    """Bytes of the store file and its write-ahead log."""
    wal = store.path.with_name(store.path.name + "-wal")
    return store.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_thousands_of_runs_stay_fast_and_prune_shrinks_the_file(isolated_store):
    store = RunStore(isolated_store)
    fill(store, 3000, 20)
    started = time.perf_counter()
    runs = store.list_runs(limit=50)
    store.records_many([run["id"] for run in runs])
    queue.reap(store)
    store.get_run(1500)
    assert time.perf_counter() - started < 1.0
    size = disk_size(store)
    deleted = store.delete_runs(older_than=15 * 86400)
    assert 1400 < len(deleted) < 1600 and max(deleted) < min(r["id"] for r in store.list_runs())
    assert len(store.delete_runs(keep=100)) == 3000 - len(deleted) - 100
    store.vacuum()
    assert disk_size(store) < size / 10
    assert len(store.list_runs()) == 100 and store.integrity_ok()


def test_prune_command_keeps_active_runs_and_removes_files(isolated_store, capsys):
    store = RunStore(isolated_store)
    old = [store.create_run({}, status=status) for status in ("completed", "failed")]
    active = [store.create_run({}, status=status) for status in ("queued", "running")]
    store.mark_running(active[1], os.getpid())  # a live worker
    newest = store.create_run({}, status="stopped")
    for run_id in old:
        checkpoint.save(checkpoint.run_checkpoint_path(store.path, run_id), {"epoch": 1})
        (processes.log_folder(store.path)).mkdir(parents=True, exist_ok=True)
        (processes.log_folder(store.path) / f"run-{run_id}.log").write_text("log")
    assert cli.main(["prune"]) == 2  # says which runs, or refuses
    assert "prune needs --keep N" in capsys.readouterr().err
    assert cli.main(["prune", "--keep", "1"]) == 0
    assert "deleted 2 runs" in capsys.readouterr().out
    assert sorted(run["id"] for run in store.list_runs()) == sorted([*active, newest])
    assert not any(checkpoint.store_folder(store.path).iterdir())
    assert not any(processes.log_folder(store.path).iterdir())
