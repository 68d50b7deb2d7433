"""Shared fixtures: every test gets its own run store and data folder."""

import pytest

from tests.helpers.gates import stop_runs_and_wait


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """DIVEBATCH_DB points at a fresh file so no test touches the user's runs; no warm
    workers (each would wait for runs long after its test) unless a test asks for them."""
    db = tmp_path / "runs.db"
    monkeypatch.setenv("DIVEBATCH_DB", str(db))
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "0")
    monkeypatch.setenv("DIVEBATCH_DATA", str(tmp_path / "data"))
    return db


@pytest.fixture
def store():
    """The run store the dashboard and the workers of this test use."""
    from divebatch.runs.store import RunStore
    return RunStore(RunStore.default_path())


@pytest.fixture
def no_workers_left_behind(store):
    """Stop every run the test left queued or running, and wait for its worker to exit."""
    yield
    stop_runs_and_wait(store)
