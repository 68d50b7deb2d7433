"""The measured critical batch size against the closed form of noisy linear regression, and the
measurement's contract: seeded, the parent run untouched, resumable, one-line errors."""

import hashlib

import numpy as np
import pytest

from divebatch.config import RunConfig
from divebatch.data.problems import load_problem
from divebatch.experiments import critical_jobs
from divebatch.experiments.critical_batch import CriticalBatchSettings, summarize
from divebatch.runs import worker
from divebatch.runs.measurements import Measurements
from divebatch.training import checkpoint

# y = x . w* + 0.5 noise, x ~ N(0, I_16): the Hessian is ~I, so McCandlish's B_noise equals
# B_simple = tr(Sigma) / |G|^2, about d + 1 + d sigma^2 / |w - w*|^2 (~21 at the start).
REGRESSION = RunConfig(problem="least_squares", n_samples=1500, dim=16, noise=0.5, method="sgd",
                       epochs=1, batch_size=4, max_batch_size=256, lr=0.25, momentum=0.0,
                       keep_checkpoints=1, diversity_every_epoch=False, device="cpu")
# McCandlish's protocol (the step size tuned per batch size), a target local to the start
TUNED = CriticalBatchSettings(lr_rule="tuned", budget_epochs=0.1, decrease_fraction=0.5,
                              repeats=4, eval_samples=4096)


def stored_run(store, config: RunConfig) -> int:
    run_id = store.create_run(config.to_dict(), status="queued")
    worker.execute_run(store, run_id)
    assert store.get_run(run_id)["status"] == "completed"
    return run_id


def closed_form_noise_scale(store, run_id: int, config: RunConfig) -> float:
    """tr(Sigma) / |G|^2 of the training set's per-sample gradients at the start, in float64
    numpy: g_i = r_i (x_i, 1) for the loss r_i^2 / 2 of the linear model w . x + b."""
    state = checkpoint.load(checkpoint.kept_path(
        checkpoint.run_checkpoint_path(store.path, run_id), 0))
    weight, bias = (state["model"][k].double().numpy() for k in ("1.weight", "1.bias"))
    problem = load_problem(config, "cpu")
    x, y = problem.x_train.double().numpy(), problem.y_train.double().numpy()
    residual = x @ weight[0] + bias[0] - y                      # (n,)
    grads = np.hstack([x, np.ones((len(x), 1))]) * residual[:, None]  # (n, d + 1)
    mean = grads.mean(axis=0)
    return float(((grads ** 2).sum(axis=1).mean() - mean @ mean) / (mean @ mean))


def measure(store, run_id: int, settings: CriticalBatchSettings) -> list[dict]:
    measurement_id = critical_jobs.create(store, run_id, settings)
    assert critical_jobs.execute(store, measurement_id) == "completed"
    return Measurements(store).rows(measurement_id)


def test_oracle_noisy_linear_regression(store):
    run_id = stored_run(store, REGRESSION)
    (start,) = summarize(measure(store, run_id, TUNED))
    closed = closed_form_noise_scale(store, run_id, REGRESSION)
    assert start["noise_scale"] == pytest.approx(closed, rel=1e-6)  # the meter's two sums
    assert closed / 2 <= start["critical_batch"] <= 2 * closed, (start["critical_batch"], closed)
    assert start["bound"] == "inside"


def without_timings(rows: list[dict]) -> list[dict]:
    return [{**row, "data": {k: v for k, v in row["data"].items() if k != "seconds"}}
            for row in rows]


