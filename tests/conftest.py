"""Shared fixtures: every test gets its own run store and data folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """DIVEBATCH_DB points at a fresh file so no test touches the user's runs; no warm
    workers (each would wait for runs long after its test) unless a test asks for them."""
    db = tmp_path / "runs.db"
    monkeypatch.setenv("DIVEBATCH_DB", str(db))
    monkeypatch.setenv("DIVEBATCH_WARM_WORKERS", "0")
    monkeypatch.setenv("DIVEBATCH_DATA", str(tmp_path / "data"))
    return db


def run_cli(*args: str, timeout: float = 120, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m divebatch ARGS` in a subprocess, as a user would type it."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "divebatch", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd or ROOT)


def cli_in_process(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`divebatch.cli.main(ARGS)` in this process: what `python -m divebatch ARGS` runs,
    without a new interpreter that imports torch again (about 2 s a call). Standard output
    and error are captured as text; an exception main lets through fails the test, as a
    traceback would. The tests of the process itself (its exit code, its streams, a closed
    pipe) use run_cli."""
    import contextlib
    import io

    import torch

    from divebatch.cli import main
    stdout, stderr, threads = io.StringIO(), io.StringIO(), torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's own errors
                code = exit_.code if isinstance(exit_.code, int) else 1
            finally:
                torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["divebatch", *args], code, stdout.getvalue(),
                                       stderr.getvalue())



@pytest.fixture
def store():
    """The run store the dashboard and the workers of this test use."""
    from divebatch.runs.store import RunStore
    return RunStore(RunStore.default_path())


def stop_runs_and_wait(store, timeout: float = 30.0) -> None:
    """Stop every queued or running run in `store` and wait for their workers to exit."""
    import time
    from divebatch.runs import jobs
    for run in store.list_runs(status=("queued", "running")):
        jobs.request_stop(store, run["id"])
    deadline = time.monotonic() + timeout
    while store.list_runs(status="running") and time.monotonic() < deadline:
        jobs.reap(store)
        time.sleep(0.1)


@pytest.fixture
def no_workers_left_behind(store):
    """Stop every run the test left queued or running, and wait for its worker to exit."""
    yield
    stop_runs_and_wait(store)
