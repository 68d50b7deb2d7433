"""The guided tour's race and critical-batch steps, from runs, records and measurement rows
written out by hand."""

from divebatch.experiments.critical_batch import START, summarize
from divebatch.report.tour_sequel import Sequel, sequel_action, sequel_ended, sequel_steps

CONFIG = {"problem": "least_squares", "batch_size": 8, "max_batch_size": 64, "delta": 0.1}
VARIANTS = {1: dict(method="divebatch"), 2: dict(method="sgd"),
            3: dict(method="sgd", batch_size=64), 4: dict(method="adabatch")}
# validation loss per epoch and training seconds per epoch: the common target is the highest
# best plus 5 % (0.3 * 1.05 = 0.315); SGD at B0 reaches it at epoch 1 (0.5 s), the others at
# epoch 2: DiveBatch in 2 x 0.4 s, SGD at B_max in 0.6 s, AdaBatch in 0.6 s
LOSSES = {1: (0.5, 0.2), 2: (0.3, 0.25), 3: (0.4, 0.3), 4: (0.6, 0.22)}
SECONDS = {1: 0.4, 2: 0.5, 3: 0.3, 4: 0.3}


def race(status="completed"):
    return [{"id": i, "name": "", "status": status, "info": {"n_train": 100},
             "config": {**CONFIG, **VARIANTS[i]}} for i in VARIANTS]


def records():
    return {i: [{"epoch": e + 1, "train_time": SECONDS[i], "val_loss": loss, "step": 10 * e,
                 "samples_seen": 100 * (e + 1), "batch_size": 8}
                for e, loss in enumerate(LOSSES[i])] for i in VARIANTS}


def summaries():
    """Epoch 0: the steps do not fall with B (B_crit < 8), B_simple 98; epoch 1: no batch
    lowered the loss (no target)."""
    rows = [{"epoch": 0, "batch_size": START, "data": {"loss": 1.0, "target": 0.5,
                                                       "noise_scale": 98.0}},
            {"epoch": 1, "batch_size": START, "data": {"loss": 0.1, "target": None,
                                                       "noise_scale": 4500.0}}]
    rows += [{"epoch": 0, "batch_size": b, "data": {"batch_size": b, "steps_to_target": 20.0}}
             for b in (8, 16, 32, 64)]
    return summarize(rows)


def test_the_race_starts_once_the_run_ended_then_the_measurement_once_the_race_ended():
    assert sequel_action(False, Sequel()) is None  # the run still trains
    assert sequel_action(True, Sequel()) == "race"
    running = Sequel(race("running"), records())
    assert sequel_action(True, running) is None and not sequel_ended(running)
    ended = Sequel(race(), records())
    assert sequel_action(True, ended) == "measure" and not sequel_ended(ended)
    measuring = Sequel(race(), records(), {"id": 7, "status": "running"})
    assert sequel_action(True, measuring) is None and not sequel_ended(measuring)
    done = Sequel(race(), records(), {"id": 7, "status": "completed"}, summaries())
    assert sequel_action(True, done) is None and sequel_ended(done)


def test_a_race_whose_divebatch_run_failed_ends_the_tour_without_a_measurement():
    failed = [dict(run, status="failed") if run["id"] == 1 else run for run in race()]
    sequel = Sequel(failed, records())
    assert sequel_action(True, sequel) is None and sequel_ended(sequel)
    assert [step.key for step in sequel_steps(sequel)] == ["race"]


def test_the_race_step_comes_with_the_race_end_and_says_who_got_there_first():
    assert sequel_steps(Sequel(race("running"), records())) == []
    [step] = sequel_steps(Sequel(race(), records()))
    assert (step.key, step.element, step.epoch) == ("race", "verdict", 2)
    assert step.text == (
        "The same setup and seed raced SGD at B0 = 8, SGD at B_max = 64 and AdaBatch to a "
        "validation loss of 0.315. #2 SGD B=8 was first, in 0.50 s of training; "
        "DiveBatch took 0.80 s (1.6x as long).")


def test_the_critical_step_comes_with_the_measurement_and_reads_it_against_b_simple():
    measured = Sequel(race(), records(), {"id": 7, "status": "completed"}, summaries())
    race_step, critical = sequel_steps(measured)
    assert (critical.key, critical.element) == ("critical", "critical_chart")
    assert critical.text == (
        "Branches at B = 8 to 64 measured where a bigger batch stops cutting the steps: < 8 "
        "at epoch 0; at epoch 1 no batch lowered the loss. B_simple, which DiveBatch follows, "
        "read 98 at epoch 0: far above it.")
    failed = Sequel(race(), records(), {"id": 7, "status": "failed"})
    assert [step.key for step in sequel_steps(failed)] == ["race"] and sequel_ended(failed)


def test_a_race_divebatch_ended_in_its_first_epoch_says_its_time_is_one_epochs_cost():
    """DiveBatch met the target in its first epoch: '2.8x as long' alone read as the method's
    fault, where it was one epoch's cost, measuring diversity included."""
    early = records()
    early[1][0]["val_loss"] = 0.2  # DiveBatch's first epoch meets the target (0.315)
    early[1][0].update(measure_time=0.15, train_time=0.7)
    [step] = sequel_steps(Sequel(race(), early))
    assert step.text.endswith(
        "#2 SGD B=8 was first, in 0.50 s of training; DiveBatch took 0.70 s (1.4x as long). "
        "That was its first epoch (0.15 s measuring diversity): too easy a target to tell the "
        "methods apart.")
    early[1][0]["train_time"] = 0.3  # first, in its first epoch
    [step] = sequel_steps(Sequel(race(), early))
    assert "DiveBatch (delta=0.1) was first, in 0.30 s of training. That was its first " \
        "epoch" in step.text
