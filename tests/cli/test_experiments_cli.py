"""`reproduce` and `sweep` (divebatch/cli/experiments.py): every option and the report's folder
are checked before anything is printed or trained."""

import os

import pytest

from tests.helpers.cli import cli_in_process
from divebatch.runs import worker


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(worker, "execute_run", lambda *a, **k: pytest.fail("a run trained"))


def assert_refused_before_anything(result, store, message: str) -> None:
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr == f"error: {message}\n"  # no "skipped:" notes, no progress
    assert store.list_runs() == []


def test_reproduce_refuses_an_unwritable_output_before_training(tmp_path, store, no_training):
    blocker = tmp_path / "a-file"
    blocker.write_text("kept")
    output = blocker / "reports"
    result = cli_in_process("reproduce", "--scale", "tiny", "--output", str(output), "--quiet")
    assert_refused_before_anything(result, store, f"--output: cannot write the report to "
                                                  f"{output}: Not a directory")
    assert blocker.read_text() == "kept"


@pytest.mark.parametrize("command", [["reproduce", "--scale", "tiny"],
                                     ["sweep", "--problem", "least_squares"]])
def test_bad_threads_refused_before_any_note(command, store, no_training):
    result = cli_in_process(*command, "--threads", "-1", "--quiet")
    assert_refused_before_anything(result, store, "--threads should be an int >= 0, but got "
                                                  "--threads=-1")


def test_ray_flags_without_ray_refused_before_any_note(store, no_training):
    result = cli_in_process("reproduce", "--scale", "tiny", "--gpus-per-run", "1")
    assert_refused_before_anything(result, store, "--gpus-per-run should be used with "
                                                  "--backend ray, but got --backend local")


def test_background_reproduce_queues_for_workers_that_leave_when_idle(tmp_path, store,
                                                                     monkeypatch):
    from divebatch.experiments import reproduce
    from divebatch.runs import warm_pool
    monkeypatch.delenv(warm_pool.IDLE_ENV, raising=False)
    idle_while_queueing = []
    monkeypatch.setattr(reproduce, "launch", lambda *a, **k: idle_while_queueing.append(
        os.environ.get(warm_pool.IDLE_ENV)) or [])
    output = tmp_path / "reports"
    result = cli_in_process("reproduce", "--scale", "tiny", "--background", "--output",
                            str(output))
    assert result.returncode == 0, result.stderr
    assert idle_while_queueing == ["0"] and warm_pool.IDLE_ENV not in os.environ
    assert not output.exists()  # the report is written by the command that trains


@pytest.mark.parametrize("flags", [["--quick", "--scale", "full"], ["--scale", "tiny", "--quick"]])
def test_reproduce_refuses_quick_with_scale(flags, store, no_training):
    """--quick --scale full silently ran the full scale (both set one value; the last won)."""
    result = cli_in_process("reproduce", *flags, "--quiet")
    scale = flags[flags.index("--scale") + 1]
    assert_refused_before_anything(result, store, f"--quick is not allowed with --scale "
                                                  f"(--quick is --scale quick), but got "
                                                  f"--quick --scale {scale}")


def test_sweep_names_the_method_flag(store, no_training):
    result = cli_in_process("sweep", "--problem", "least_squares", "--method", "sgd", "--quiet")
    assert_refused_before_anything(result, store, "--method should be divebatch in a sweep (the "
                                                  "SGD baseline is added for you), but got "
                                                  "--method=sgd")


@pytest.mark.parametrize("command", [["reproduce", "--scale", "tiny"],
                                     ["sweep", "--problem", "least_squares"]])
def test_ray_backend_without_ray_is_refused_before_any_progress_bar(command, store,
                                                                    no_training, monkeypatch):
    """It printed `0%| | 0/21` before the error, whose `pip install .[ray]` needs a clone."""
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if not installed
    result = cli_in_process(*command, "--backend", "ray")
    assert_refused_before_anything(result, store, 'the Ray backend needs Ray: pip install '
                                                  '"divebatch[ray]"')


def test_sweep_note_counts_in_the_singular(store, monkeypatch):
    """It said "1 cells x 1 seeds + 1 baseline runs"."""
    from divebatch.experiments import sweeps
    monkeypatch.setattr(sweeps, "launch", lambda *args, **kwargs: [])
    result = cli_in_process("sweep", "--problem", "least_squares", "--background")
    assert result.returncode == 0, result.stderr
    assert ": 1 cell x 1 seed + 1 baseline run\n" in result.stderr


def test_sweep_at_a_batch_above_the_default_b_max_takes_its_grid(store, monkeypatch):
    """--batch-size 2048 --max-batch-size 4096 was refused: the sweep's shared settings were
    checked against the default B_max (1024), not the grid's."""
    from divebatch.experiments import sweeps
    launched = []
    monkeypatch.setattr(sweeps, "launch", lambda store, spec, **kw: launched.append(spec) or [])
    flags = ["sweep", "--problem", "least_squares", "--batch-size", "2048", "--background"]
    result = cli_in_process(*flags, "--max-batch-size", "4096")
    assert result.returncode == 0, result.stderr
    baseline = launched[0].baseline_config(0)
    assert (baseline.method, baseline.batch_size, baseline.max_batch_size) == ("sgd", 2048, 2048)
    assert [p.config.max_batch_size for p in launched[0].plan()[1:]] == [4096]
    assert_refused_before_anything(cli_in_process(*flags, "--max-batch-size", "4096", "1024"),
                                   store, "--max-batch-size should be an int >= --batch-size "
                                          "(2048), but got --max-batch-size=1024")
