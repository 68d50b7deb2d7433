"""Test and benchmark harness: start the dashboard as a real server in a subprocess (browser
tests, benchmarks/dashboard.py), and drive Debian's chromium through playwright (never
`playwright install`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("DIVEBATCH_SCREENSHOTS")  # where browser tests save screenshots
             or Path(tempfile.gettempdir()) / "divebatch-screenshots")


def browser_or_skip():
    """playwright's sync API; the calling test module is skipped without playwright or
    Debian's chromium."""
    import pytest
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)",
                    allow_module_level=True)
    return sync_api
# In the browser: some chart shows a finite point. plotly.js's decoded traces (_fullData):
# the figures send numpy arrays base64-encoded, so the raw `e.data` holds {dtype, bdata}, not
# a list; the shared legend's points are NaN.
FIRST_POINT = ("() => [...document.querySelectorAll('.js-plotly-plot')]"
               ".some(e => (e._fullData || []).some(t => t.x && "
               "Array.from(t.x).some(Number.isFinite)))")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def dashboard_server(db_path: str | os.PathLike, env: dict | None = None,
                     timeout: float = 60.0, app: str = "server.py",
                     log: str | os.PathLike | None = None):
    """`python -m streamlit run server.py` (app.py with the growing charts' read-only routes;
    or another script of this repository, such as app.py alone) on 127.0.0.1
    and a free port with DIVEBATCH_DB set; yields the base URL; the server's process group
    is killed on exit, whatever happened. `log`: a file that receives the server's standard
    output and error (its tracebacks and warnings), else they are dropped."""
    port = free_port()
    full_env = {**os.environ, "DIVEBATCH_DB": str(db_path), **(env or {})}
    command = [sys.executable, "-m", "streamlit", "run", app,
               "--server.address", "127.0.0.1", "--server.port", str(port),
               "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]
    log_file = open(log, "ab") if log else None  # noqa: SIM115 (closed below)
    server = subprocess.Popen(command, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                              stdout=log_file or subprocess.DEVNULL,
                              stderr=log_file or subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(server, url, timeout)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        if log_file:
            log_file.close()
        else:
            server.stderr.close()


def _wait_healthy(server: subprocess.Popen, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            said = server.stderr.read().decode(errors="replace")[-2000:] if server.stderr \
                else "see its log"
            raise RuntimeError(f"the dashboard exited with code {server.returncode}: {said}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the dashboard did not answer on {url} within {timeout} s")


def server_pid(url: str) -> int:
    """The pid of the `streamlit run` process serving `url` (found in Linux's /proc)."""
    port = url.rsplit(":", 1)[1].encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in b" ".join(command) and port in command:
            return int(cmdline.parent.name)
    raise RuntimeError(f"no streamlit process serves {url}")


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
