"""Several runs in one process, an epoch each in turn (divebatch.training.interleave)."""

import pytest

from divebatch.config import RunConfig
from divebatch.training.controls import LocalControl
from divebatch.training.interleave import interleave
from divebatch.training.trainer import Trainer, train
from tests.helpers.records import comparable

TINY = RunConfig(problem="least_squares", n_samples=64, dim=4, epochs=3, batch_size=4,
                 max_batch_size=32, lr=0.05, seed=5, progress_every=60.0)
METHODS = ("divebatch", "sgd", "adabatch")


def trainer(method: str, order: list, control=None, **changes) -> Trainer:
    """A tiny run that appends (method, epoch) to `order` as each epoch ends."""
    return Trainer(TINY.replace(method=method, **changes), control=control,
                   on_epoch=lambda record: order.append((method, record.epoch)))


def test_runs_take_turns_an_epoch_each_and_end_in_order():
    order, ended = [], []
    outcomes = interleave([trainer(method, order) for method in METHODS],
                          on_end=lambda index, outcome: ended.append(index))
    assert order == [(method, epoch) for epoch in (1, 2, 3) for method in METHODS]
    assert [outcome.status for outcome in outcomes] == ["completed"] * 3
    assert ended == [0, 1, 2]


def test_each_interleaved_run_equals_the_same_run_trained_alone():
    outcomes = interleave([trainer(method, []) for method in METHODS])
    for method, outcome in zip(METHODS, outcomes):
        alone = train(TINY.replace(method=method))
        assert comparable(outcome.records) == comparable(alone.records)
    assert all(record.train_time > 0 for outcome in outcomes for record in outcome.records)


def test_a_stopped_run_leaves_the_rotation_and_the_others_go_on():
    order, control = [], LocalControl()

    def stop_after_epoch_1(record):
        order.append(("sgd", record.epoch))
        control.stop()
    stopped = Trainer(TINY.replace(method="sgd"), control=control, on_epoch=stop_after_epoch_1)
    outcomes = interleave([stopped, trainer("divebatch", order)])
    assert outcomes[0].status == "stopped" and len(outcomes[0].records) == 1
    assert outcomes[1].status == "completed" and len(outcomes[1].records) == 3
    assert order == [("sgd", 1), ("divebatch", 1), ("divebatch", 2), ("divebatch", 3)]


def test_a_paused_run_does_not_hold_up_the_others():
    order, control = [], LocalControl()
    control.pause()  # read in its first epoch: it pauses after it, until resumed

    def resume_when_the_other_ends(index, outcome):
        if index == 1:
            control.resume()
    outcomes = interleave([trainer("sgd", order, control), trainer("divebatch", order)],
                          on_end=resume_when_the_other_ends)
    assert order == [("sgd", 1), ("divebatch", 1), ("divebatch", 2), ("divebatch", 3),
                     ("sgd", 2), ("sgd", 3)]
    assert [outcome.status for outcome in outcomes] == ["completed", "completed"]
    assert [e["kind"] for e in outcomes[0].events] == ["paused", "resumed"]
    assert comparable(outcomes[0].records) == comparable(train(TINY.replace(method="sgd")).records)


def test_a_paced_run_lets_the_others_train_while_it_waits():
    order, control = [], LocalControl()

    def release_when_the_other_ends(index, outcome):
        if index == 1:
            control.pace(0.0)
    held = trainer("sgd", order, control, pace_s=3600.0)  # waits after each epoch until then
    outcomes = interleave([held, trainer("divebatch", order)],
                          on_end=release_when_the_other_ends)
    assert order == [("sgd", 1), ("divebatch", 1), ("divebatch", 2), ("divebatch", 3),
                     ("sgd", 2), ("sgd", 3)]
    assert [outcome.status for outcome in outcomes] == ["completed", "completed"]
    assert [e["kind"] for e in outcomes[0].events] == ["pace"]
    assert comparable(outcomes[0].records) == comparable(train(TINY.replace(method="sgd")).records)


def test_a_failing_run_ends_alone_with_its_error():
    order = []

    def fail_in_epoch_2(record):
        if record.epoch == 2:
            raise RuntimeError("disk full")
    failing = Trainer(TINY.replace(method="sgd"), on_epoch=fail_in_epoch_2)
    outcomes = interleave([failing, trainer("divebatch", order)])
    assert isinstance(outcomes[0], RuntimeError) and str(outcomes[0]) == "disk full"
    assert outcomes[1].status == "completed" and order[-1] == ("divebatch", 3)


def test_an_error_in_on_end_closes_the_runs_still_going():
    going, closed = trainer("divebatch", [], epochs=5), []
    going.dist.close = lambda: closed.append(True)  # called once as the run ends

    def fail(index, outcome):
        raise KeyError("on_end")
    with pytest.raises(KeyError):
        interleave([trainer("sgd", [], epochs=1), going], on_end=fail)
    assert going.result is None and closed == [True]
