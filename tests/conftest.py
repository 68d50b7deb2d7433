"""Shared fixtures: every test gets its own run store and data folder."""

import os

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


def pytest_configure(config):
    """In a pytest-xdist worker, torch computes on one thread: two workers share the two
    cores (the runs' own worker processes set their threads themselves)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        torch.set_num_threads(1)


def _many_processes(item) -> bool:
    """A real-browser test (servers, workers, chromium) or a Ray test (a local cluster)."""
    return item.get_closest_marker("browser") is not None or item.path.name.startswith("test_ray")


def pytest_itemcollected(item):
    """With pytest-xdist (`-n 2 --dist loadgroup`, scripts/test.sh), the tests that start many
    processes of their own (real-browser and Ray tests) run one after the other in one worker:
    side by side they overloaded two cores, and two Ray clusters confused `address="auto"`.
    (Marked as each test is collected: xdist reads the groups in its own
    pytest_collection_modifyitems, which runs before a conftest's.)"""
    if _many_processes(item):
        item.add_marker(pytest.mark.xdist_group("many_processes"))


def pytest_collection_modifyitems(config, items):
    """The many-process tests are the suite's longest stretch: they come first, and the other
    worker takes the rest meanwhile."""
    items.sort(key=lambda item: not _many_processes(item))  # stable
