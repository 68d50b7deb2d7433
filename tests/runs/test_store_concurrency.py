"""RunStore under several threads and processes writing one file at once: no row lost, no
"database is locked", every control and every queued run taken once; the warm workers' rows and
the pages' tour (the file's locking and retries: test_sqlite_file.py)."""

import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from divebatch.runs.store import RunStore
from tests.helpers.records import RECORD


def test_one_store_shared_by_eight_threads(store):
    shared = store.create_run({})

    def work(thread):
        run_id = store.create_run({"thread": thread})
        for epoch in range(25):
            store.append_record(run_id, {"epoch": epoch, "thread": thread})
            store.add_event(shared, "tick", f"thread {thread} epoch {epoch}")
        store.update_info(shared, **{f"thread_{thread}": thread})
        return run_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        run_ids = list(pool.map(work, range(8)))
    assert all(len(store.records(run_id)) == 25 for run_id in run_ids)
    assert len(store.events(shared)) == 8 * 25
    assert store.get_run(shared)["info"] == {f"thread_{t}": t for t in range(8)}


def write_run(store, run_id, epochs, start):
    """Child process: what a training worker writes over a run."""
    start.wait()
    store.mark_running(run_id, os.getpid())
    for epoch in range(1, epochs + 1):
        store.set_progress(run_id, {"epoch": epoch, "fraction": 0.5})
        store.append_record(run_id, {**RECORD, "epoch": epoch, "train_loss": 1 / epoch})
        if epoch % 10 == 0:
            store.add_event(run_id, "tick", f"epoch {epoch}", epoch=epoch)
    store.update_info(run_id, pid=os.getpid())
    store.mark_finished(run_id, "completed")


def test_four_writer_processes_and_a_reader_lose_nothing(store):
    spawn = multiprocessing.get_context("spawn")
    run_ids = [store.create_run({"worker": k}) for k in range(4)]
    start = spawn.Barrier(5)
    workers = [spawn.Process(target=write_run, args=(store, run_id, 200, start))
               for run_id in run_ids]
    for worker in workers:
        worker.start()
    start.wait(timeout=60)
    seen = dict.fromkeys(run_ids, 0)
    while any(worker.is_alive() for worker in workers):  # the dashboard polling meanwhile
        assert len(store.list_runs()) == 4
        for run_id, records in store.records_many(run_ids).items():
            assert len(records) >= seen[run_id]
            seen[run_id] = len(records)
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * 4
    for run_id in run_ids:
        assert [r["epoch"] for r in store.records(run_id)] == list(range(1, 201))
        assert len(store.events(run_id)) == 20
        run = store.get_run(run_id)
        assert run["status"] == "completed" and run["info"]["pid"] > 0
    assert store.integrity_ok()


def take_until_done(store, run_id, ready, sending_done, taken):
    """Child process: poll take_controls until the sender is done and nothing is left."""
    ready.wait()
    ids = []
    while True:
        done = sending_done.is_set()  # read first: an empty take after this means all taken
        got = store.take_controls(run_id)
        ids += [control["id"] for control in got]
        if done and not got:
            break
    taken.put(ids)


def test_two_processes_never_take_the_same_control(store):
    spawn = multiprocessing.get_context("spawn")
    run_id = store.create_run({})
    ready, sending_done, taken = spawn.Barrier(3), spawn.Event(), spawn.Queue()
    takers = [spawn.Process(target=take_until_done,
                            args=(store, run_id, ready, sending_done, taken))
              for _ in range(2)]
    for taker in takers:
        taker.start()
    ready.wait(timeout=60)
    sent = [store.send_control(run_id, "set", {"delta": i / 100}) for i in range(1, 301)]
    sending_done.set()
    first, second = taken.get(timeout=60), taken.get(timeout=60)
    for taker in takers:
        taker.join(timeout=60)
    assert [taker.exitcode for taker in takers] == [0, 0]
    assert not set(first) & set(second)
    assert sorted(first + second) == sent
    assert first == sorted(first) and second == sorted(second)


# --- claims and warm workers

def test_concurrent_claims_take_each_queued_run_once_and_respect_a_limit(store):
    run_ids = [store.create_run({}) for _ in range(12)]
    claimed, errors = [], []

    def oldest_while_under_three(running, queued):
        return queued[0]["id"] if queued and len(running) < 3 else None

    def claimer():
        try:
            while (run_id := store.claim_next(oldest_while_under_three)) is not None:
                claimed.append(run_id)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and sorted(claimed) == run_ids[:3]  # oldest first, never over 3
    assert all(store.get_run(i)["info"] == {"background": True} for i in claimed)
    store.mark_finished(claimed[0], "completed")
    assert store.claim_next(oldest_while_under_three, pid=42) == run_ids[3]
    assert store.get_run(run_ids[3])["worker_pid"] == 42


def test_worker_rows_are_reserved_up_to_the_pool_size(store):
    first, second = store.reserve_worker(2), store.reserve_worker(2)
    assert store.reserve_worker(2) is None
    assert store.update_worker(first, pid=7, ready_at=1.0)
    run_id = store.create_run({})
    assert store.claim_next(lambda running, queued: run_id, worker_id=first) == run_id
    assert [(w["id"], w["pid"], w["run_id"]) for w in store.workers()] == [
        (first, 7, run_id), (second, None, None)]
    store.remove_worker(second)
    assert not store.update_worker(second, run_id=None)
    with pytest.raises(ValueError, match="worker columns are pid, ready_at, run_id"):
        store.update_worker(first, status="idle")


def test_a_pages_tour_is_set_replaced_and_ended(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    assert store.get_tour("syn") is None
    store.set_tour("syn", {"run_id": 3, "index": 0})
    store.set_tour("syn", {"run_id": 3, "index": 1})
    store.set_tour("learn", {"run_id": 4, "index": 0})
    assert store.get_tour("syn") == {"run_id": 3, "index": 1}
    store.set_tour("syn", None)
    assert store.get_tour("syn") is None and store.get_tour("learn")["run_id"] == 4
