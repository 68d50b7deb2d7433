import pytest

from divebatch.runs.store import RunStore


@pytest.fixture
def store(tmp_path):
    """A fresh store in its own folder (created by the store)."""
    return RunStore(tmp_path / "store" / "runs.db")
