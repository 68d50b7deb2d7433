"""`python -m divebatch critical-batch`: measure in the foreground, in a background worker,
show, stop, resume; bad input exits 2 with one line naming the flag."""

import time

import pytest

from tests.helpers.cli import cli_in_process, run_cli
from divebatch.config import RunConfig
from divebatch.runs import worker
from divebatch.runs.measurements import Measurements

SMALL = RunConfig(problem="least_squares", n_samples=600, dim=8, method="sgd", epochs=2,
                  batch_size=8, max_batch_size=64, lr=0.05, momentum=0.0, keep_checkpoints=2,
                  diversity_every_epoch=False, device="cpu")


@pytest.fixture
def finished_run(store):
    run_id = store.create_run(SMALL.to_dict(), status="queued")
    worker.execute_run(store, run_id)
    return run_id


def test_foreground_measurement_prints_its_id_and_the_table(store, finished_run):
    result = cli_in_process("critical-batch", str(finished_run), "--batch-sizes", "8,32",
                            "--budget-epochs", "0.5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    measurement_id = int(lines[0])
    assert Measurements(store).get(measurement_id)["status"] == "completed"
    assert "B_simple" in result.stdout and "steps S(B)" in result.stdout
    shown = cli_in_process("critical-batch", str(finished_run), "--show")
    assert shown.returncode == 0 and shown.stdout.strip() == "\n".join(lines[1:]).strip()


@pytest.mark.parametrize("args, message", [
    (["--batch-sizes", "8,128"], "error: --batch-sizes should be ints >= 1 and <= 64 (B_max of "
                                 "the run), but got --batch-sizes=128"),
    (["--at-epochs", "5"], "error: --at-epochs should be among the kept checkpoints 0, 1, but "
                           "got --at-epochs=5"),
    (["--lr-rule", "best"], "argument --lr-rule: invalid choice"),
    (["--repeats", "0"], "error: --repeats should be an int >= 1, but got --repeats=0"),
    (["--show"], "has no critical-batch measurement"),
])
def test_bad_input_exits_2_with_one_line(finished_run, args, message):
    result = cli_in_process("critical-batch", str(finished_run), *args)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_measure_worker_of_no_stored_measurement_exits_2_with_one_line():
    result = cli_in_process("measure-worker", "9999")
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr == ("error: measurement_id should be the id of a stored measurement, "
                             "but got measurement_id=9999\n")


def test_a_run_still_going_or_without_checkpoints_is_refused(store):
    going = store.create_run(SMALL.to_dict(), status="running")
    result = cli_in_process("critical-batch", str(going))
    assert result.returncode == 2
    assert "RUN_ID: run" in result.stderr and "still running" in result.stderr
    bare = store.create_run(SMALL.replace(keep_checkpoints=0).to_dict(), status="queued")
    worker.execute_run(store, bare)
    result = cli_in_process("critical-batch", str(bare))
    assert result.returncode == 2 and "--at-epochs: the run kept no checkpoint" in result.stderr


def test_background_measurement_runs_in_its_own_worker(store, finished_run):
    result = run_cli("critical-batch", str(finished_run), "--batch-sizes", "8,16",
                     "--budget-epochs", "0.5", "--background")
    assert result.returncode == 0, result.stderr
    measurement_id = int(result.stdout.strip())
    measurements, deadline = Measurements(store), time.monotonic() + 120
    while measurements.get(measurement_id)["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the background measurement did not end"
        time.sleep(0.2)
    assert measurements.get(measurement_id)["status"] == "completed"
    assert measurements.get(measurement_id)["worker_pid"] not in (None, 0)
    assert len(measurements.rows(measurement_id)) == 2 * 3  # 2 epochs x (start + 2 sizes)


def test_ctrl_c_of_a_foreground_measurement_is_stored_as_stopped_by_the_user(
        store, finished_run, monkeypatch):
    """It was stored as "the worker process ended unexpectedly" once reaped."""
    from divebatch.experiments import critical_jobs

    def ctrl_c(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(critical_jobs, "_measure", ctrl_c)
    result = cli_in_process("critical-batch", str(finished_run), "--batch-sizes", "8,32")
    assert result.returncode == 130 and result.stderr.endswith("interrupted\n")
    critical_jobs.reap(store)
    measurement = Measurements(store).of_run(finished_run, critical_jobs.KIND)[0]
    assert (measurement["status"], measurement["error"]) == (
        "stopped", "stopped by the user (Ctrl-C); rows so far are kept")
