import math
import time

import pytest
import torch

from divebatch.config import RunConfig
from divebatch.training.probe import DiversityProbe
from divebatch.training.controls import LocalControl, RunControls
from divebatch.training.instruments import ChartInstruments
from divebatch.training.trainer import Trainer, train
from tests.helpers.records import comparable

TINY = dict(problem="least_squares", n_samples=600, dim=10, epochs=4, batch_size=16,
            max_batch_size=256, lr=0.05)


def test_records_are_cumulative_and_consistent():
    result = train(RunConfig(**TINY, method="sgd"))
    assert result.status == "completed" and result.n_train == 480
    steps = samples = 0
    for epoch, record in enumerate(result.records, start=1):
        steps += math.ceil(480 / 16)
        samples += 480
        assert (record.epoch, record.step, record.samples_seen) == (epoch, steps, samples)
        assert record.batch_size == 16 and record.val_acc is None
        assert record.train_time > 0 and record.wall_time >= record.train_time


def test_deterministic_for_a_fixed_seed():
    first = train(RunConfig(**TINY, method="divebatch", seed=3))
    second = train(RunConfig(**TINY, method="divebatch", seed=3))
    other = train(RunConfig(**TINY, method="divebatch", seed=4))
    assert comparable(first.records) == comparable(second.records)
    assert comparable(first.records) != comparable(other.records)


def test_divebatch_grows_the_batch_from_measured_diversity():
    result = train(RunConfig(**TINY, method="divebatch", delta=1.0))
    records = result.records
    assert all(r.diversity is not None and r.diversity > 0 for r in records)
    for before, after in zip(records, records[1:]):
        assert after.batch_size == before.next_batch_size >= before.batch_size
        expected = int(min(max(1.0 * 480 * before.diversity, before.batch_size), 256))
        assert before.next_batch_size == expected
    assert records[-1].batch_size > 16


def test_measured_epochs_record_the_meters_time_within_their_training_time():
    records = train(RunConfig(**TINY, method="divebatch", resize_every=2)).records
    measured = [r for r in records if r.diversity is not None]
    assert [r.epoch for r in measured] == [2, 4]
    assert all(0 < r.measure_time <= r.train_time for r in measured)
    assert all(r.measure_time == 0.0 for r in records if r.diversity is None)
    assert all(r.measure_time == 0.0 for r in train(RunConfig(**TINY, method="sgd")).records)


def test_the_meters_hooks_leave_the_model_with_each_training_pass(monkeypatch):
    """The meter's hooks stay between measured batches, not beyond the pass: evaluation and
    the epochs that measure nothing run the model bare. (A plain Sequential's measured batches
    replace its forward instead, only while they run: divebatch.meter.sequential.)"""
    trainer = Trainer(RunConfig(**TINY, method="divebatch", resize_every=2))
    calls = []  # (method, whether it measures, whether the model had hooks when it began)

    def watch(method, measures):
        def watched(*args):
            hooked = (any(m._forward_hooks for m in trainer.model.modules())
                      or "forward" in trainer.model.__dict__
                      or trainer.meter is not None and trainer.meter._hooks is not None)
            calls.append((method.__name__, measures(args), hooked))
            return method(*args)
        monkeypatch.setattr(trainer, method.__name__, watched)
    watch(trainer._train_step, lambda args: args[-1])
    watch(trainer.evaluate, lambda args: False)
    trainer.run()
    bare = {(name, hooked) for name, measures, hooked in calls if not measures}
    assert bare == {("_train_step", False), ("evaluate", False)}
    assert any(hooked for _, measures, hooked in calls if measures)