def test_measurement_is_seeded_and_leaves_the_parent_untouched(store):
    run_id = stored_run(store, REGRESSION.replace(epochs=2, keep_checkpoints=2))
    path = checkpoint.run_checkpoint_path(store.path, run_id)
    assert checkpoint.kept_epochs(path) == [0, 1] and not path.exists()
    files = {e: hashlib.sha256(checkpoint.kept_path(path, e).read_bytes()).hexdigest()
             for e in (0, 1)}
    before = (store.get_run(run_id), store.records(run_id))
    settings = CriticalBatchSettings(batch_sizes=(4, 16, 64), budget_epochs=0.2)
    first, second = measure(store, run_id, settings), measure(store, run_id, settings)
    assert without_timings(first) == without_timings(second)
    assert {row["epoch"] for row in first} == {0, 1}
    assert (store.get_run(run_id), store.records(run_id)) == before
    assert files == {e: hashlib.sha256(checkpoint.kept_path(path, e).read_bytes()).hexdigest()
                     for e in (0, 1)}


def test_a_stopped_measurement_resumes_where_it_stopped(store, monkeypatch):
    run_id = stored_run(store, REGRESSION)
    settings = CriticalBatchSettings(batch_sizes=(4, 16, 64), budget_epochs=0.2)
    measurements = Measurements(store)
    measurement_id = critical_jobs.create(store, run_id, settings)
    rows_seen = []

    def stop_after_two(progress):  # the stop flag, set as a user would, after two rows
        rows_seen.append(progress)
        if len(rows_seen) == 2:
            critical_jobs.request_stop(store, measurement_id)
    assert critical_jobs.execute(store, measurement_id, on_progress=stop_after_two) == "stopped"
    kept_rows = measurements.rows(measurement_id)
    assert len(kept_rows) == 2
    monkeypatch.setattr(critical_jobs, "_start_worker", lambda store, mid: None)
    critical_jobs.resume(store, measurement_id)
    assert measurements.get(measurement_id)["status"] == "queued"
    assert critical_jobs.execute(store, measurement_id) == "completed"
    rows = measurements.rows(measurement_id)
    assert len(rows) == 4 and rows[:1] == kept_rows[:1]
    assert without_timings(rows) == without_timings(measure(store, run_id, settings))


def test_bad_requests_name_the_field(store):
    run_id = stored_run(store, REGRESSION)
    with pytest.raises(ValueError,
                       match=r"^batch_sizes should be .* <= 256 .*got batch_sizes=512$"):
        critical_jobs.plan(store, run_id, CriticalBatchSettings(batch_sizes=(8, 512)))
    with pytest.raises(ValueError, match=r"^epochs should be among the kept checkpoints 0, "):
        critical_jobs.plan(store, run_id, CriticalBatchSettings(epochs=(3,)))
    none_kept = stored_run(store, REGRESSION.replace(keep_checkpoints=0))
    with pytest.raises(ValueError, match=r"^epochs: the run kept no checkpoint"):
        critical_jobs.plan(store, none_kept, CriticalBatchSettings())
    going = store.create_run(REGRESSION.to_dict(), status="running")
    with pytest.raises(ValueError, match=r"^run_id: run \d+ is still running"):
        critical_jobs.plan(store, going, CriticalBatchSettings())
    with pytest.raises(ValueError, match=r"^run_id should be the id of a stored run"):
        critical_jobs.plan(store, 999, CriticalBatchSettings())


def test_keeping_checkpoints_changes_no_result(store):
    def records(keep):
        run_id = stored_run(store, REGRESSION.replace(epochs=2, keep_checkpoints=keep))
        return [{k: v for k, v in r.items() if k not in ("train_time", "wall_time", "step_ms",
                                                          "instrument_time")}
                for r in store.records(run_id)]
    assert records(0) == records(2)


def test_deleting_a_run_deletes_its_measurements_and_kept_checkpoints(store):
    run_id = stored_run(store, REGRESSION)
    rows = measure(store, run_id, CriticalBatchSettings(batch_sizes=(4, 16), budget_epochs=0.2))
    assert rows
    store.delete_run(run_id)
    worker.remove_run_files(store, [run_id])
    assert Measurements(store).of_run(run_id) == []
    count = "SELECT COUNT(*) FROM measurement_rows"
    assert store.read(lambda db: db.execute(count).fetchone()[0]) == 0
    assert checkpoint.kept_epochs(checkpoint.run_checkpoint_path(store.path, run_id)) == []
