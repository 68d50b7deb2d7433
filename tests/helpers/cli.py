"""The command line as a user runs it: `python -m divebatch` in a subprocess, or its `main`
in this process (no new interpreter importing torch again)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the repository


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
