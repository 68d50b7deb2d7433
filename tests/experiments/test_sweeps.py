"""Sweeps: grid expansion, aggregation by hand, resuming, and the CLI."""


import pytest

from tests.helpers.cli import cli_in_process
from tests.helpers.interrupts import ctrl_c_in_epoch
from divebatch.runs import groups, worker
from divebatch.experiments import sweeps, verdicts
from divebatch.runs.store import RunStore

TINY_BASE = {"problem": "least_squares", "n_samples": 320, "dim": 8, "epochs": 3,
             "batch_size": 16, **sweeps.SWEEP_DEFAULTS}
TINY_FLAGS = ["--problem", "least_squares", "--n-samples", "320", "--dim", "8", "--epochs",
              "3", "--batch-size", "16", "--quiet"]


def tiny_spec(**grid) -> sweeps.SweepSpec:
    values = {"deltas": (0.1, 1.0), "max_batch_sizes": (64, 256), "resize_everys": (1,),
              "seeds": (0, 1), **grid}
    return sweeps.SweepSpec(base=TINY_BASE, **values)


@pytest.fixture
def store():
    return RunStore(RunStore.default_path())


def test_grid_expands_to_baselines_then_cells_per_seed():
    plan = tiny_spec().plan()
    assert [(p.cell, p.seed) for p in plan] == [
        ("baseline", 0), ("baseline", 1),
        ((0.1, 64, 1), 0), ((0.1, 64, 1), 1), ((0.1, 256, 1), 0), ((0.1, 256, 1), 1),
        ((1.0, 64, 1), 0), ((1.0, 64, 1), 1), ((1.0, 256, 1), 0), ((1.0, 256, 1), 1)]
    baseline, cell = plan[0].config, plan[8].config
    assert (baseline.method, baseline.batch_size, baseline.seed) == ("sgd", 16, 0)
    assert (cell.method, cell.delta, cell.max_batch_size, cell.resize_every, cell.seed) == \
        ("divebatch", 1.0, 256, 1, 0)
    assert cell.n_samples == 320 and cell.diversity_every_epoch is False


def test_same_spec_same_group():
    assert tiny_spec().group == tiny_spec(deltas=(0.1, 1)).group  # 1 and 1.0 are one delta
    assert tiny_spec().group != tiny_spec(seeds=(0,)).group
    assert sweeps.SweepSpec.from_dict(tiny_spec().to_dict()) == tiny_spec()


def test_bad_specs_name_the_field():
    with pytest.raises(ValueError, match="max_batch_size should be an int >= batch_size"):
        tiny_spec(max_batch_sizes=(8,)).validate()
    with pytest.raises(ValueError, match="delta should list at least one value"):
        tiny_spec(deltas=()).validate()
    with pytest.raises(ValueError, match="delta should be a float > 0"):
        tiny_spec(deltas=(-1.0,)).validate()
    with pytest.raises(ValueError, match=r"B_max should be a list of ints.*'x'"):
        sweeps.parse_values("64, x", int, "B_max")
    assert sweeps.parse_values("0.05, 0.1 0.2", float, "delta") == (0.05, 0.1, 0.2)


def store_finished_run(store, group, config, accs, times, status="completed"):
    """A run of `group` with hand-made records: val_acc and train_time per epoch."""
    run_id = store.create_run(config.to_dict(), name=config.name, group=group)
    for epoch, (acc, seconds) in enumerate(zip(accs, times), start=1):
        store.append_record(run_id, {"epoch": epoch, "train_time": seconds, "val_acc": acc,
                                     "val_loss": 1.0 - acc, "samples_seen": 100 * epoch,
                                     "batch_size": 16 * epoch})
    store.mark_finished(run_id, status)
    return run_id


