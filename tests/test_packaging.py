"""The package as a user installs it: a wheel built from a clean copy of the tree, installed (not
editable) into a fresh virtual environment, run through its console script `divebatch`.

The heavy dependencies (torch, numpy, ...) come from this test's own environment through a path
file, so nothing is downloaded; pip still checks the wheel's declared dependencies against them.
The package itself must come from the wheel: the test checks where `divebatch` was imported from.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What a clean clone would not hold: environments, caches, build outputs, data, run stores.
NOT_IN_A_CLONE = {".git", ".venv", "build", "dist", ".divebatch", ".pytest_cache", ".hypothesis",
                  "data", "artifacts", "reports"}  # at the top of the tree only
NOWHERE_IN_A_CLONE = shutil.ignore_patterns("__pycache__", "*.egg-info")


def not_in_a_clone(folder: str, names: list[str]) -> set[str]:
    top = NOT_IN_A_CLONE.intersection(names) if Path(folder) == ROOT else set()
    return top | NOWHERE_IN_A_CLONE(folder, names)

# Where the package was imported from, and whether the console script is `python -m divebatch`.
IMPORTED_FROM = """
import sys
from importlib.metadata import entry_points
from pathlib import Path
import divebatch, divebatch.__main__
(script,) = entry_points(group="console_scripts", name="divebatch")
print(Path(sys.prefix).resolve() if Path(divebatch.__file__).is_relative_to(sys.prefix) else "?")
print(script.load() is divebatch.__main__.main)
"""


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def build_wheel(tmp_path: Path) -> Path:
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    shutil.copytree(ROOT, source, ignore=not_in_a_clone)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheels), str(source)])
    (wheel,) = wheels.glob("divebatch-*.whl")
    return wheel


def fresh_environment(tmp_path: Path) -> Path:
    """A new virtual environment that sees this one's packages after its own."""
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    # Plain path lines: the directories join sys.path, their own .pth files (our editable
    # install of divebatch among them) are not run.
    Path(purelib.stdout.strip(), "zz_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    return venv


@pytest.mark.slow
def test_wheel_installs_and_its_console_script_runs(tmp_path):
    wheel = build_wheel(tmp_path)
    venv = fresh_environment(tmp_path)
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--quiet", "--no-index", str(wheel)])
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["DIVEBATCH_DB"] = str(tmp_path / "runs.db")
    work = tmp_path / "work"  # not the source tree, which would shadow the installed package
    work.mkdir()
    where = run([str(venv / "bin" / "python"), "-c", IMPORTED_FROM], env=env, cwd=work)
    assert where.stdout.split() == [str(venv.resolve()), "True"], where.stdout

    script = str(venv / "bin" / "divebatch")
    help_text = run([script, "--help"], env=env, cwd=work).stdout
    assert "run" in help_text and "sweep" in help_text
    assert help_text.startswith("usage: divebatch ")  # named as typed, not `python -m`
    version = wheel.name.split("-")[1]
    assert run([script, "--version"], env=env, cwd=work).stdout.strip() == f"divebatch {version}"
    typo = subprocess.run([script, "rn"], capture_output=True, text=True, env=env, cwd=work)
    assert typo.returncode == 2 and typo.stderr.startswith("error: divebatch: argument COMMAND")
    assert "--max-batch-size" in run([script, "run", "--help"], env=env, cwd=work).stdout
    trained = run([script, "run", "--problem", "least_squares", "--epochs", "1",
                   "--n-samples", "200", "--dim", "4", "--quiet"], env=env, cwd=work)
    lines = trained.stdout.split()
    assert lines[0] == lines[-1] and lines[0].isdigit(), trained.stdout
    shown = run([script, "show", lines[0]], env=env, cwd=work).stdout
    assert "completed" in shown
