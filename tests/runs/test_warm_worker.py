"""The warm worker's loop (warm_worker.serve), in this process and gated on events, not time:
the poll's sleep is replaced by a gate. A worker started by a command-line command
($DIVEBATCH_WARM_IDLE_S=0) leaves as soon as the queue is empty; the dashboard's keeps
waiting for the next click."""

import pytest

from divebatch.config import RunConfig
from divebatch.runs import capacity, queue, warm_pool, warm_worker

TINY = RunConfig(problem="least_squares", n_samples=200, dim=4, epochs=2, method="sgd",
                 device="cpu", diversity_every_epoch=False)


class StillPolling(Exception):
    """The gate that ends a worker which went on polling."""


@pytest.fixture
def worker_id(store, monkeypatch):
    """A warm worker's row in a store with two slots, no GPU and no warm-up run."""
    monkeypatch.setattr(warm_worker, "warm_up", lambda: None)
    monkeypatch.setattr(capacity, "gpu_ids", lambda: [])
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", "2")
    monkeypatch.delenv(warm_pool.IDLE_ENV, raising=False)
    return store.reserve_worker(1)


def poll_gate(monkeypatch, on_poll):
    polls = []

    def gate(seconds):
        polls.append(seconds)
        on_poll()
    monkeypatch.setattr(warm_worker.time, "sleep", gate)
    return polls


def test_a_cli_started_worker_trains_the_queue_then_leaves(store, worker_id, monkeypatch):
    monkeypatch.setenv(warm_pool.IDLE_ENV, "0")
    run_id = store.create_run(TINY.to_dict())
    poll_gate(monkeypatch, lambda: pytest.fail("it polled an empty queue instead of leaving"))
    warm_worker.serve(store, worker_id)
    assert store.get_run(run_id)["status"] == "completed"
    assert store.workers() == []


def test_a_cli_started_worker_waits_while_a_queued_run_may_yet_be_its(store, worker_id,
                                                                      monkeypatch):
    monkeypatch.setenv(warm_pool.IDLE_ENV, "0")
    waiting = store.create_run(TINY.replace(nproc=2).to_dict())  # not for a warm worker
    polls = poll_gate(monkeypatch, lambda: store.cancel_queued(waiting))
    warm_worker.serve(store, worker_id)
    assert len(polls) == 1  # polled while the run was queued, left once it was gone
    assert store.workers() == []


def test_the_dashboards_worker_keeps_waiting_after_its_run(store, worker_id, monkeypatch):
    run_id = store.create_run(TINY.to_dict())

    def stop():
        raise StillPolling
    poll_gate(monkeypatch, stop)
    with pytest.raises(StillPolling):
        warm_worker.serve(store, worker_id)
    assert store.get_run(run_id)["status"] == "completed"


def test_a_run_queued_as_the_worker_leaves_goes_to_a_new_worker(store, worker_id,
                                                                 monkeypatch):
    monkeypatch.setenv(warm_pool.IDLE_ENV, "0")
    poll_gate(monkeypatch, lambda: pytest.fail("it polled an empty queue instead of leaving"))
    forget = store.remove_worker
    late = []

    def forget_then_queue(worker):  # a dispatcher that saw this worker free left a run to it
        forget(worker)
        late.append(store.create_run(TINY.to_dict()))
    monkeypatch.setattr(store, "remove_worker", forget_then_queue)
    dispatched = []
    monkeypatch.setattr(queue, "dispatch", lambda store: dispatched.append(True))
    warm_worker.serve(store, worker_id)
    assert late and dispatched == [True]
    assert store.get_run(late[0])["status"] == "queued"  # left for the new worker