def test_aggregation_matches_hand_computed_speedups_means_and_errors(store):
    spec = tiny_spec(deltas=(0.5,), max_batch_sizes=(64,))
    base0, base1, cell0, cell1 = (p.config for p in spec.plan())
    # own targets (final - 1 point) and training time to them, by hand:
    group = spec.group
    store_finished_run(store, group, base0, [0.50, 0.80, 0.90], [1, 1, 1])      # epoch 3, 3 s
    store_finished_run(store, group, base1, [0.85, 0.90, 0.90], [1, 1, 1])      # epoch 2, 2 s
    store_finished_run(store, group, cell0, [0.70, 0.88, 0.88], [1, 0.5, 0.5])  # epoch 2, 1.5 s
    store_finished_run(store, group, cell1, [0.86, 0.87, 0.87], [0.5, 0.5, 0.5])  # 1, 0.5 s
    result = sweeps.results(store, spec)
    assert result.metric == "accuracy" and result.done
    baseline, cell = result.cells
    assert baseline["speedup"] == 1.0 and baseline["time_to_target"] == 2.5
    # speed-ups per seed: 3 / 1.5 = 2 and 2 / 0.5 = 4 -> mean 3, se = stdev / sqrt(2) = 1
    assert cell["speedup"] == pytest.approx(3.0) and cell["speedup_se"] == pytest.approx(1.0)
    assert cell["final"] == pytest.approx(0.875) and cell["final_se"] == pytest.approx(0.005)
    assert cell["final_change"] == pytest.approx(-0.025)
    assert cell["final_change_se"] == pytest.approx(0.005)
    # examples seen to target: epoch 2 -> 200, epoch 1 -> 100
    assert cell["samples_to_target"] == 150 and cell["samples_to_target_se"] == 50
    assert cell["finished"] == 2 and cell["planned"] == 2 and cell["diverged"] == 0
    assert cell["label"] == "delta=0.5, B_max=64, R=1"
    table = sweeps.cell_table(result)
    assert table[1]["speed-up"] == pytest.approx(3.0) and table[1]["final acc (%)"] == 87.5
    assert verdicts.sweep_verdict(result) == (
        "The fastest cell, delta=0.5, B_max=64, R=1, reached its own target at 3 ± 1x the "
        "speed of SGD B=16 (baseline) and ended 2.5 points lower (mean over 2 seeds).")
    assert cell["flagged"] == 0 and "⚠" not in verdicts.format_speedup(cell)


def test_speedup_from_a_run_that_collapsed_is_flagged(store):
    spec = tiny_spec(deltas=(0.5,), max_batch_sizes=(64,), seeds=(0,))
    base0, cell0 = (p.config for p in spec.plan())
    store_finished_run(store, spec.group, base0, [0.90, 0.60, 0.50], [1, 1, 1])  # -40 points
    store_finished_run(store, spec.group, cell0, [0.70, 0.88, 0.88], [1, 1, 1])
    result = sweeps.results(store, spec)
    cell = result.cells[1]
    assert cell["flagged"] == 1 and result.cells[0]["flagged"] == 1
    assert verdicts.format_speedup(cell) == (
        "0.5x ⚠ 1 of 1 seed: a run ended more than 2 points below its best")
    assert verdicts.sweep_verdict(result) == (
        "⚠ The baseline, SGD B=16, collapsed in 1 of 1 seed (ended more than 2 points below "
        "its best in 1): a speed-up over a collapsed run is not meaningful (it meets its own "
        "low final target early, or never has one). Compare the final accuracies instead. "
        "The fastest cell, delta=0.5, B_max=64, R=1, reached its own target at 0.5x the speed "
        "of SGD B=16 (baseline) and ended 38.0 points higher (mean over 1 seed). ⚠ 1 of its "
        "seeds compare a run that ended more than 2 points below its best: those speed-ups "
        "are not meaningful.")


def test_a_diverged_baseline_opens_the_verdict_and_unfinished_runs_make_it_so_far(store):
    spec = tiny_spec(deltas=(0.5,), max_batch_sizes=(64,))
    base0, base1, cell0, cell1 = (p.config for p in spec.plan())
    store_finished_run(store, spec.group, base0, [0.5, float("nan")], [1, 1],
                       status="diverged")
    store_finished_run(store, spec.group, base1, [0.80, 0.90, 0.90], [1, 1, 1])  # 2 s
    store_finished_run(store, spec.group, cell1, [0.86, 0.87, 0.87], [0.5] * 3)  # 0.5 s
    store.create_run(cell0.to_dict(), group=spec.group, status="running")
    assert verdicts.sweep_verdict(sweeps.results(store, spec)) == (
        "⚠ The baseline, SGD B=16, collapsed in 1 of 2 seeds (diverged in 1): a speed-up over "
        "a collapsed run is not meaningful (it meets its own low final target early, or never "
        "has one). Compare the final accuracies instead. So far (3 of 4 runs finished), the "
        "fastest cell, delta=0.5, B_max=64, R=1, reached its own target at 4x the speed of "
        "SGD B=16 (baseline) and ended 3.0 points lower (mean over 1 seed).")


def test_diverged_and_unfinished_runs_do_not_count_towards_speedups(store):
    spec = tiny_spec(deltas=(0.5,), max_batch_sizes=(64,))
    base0, base1, cell0, cell1 = (p.config for p in spec.plan())
    store_finished_run(store, spec.group, base0, [0.5, 0.9], [1, 1])
    store_finished_run(store, spec.group, cell0, [0.5, float("nan")], [1, 1],
                       status="diverged")
    store.create_run(cell1.to_dict(), group=spec.group, status="running")
    result = sweeps.results(store, spec)
    cell = result.cells[1]
    assert cell["finished"] == 1 and cell["diverged"] == 1 and cell["speedup"] is None
    assert result.progress == {"finished": 2, "running": 1, "queued": 0, "to_do": 1,
                               "total": 4}
    assert not result.done


