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


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (`-n 2 --dist loadgroup`, scripts/test.sh), the real-browser tests
    run one after the other in one worker (their servers, workers and chromium already use
    both cores), and so do the Ray tests (one local cluster at a time). The browser tests,
    the suite's longest stretch, come first: the other worker takes the rest meanwhile."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("browser"))
        elif item.path.name.startswith("test_ray"):
            item.add_marker(pytest.mark.xdist_group("ray"))
    items.sort(key=lambda item: item.get_closest_marker("browser") is None)  # stable
