"""Worker processes: their environment (threads, niceness) and their lower priority."""

import os

import pytest

from divebatch.runs import processes


@pytest.mark.parametrize("cores,slots,threads", [(2, 1, 1), (16, 15, 1), (16, 3, 4), (1, 1, 1)])
def test_workers_share_the_cores_with_one_share_left_for_the_dashboard(
        monkeypatch, cores, slots, threads):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", str(slots))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert processes.worker_env()["OMP_NUM_THREADS"] == str(threads)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert processes.worker_env()["OMP_NUM_THREADS"] == "3"


def test_workers_ask_for_a_lower_priority_and_a_bad_value_falls_back(monkeypatch):
    monkeypatch.delenv("DIVEBATCH_WORKER_NICE", raising=False)
    assert processes.worker_env()["DIVEBATCH_WORKER_NICE"] == str(processes.WORKER_NICENESS)
    increments = []
    monkeypatch.setattr(os, "nice", lambda inc: increments.append(inc) or 3)
    for value, expected in (("7", 4), ("x", processes.WORKER_NICENESS - 3), ("0", 0), ("99", 16)):
        monkeypatch.setenv("DIVEBATCH_WORKER_NICE", value)
        increments.clear()
        processes.lower_priority()
        assert increments == [0, expected], value