def test_linear_lr_scaling_follows_the_batch():
    result = train(RunConfig(**TINY, method="adabatch", resize_every=1, lr_scaling="linear"))
    for before, after in zip(result.records, result.records[1:]):
        ratio = after.batch_size / before.batch_size
        assert after.lr == pytest.approx(before.lr * ratio)


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_base_schedule_per_epoch(schedule):
    result = train(RunConfig(**{**TINY, "epochs": 8}, method="sgd", schedule=schedule))
    lrs = [r.lr for r in result.records]
    if schedule == "cosine":
        expected = [0.05 * 0.5 * (1 + math.cos(math.pi * e / 8)) for e in range(8)]
    else:
        expected = [0.05] * 4 + [0.005] * 2 + [0.0005] * 2
    assert lrs == pytest.approx(expected)


def test_chart_probe_changes_no_training_and_is_recorded_apart():
    """The chart-only diversity (divebatch.training.probe) leaves weights, losses and the random
    streams untouched; SGD never measures while training."""
    config = RunConfig(problem="digits", model="cnn", n_samples=160, epochs=2, batch_size=32,
                       method="sgd", lr=0.05)
    off = Trainer(config.replace(diversity_every_epoch=False))
    on = Trainer(config.replace(diversity_every_epoch=True))
    off_records, on_records = off.run().records, on.run().records
    assert [r.train_loss for r in off_records] == [r.train_loss for r in on_records]
    assert [r.val_loss for r in off_records] == [r.val_loss for r in on_records]
    for name, value in off.model.state_dict().items():
        assert torch.equal(value, on.model.state_dict()[name]), name
    assert all(r.diversity is None for r in off_records + on_records)
    assert all(r.probe_diversity is None and r.instrument_time == 0.0 for r in off_records)
    assert all(r.probe_diversity > 0 and r.instrument_time > 0 for r in on_records)


def test_the_starting_point_is_measured_before_training_and_changes_nothing():
    """Epoch 0 for the charts: a fresh model's validation loss and accuracy (reported first),
    then its probe diversity, both before epoch 1; none without the probe."""
    config = RunConfig(problem="digits", model="cnn", n_samples=160, epochs=1, batch_size=32,
                       max_batch_size=64, method="divebatch", lr=0.05)
    fresh = Trainer(config)
    expected_val = fresh.evaluate()
    expected_diversity = fresh.instruments.probe.measure(64)
    seen = []
    trainer = Trainer(config, on_start=lambda facts: seen.append(("start", facts)),
                      on_epoch=lambda record: seen.append(("epoch", record.epoch)))
    result = trainer.run()
    first, second = (facts["initial"] for kind, facts in seen[1:3])
    assert [kind for kind, _ in seen] == ["start", "start", "start", "epoch"]
    assert (first["epoch"], first["step"], first["samples_seen"]) == (0, 0, 0)
    assert (first["batch_size"], first["lr"], first["delta"]) == (32, 0.05, config.delta)
    assert (first["val_loss"], first["val_acc"]) == pytest.approx(expected_val)
    assert first["probe_diversity"] is None
    assert second["probe_diversity"] == pytest.approx(expected_diversity, rel=1e-6)
    assert result.initial == second and second["instrument_time"] > 0
    off = Trainer(config.replace(diversity_every_epoch=False)).run()
    assert off.initial is None
    assert [r.train_loss for r in off.records] == [r.train_loss for r in result.records]


def test_probe_time_is_kept_out_of_train_time(monkeypatch):
    def slow_probe(self, max_chunk):
        time.sleep(0.5)
        return 1.0
    monkeypatch.setattr(DiversityProbe, "measure", slow_probe)
    records = train(RunConfig(**{**TINY, "epochs": 2}, method="sgd")).records
    assert all(r.instrument_time >= 0.5 > r.train_time for r in records)
    assert records[-1].wall_time >= sum(r.instrument_time + r.train_time for r in records)


@pytest.mark.parametrize("cap,expected", [(0, 64), (16, 16)])
def test_probe_passes_are_as_large_as_the_runs_largest_batch(monkeypatch, cap, expected):
    sizes = []
    monkeypatch.setattr(DiversityProbe, "measure", lambda self, max_chunk: sizes.append(
        max_chunk) or 1.0)
    train(RunConfig(**{**TINY, "epochs": 1, "batch_size": 8, "max_batch_size": 64},
                    method="sgd", max_micro_batch=cap))
    assert sizes == [expected, expected]  # the starting point, then epoch 1


