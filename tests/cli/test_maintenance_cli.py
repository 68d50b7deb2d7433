"""`resume` (divebatch/cli/maintenance.py): the warm worker it starts leaves once the queue is
empty ($DIVEBATCH_WARM_IDLE_S=0 in its environment) instead of waiting 15 minutes, unless the
user set that variable; the command's own environment is left as it was."""

import os

import pytest

from tests.helpers.cli import cli_in_process
from divebatch.config import RunConfig
from divebatch.runs import capacity, processes, warm_pool


@pytest.fixture
def spawned(monkeypatch):
    """The environment each warm worker would be started with (none is started)."""
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "1")
    monkeypatch.setattr(capacity, "gpu_ids", lambda: [])
    monkeypatch.delenv(warm_pool.IDLE_ENV, raising=False)
    environments = []

    def spawn(store, args, log_name, *rest):
        environments.append(processes.worker_env())
        return os.getpid()
    monkeypatch.setattr(warm_pool, "spawn_process", spawn)
    return environments


def failed_run(store) -> int:
    run_id = store.create_run(RunConfig(problem="least_squares").to_dict(), status="running")
    store.mark_finished(run_id, "failed", "for the test")
    return run_id


def test_resume_starts_a_warm_worker_that_leaves_when_the_queue_is_empty(store, spawned):
    result = cli_in_process("resume", str(failed_run(store)))
    assert result.returncode == 0, result.stderr
    assert [env[warm_pool.IDLE_ENV] for env in spawned] == ["0"]
    assert warm_pool.IDLE_ENV not in os.environ


def test_resume_keeps_an_idle_time_the_user_set(store, spawned, monkeypatch):
    monkeypatch.setenv(warm_pool.IDLE_ENV, "600")
    assert cli_in_process("resume", str(failed_run(store))).returncode == 0
    assert [env[warm_pool.IDLE_ENV] for env in spawned] == ["600"]


def test_prune_keep_0_spares_none_and_no_flag_is_refused(store):
    """--keep 0 was taken for "not given" and refused with "prune needs --keep N"."""
    finished = [store.create_run({}, status=status) for status in ("completed", "stopped")]
    queued = store.create_run({})
    refused = cli_in_process("prune")
    assert refused.returncode == 2 and "prune needs --keep N" in refused.stderr
    result = cli_in_process("prune", "--keep", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"deleted {len(finished)} runs")
    assert [run["id"] for run in store.list_runs()] == [queued]
