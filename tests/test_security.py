"""Security: local-only dashboard, no unpickling of untrusted data, no shell, no path
traversal through user-chosen names, no user text rendered as raw HTML."""

import ast
import os
import pickle
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import torch

from divebatch.training import checkpoint
from divebatch.runs import processes, queue
from divebatch.paths import path_in, safe_filename
from divebatch.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for p in ROOT.rglob("*.py")
                 if not {"tests", ".venv", ".git"} & set(p.relative_to(ROOT).parts))


class WritesMarker:
    """Unpickling this runs `open(path, "w")`: proof that a loader executed pickle code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "raw pickle"])
def test_crafted_checkpoint_is_refused_without_running_its_code(tmp_path, writer):
    marker, path = tmp_path / "pwned", tmp_path / "run.pt"
    evil = {"format": checkpoint.FORMAT_VERSION, "state": {"epoch": WritesMarker(marker)}}
    if writer == "torch.save":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(checkpoint.CheckpointError, match="refused, it holds io.open"):
        checkpoint.load(path)
    assert not marker.exists()


def test_resuming_a_run_with_a_crafted_checkpoint_fails_cleanly(isolated_store, tmp_path):
    store = RunStore(isolated_store)
    run_id = store.create_run({"epochs": 3}, status="interrupted")
    store.append_record(run_id, {"epoch": 1})
    marker, path = tmp_path / "pwned", checkpoint.run_checkpoint_path(store.path, run_id)
    path.parent.mkdir(parents=True)
    torch.save({"format": 1, "state": {"epoch": WritesMarker(marker)}}, path)
    with pytest.raises(ValueError, match="cannot load the checkpoint .* refused"):
        queue.resume(store, run_id)
    assert not marker.exists() and store.get_run(run_id)["status"] == "interrupted"


@pytest.mark.parametrize("name, expected", [
    ("../../etc/passwd", "etc_passwd"), ("/etc/shadow", "etc_shadow"),
    ("..\\..\\windows\\system32", "windows_system32"), ("..", "run"), ("", "run"),
    ("~/.ssh/id_rsa", "ssh_id_rsa"), ("-rf --no-preserve-root", "rf_--no-preserve-root"),
    ("CON.csv", "run"), ("nul", "run"), ("run\x00.csv", "run.csv"),
    ("<script>alert(1)</script>.json", "script_alert_1_script.json"),
    ("delta=0.1 B=128.csv", "delta_0.1_B_128.csv"), ("résumé", "r_sum"),
])
def test_safe_filename_neutralises_traversal_and_odd_names(name, expected):
    assert safe_filename(name) == expected


def test_safe_filename_is_short_and_keeps_the_extension():
    name = safe_filename("x" * 1000 + ".csv")
    assert len(name) <= 120 and name.endswith(".csv")


@pytest.mark.parametrize("name", ["../x.pt", "a/b.pt", "..", "/etc/passwd", ".hidden",
                                  "run 1.pt", ""])
def test_path_in_refuses_names_that_leave_the_folder(tmp_path, name):
    with pytest.raises(ValueError, match="plain file name"):
        path_in(tmp_path, name)


def test_checkpoint_paths_stay_in_the_checkpoint_folder(tmp_path):
    folder = (tmp_path / "checkpoints" / "runs.db").resolve()
    assert checkpoint.run_checkpoint_path(tmp_path / "runs.db", 7) == folder / "run-7.pt"
    for bad in ("../../etc/passwd", "7/../../x", 1.5):
        with pytest.raises(TypeError):
            checkpoint.run_checkpoint_path(tmp_path / "runs.db", bad)


def test_workers_are_spawned_with_an_argument_list_in_their_own_session(
        isolated_store, monkeypatch):
    calls = []

    class FakePopen:
        def __init__(self, args, **kwargs):
            calls.append((args, kwargs))
            self.pid = 4242
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    store = RunStore(isolated_store)
    run_id = store.create_run({"name": "; rm -rf / #"})
    assert processes.spawn_worker(store, run_id) == 4242
    args, kwargs = calls[0]
    assert isinstance(args, list) and args[-2:] == ["worker", str(run_id)]
    assert not kwargs.get("shell") and kwargs["start_new_session"] is True


def test_streamlit_config_is_local_only_without_telemetry():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False
    script = (ROOT / "scripts" / "dashboard.sh").read_text()
    assert '--server.address "${DIVEBATCH_ADDRESS:-127.0.0.1}"' in script


def calls_in(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_no_shell_no_eval_and_no_unsafe_unpickling_in_the_code():
    problems = []
    for path in SOURCES:
        where = path.relative_to(ROOT)
        for call, name in calls_in(path):
            shell = keyword(call, "shell")
            if shell is not None and not (isinstance(shell, ast.Constant) and not shell.value):
                problems.append(f"{where}:{call.lineno} {name}(shell=...)")
            if name in ("os.system", "os.popen", "eval", "exec", "pickle.load", "pickle.loads",
                        "marshal.loads", "yaml.load", "shelve.open"):
                problems.append(f"{where}:{call.lineno} {name}")
            if name == "torch.load":
                weights_only = keyword(call, "weights_only")
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    problems.append(f"{where}:{call.lineno} torch.load without weights_only=True")
            if name.endswith("np.load") or name.endswith("numpy.load"):
                allow = keyword(call, "allow_pickle")
                if not (isinstance(allow, ast.Constant) and allow.value is False):
                    problems.append(f"{where}:{call.lineno} np.load without allow_pickle=False")
    assert problems == []


def test_the_only_unpickler_is_the_restricted_cifar_one():
    subclasses = [str(path.relative_to(ROOT)) for path in SOURCES
                  if re.search(r"class \w+\(pickle\.(_)?Unpickler\)", path.read_text())]
    assert subclasses == ["divebatch/data/cifar.py"]


def test_no_user_text_is_rendered_as_raw_html():
    """unsafe_allow_html only ever gets text written in the code (a string constant)."""
    problems = []
    for path in SOURCES:
        for call, name in calls_in(path):
            allow = keyword(call, "unsafe_allow_html")
            if allow is None or (isinstance(allow, ast.Constant) and allow.value is False):
                continue
            body = call.args[0] if call.args else keyword(call, "body")
            if not isinstance(body, ast.Constant):
                problems.append(f"{path.relative_to(ROOT)}:{call.lineno} {name}")
    assert problems == []


def test_dashboard_script_serves_a_read_only_twin_with_viewer(tmp_path):
    fake = tmp_path / "python3"  # stands in for python3: prints what it would have run
    fake.write_text('#!/bin/sh\necho "role=${DIVEBATCH_ROLE:-none} $*"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "DIVEBATCH_NO_SETUP": "1"}
    for name in ("DIVEBATCH_ROLE", "DIVEBATCH_PORT", "DIVEBATCH_ADDRESS", "PYTHON"):
        env.pop(name, None)
    script = str(ROOT / "scripts" / "dashboard.sh")
    viewer = subprocess.run(["bash", script, "--viewer"], env=env, capture_output=True,
                            text=True, check=True).stdout.splitlines()[-1]
    assert viewer.startswith("role=viewer -m streamlit run server.py")
    assert "--server.port 8502" in viewer and "--server.address 127.0.0.1" in viewer
    plain = subprocess.run(["bash", script], env=env, capture_output=True, text=True,
                           check=True).stdout.splitlines()[-1]
    assert plain.startswith("role=none") and "--server.port 8501" in plain


def test_dashboard_script_sets_up_its_environment_unless_told_not_to(tmp_path):
    """Without DIVEBATCH_NO_SETUP the script sets up .venv first: with a too-old Python it
    stops there, before serving anything."""
    old = tmp_path / "python-old"  # fails the version check, would print if it served
    old.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 1\necho served\n')
    old.chmod(0o755)
    env = {**os.environ, "PYTHON": str(old)}
    env.pop("DIVEBATCH_NO_SETUP", None)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "dashboard.sh")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 1 and "needs Python 3.11 or newer" in done.stderr
    assert "served" not in done.stdout


@pytest.mark.parametrize("value,role,can", [("", "instructor", True),
                                            ("viewer", "viewer", False),
                                            ("Viewer ", "viewer", False),
                                            ("admin", "viewer", False)])
def test_role_comes_from_the_server_and_fails_closed(monkeypatch, value, role, can):
    from dashboard import roles
    monkeypatch.setenv("DIVEBATCH_ROLE", value)
    assert roles.server_role() == role and roles.can_change() is can
    assert (roles.role_problem() is not None) == (value == "admin")