def test_probe_matches_diversity_of_its_samples():
    """probe_diversity * n / m equals Delta over the m probe samples at fixed weights."""
    trainer = Trainer(RunConfig(**{**TINY, "epochs": 1}, method="sgd"))
    probe = trainer.instruments.probe
    value = probe.measure()
    x = trainer.problem.x_train[probe.indices].double()
    y = trainer.problem.y_train[probe.indices].double()
    weight = trainer.model[1].weight.detach().double()
    bias = trainer.model[1].bias.detach().double()
    residual = (x @ weight.T).squeeze(-1) + bias - y  # (m,)
    grads = torch.cat([residual[:, None] * x, residual[:, None]], dim=1)  # (m, d + 1)
    expected = float(grads.square().sum() / grads.sum(0).square().sum())
    m, n = len(probe.indices), trainer.problem.n_train
    assert value * n / m == pytest.approx(expected, rel=1e-4)


def test_divergence_ends_the_run_and_keeps_records():
    result = train(RunConfig(**{**TINY, "lr": 50.0}, method="sgd", momentum=0.9))
    assert result.status == "diverged"
    assert "lr" in result.message and result.records
    assert not math.isfinite(result.records[-1].train_loss)
    assert result.events[-1]["kind"] == "diverged"


def test_stop_between_epochs():
    control = LocalControl()
    seen = []

    def on_epoch(record):
        seen.append(record.epoch)
        if record.epoch == 2:
            control.stop()

    result = train(RunConfig(**TINY), on_epoch=on_epoch, control=control)
    assert result.status == "stopped" and seen == [1, 2] and len(result.records) == 2


def test_stop_mid_epoch_discards_the_partial_epoch():
    control = LocalControl()
    control.stop()
    result = train(RunConfig(**TINY, progress_every=0.1), control=control,
                   on_progress=lambda p: None)
    assert result.status == "stopped"
    assert len(result.records) <= 1


def test_hot_changes_apply_between_epochs_and_bad_ones_are_rejected():
    control = LocalControl()

    def on_epoch(record):
        if record.epoch == 1:
            control.set(delta=0.5, lr_multiplier=0.5)
        if record.epoch == 2:
            control.set(max_batch_size=2)  # below the initial batch size: rejected

    result = train(RunConfig(**TINY, method="divebatch", delta=0.1), on_epoch=on_epoch,
                   control=control)
    first, second = result.records[:2]
    assert first.delta == 0.1 and second.delta == 0.5 and second.lr_multiplier == 0.5
    assert second.lr == pytest.approx(first.lr * 0.5)
    kinds = [e["kind"] for e in result.events]
    assert "hot_change" in kinds and "rejected" in kinds


def test_a_field_that_is_not_hot_is_rejected_in_the_words_of_the_one_check():
    control = LocalControl()
    control.set(epochs=9, delta=0.5)
    result = train(RunConfig(**{**TINY, "epochs": 1}, method="divebatch"), control=control)
    rejected = [e for e in result.events if e["kind"] == "rejected"]
    assert [e["message"] for e in rejected] == [
        "hot parameters are delta, max_batch_size, resize_every, lr_multiplier, but got epochs"]
    assert result.records[0].delta == 0.1 and len(result.records) == 1


def test_the_trainer_uses_the_controls_and_instruments_it_is_handed():
    controls, instruments = RunControls(wait_poll_s=0.01), ChartInstruments()
    control = LocalControl()
    trainer = Trainer(RunConfig(**TINY), control=control, controls=controls,
                      instruments=instruments)
    assert trainer.controls is controls and trainer.instruments is instruments
    assert instruments.probe is not None  # attached to this trainer's model
    control.stop()
    result = trainer.run()
    assert controls.stop_requested and result.status == "stopped"
    assert result.initial is instruments.initial and result.initial["epoch"] == 0