def test_interrupted_sweep_resumes_without_redoing_finished_cells(store, monkeypatch):
    spec = tiny_spec()
    real_execute, calls = worker.execute_run, []

    def interrupt_fifth(store, run_id, on_epoch=None):
        calls.append(run_id)
        if len(calls) == 5:
            store.mark_running(run_id, 0)
            raise KeyboardInterrupt  # Ctrl-C in the middle of the fifth run
        return real_execute(store, run_id, on_epoch)

    monkeypatch.setattr(worker, "execute_run", interrupt_fifth)
    with pytest.raises(KeyboardInterrupt):
        sweeps.run_here(store, spec)
    runs = store.list_runs(group=spec.group)
    assert sorted(r["status"] for r in runs) == ["completed"] * 4 + ["stopped"]
    finished_ids = {r["id"] for r in runs if r["status"] == "completed"}
    stopped_id = next(r["id"] for r in runs if r["status"] == "stopped")

    assert sweeps.run_here(store, spec) == 6  # the stopped one and the five never started
    runs = store.list_runs(group=spec.group)
    # the stopped run continued in place: no stale partial run is left beside a fresh one
    assert len(runs) == 10 and {r["status"] for r in runs} == {"completed"}
    assert finished_ids | {stopped_id} <= {run["id"] for run in groups.match_runs(
        store, spec.group, spec.plan())}
    assert sweeps.run_here(store, spec) == 0  # nothing left to do
    assert len(store.list_runs(group=spec.group)) == 10


def test_a_sweep_stopped_mid_run_continues_that_run_from_its_checkpoint(store, monkeypatch):
    spec = tiny_spec(deltas=(0.1,), max_batch_sizes=(64,), seeds=(0,))
    real_execute = ctrl_c_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        sweeps.run_here(store, spec)
    monkeypatch.setattr(worker, "execute_run", real_execute)
    stopped = store.list_runs(group=spec.group)
    assert [(r["status"], len(store.records(r["id"]))) for r in stopped] == [("stopped", 2)]
    assert sweeps.run_here(store, spec) == 2
    runs = store.list_runs(group=spec.group)
    assert len(runs) == 2 and {r["status"] for r in runs} == {"completed"}
    assert stopped[0]["id"] in {r["id"] for r in runs}
    assert [r["epoch"] for r in store.records(stopped[0]["id"])] == [1, 2, 3]
    assert "resumed" in [e["kind"] for e in store.events(stopped[0]["id"])]


def test_cli_sweep_two_by_two_with_two_seeds_then_rerun_reuses_everything(store):
    args = ["sweep", *TINY_FLAGS, "--delta", "0.1", "1", "--max-batch-size", "64", "256",
            "--seed", "0", "1"]
    first = cli_in_process(*args)
    assert first.returncode == 0, first.stderr
    *lines, verdict = first.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["cell", "seeds"] and len(lines) == 2 + 5
    assert "SGD B=16 (baseline)" in lines[2] and "delta=1, B_max=256, R=1" in lines[-1]
    assert all(" 2/2 " in line for line in lines[2:])
    assert verdict.startswith("The fastest cell, delta=") and "(mean over 2 seeds)" in verdict
    runs = store.list_runs()
    assert len(runs) == 10 and {r["status"] for r in runs} == {"completed"}
    assert len({r["group"] for r in runs}) == 1 and runs[0]["group"].startswith("sweep:")

    again = cli_in_process(*args)
    assert again.returncode == 0, again.stderr
    assert "reusing 10" in again.stderr and len(store.list_runs()) == 10
    assert again.stdout == first.stdout


def test_cli_sweep_in_the_background_queues_its_runs_and_names_the_group(
        store, no_workers_left_behind, monkeypatch):
    monkeypatch.setenv("DIVEBATCH_MAX_WORKERS", "1")
    result = cli_in_process("sweep", *TINY_FLAGS, "--delta", "0.1", "--max-batch-size",
                            "64", "--background")
    assert result.returncode == 0, result.stderr
    runs = store.list_runs()
    assert len(runs) == 2 and result.stdout.strip() == runs[0]["group"]
    assert {run["status"] for run in runs} <= {"queued", "running", "completed"}
    assert "queued 2 runs; run the same command without --background to see" in result.stderr


def test_cli_sweep_bad_input_is_one_line_exit_2():
    result = cli_in_process("sweep", *TINY_FLAGS, "--max-batch-size", "8")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--max-batch-size should be" in result.stderr
    result = cli_in_process("sweep", *TINY_FLAGS, "--method", "sgd")
    assert result.returncode == 2 and "method should be divebatch" in result.stderr