def test_classroom_pace_waits_between_epochs_and_changes_no_result():
    config = RunConfig(**{**TINY, "epochs": 3}, method="divebatch")
    plain = train(config)
    paced = train(config.replace(pace_s=0.4))
    assert comparable(paced.records) == comparable(plain.records)
    assert paced.records[-1].wall_time >= 0.8  # two waits: none after the last epoch
    assert sum(r.train_time for r in paced.records) < 0.4  # the waits are not training


def test_pace_changes_while_running_and_a_bad_pace_is_rejected():
    control = LocalControl()
    control.pace(-1.0)
    control.pace(0.3)
    result = train(RunConfig(**{**TINY, "epochs": 2}), control=control)
    assert result.records[-1].wall_time >= 0.3
    assert [e["kind"] for e in result.events][:2] == ["rejected", "pace"]


def test_pause_step_and_resume_between_epochs():
    control = LocalControl()
    pauses = []

    def on_event(event):
        if event["kind"] == "paused":
            pauses.append(event["epoch"])
            control.step() if len(pauses) == 1 else control.resume()

    control.pause()  # taken during or at the end of epoch 1
    result = train(RunConfig(**TINY), control=control, on_event=on_event)
    assert result.status == "completed" and len(result.records) == 4
    assert pauses == [1, 2]  # step ran exactly one epoch, then paused again
    assert [(e["kind"], e["epoch"]) for e in result.events
            if e["kind"] in ("paused", "resumed")] == [
        ("paused", 1), ("resumed", 1), ("paused", 2), ("resumed", 2)]
    assert comparable(result.records) == comparable(train(RunConfig(**TINY)).records)


def test_stop_while_paused():
    control = LocalControl()

    def on_event(event):
        if event["kind"] == "paused":
            control.stop()

    control.pause()
    result = train(RunConfig(**TINY), control=control, on_event=on_event)
    assert result.status == "stopped" and len(result.records) == 1


def test_train_time_excludes_evaluation(monkeypatch):
    original = Trainer.evaluate

    def slow_evaluate(self):
        time.sleep(0.2)
        return original(self)

    monkeypatch.setattr(Trainer, "evaluate", slow_evaluate)
    result = train(RunConfig(**{**TINY, "epochs": 3}, method="sgd"))
    assert sum(r.train_time for r in result.records) < result.records[-1].wall_time - 0.5


def test_invalid_config_raises_before_training():
    with pytest.raises(ValueError, match="epochs should be"):
        train(RunConfig(epochs=0))


@pytest.mark.parametrize("problem", ["logistic", "sine", "classification"])
def test_each_synthetic_problem_learns(problem):
    result = train(RunConfig(problem=problem, n_samples=1000, dim=8, epochs=6, batch_size=32,
                             lr=0.05, method="divebatch"))
    first, last = result.records[0], result.records[-1]
    assert result.status == "completed"
    assert last.val_loss < first.val_loss or (last.val_acc or 0) > 0.7


def test_digits_cnn_reaches_95_percent_within_30_epochs():
    result = train(RunConfig(problem="digits", model="cnn", method="divebatch", epochs=30,
                             batch_size=32, max_batch_size=512, lr=0.05, seed=0,
                             diversity_every_epoch=False))  # no chart probe: faster
    best = max(r.val_acc for r in result.records)
    assert best >= 0.95, [round(r.val_acc, 3) for r in result.records]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_channels_last_run_learns():
    result = train(RunConfig(problem="digits", model="cnn", epochs=3, device="cuda",
                             amp=True, channels_last=True, lr=0.05))
    assert result.status == "completed" and result.records[-1].val_acc > 0.5


def test_cpu_ignores_the_cuda_only_options():
    trainer = Trainer(RunConfig(problem="digits", model="cnn", epochs=1, amp=True,
                                channels_last=True, device="cpu"))
    assert trainer._memory_format() == __import__("torch").contiguous_format
    x = trainer.problem.x_train[:4]
    assert trainer.outputs(trainer.model, x).dtype == __import__("torch").float32
