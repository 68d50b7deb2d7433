import math

import pytest

from divebatch import analysis


def recs(accs, times, losses=None):
    return [{"epoch": i + 1, "train_time": t, "val_acc": a,
             "val_loss": None if losses is None else losses[i], "samples_seen": 100 * (i + 1),
             "next_batch_size": 32}
            for i, (a, t) in enumerate(zip(accs, times))]


def test_time_to_own_final_is_first_epoch_within_one_point():
    records = recs([0.50, 0.93, 0.92, 0.94], [1.0, 2.0, 3.0, 4.0])
    # final 0.94 -> target 0.93: epoch 2 reaches it, after 1 + 2 = 3 s of training
    assert analysis.time_to_own_final(records) == (2, 3.0)


def test_unreached_target_and_empty_records():
    assert analysis.time_to_value(recs([0.1, 0.2], [1, 1]), 0.9) == (None, None)
    assert analysis.time_to_own_final([]) == (None, None)


def test_regression_uses_validation_loss_with_tolerance():
    records = recs([None] * 3, [1.0, 1.0, 1.0], losses=[1.0, 0.104, 0.1])
    # target 0.1 * 1.05 = 0.105: epoch 2
    assert analysis.time_to_own_final(records) == (2, 2.0)


def test_nan_accuracy_is_ignored():
    records = recs([0.5, math.nan, 0.8], [1, 1, 1])
    assert analysis.final_value(records) == 0.8
    assert analysis.time_to_own_final(records) == (3, 3.0)


def test_compare_speedup_and_common_target_by_hand():
    sgd = {"id": 1, "config": {"method": "sgd", "batch_size": 32}}
    dive = {"id": 2, "config": {"method": "divebatch", "delta": 0.1}}
    records = {1: recs([0.5, 0.8, 0.95, 0.96], [2, 2, 2, 2]),
               2: recs([0.6, 0.93, 0.94], [1, 1, 1])}
    rows, common = analysis.compare([sgd, dive], records)
    # own targets: 0.95 and 0.93; common = 0.93
    assert common == pytest.approx(0.93)
    assert rows[0]["time_to_target"] == 6 and rows[1]["time_to_target"] == 2
    assert rows[1]["speedup"] == pytest.approx(3.0)
    assert rows[0]["time_to_common"] == 6 and rows[1]["time_to_common"] == 2
    assert rows[0]["method"] == "SGD B=32" and rows[1]["method"] == "DiveBatch (delta=0.1)"
    assert rows[1]["train_time"] == 3 and rows[1]["samples_seen"] == 300


def test_measurement_cost_compares_like_with_like():
    records = [{"epoch": 1, "batch_size": 32, "diversity": 0.1, "step_ms": 3.0},
               {"epoch": 2, "batch_size": 32, "diversity": None, "step_ms": 2.0},
               {"epoch": 3, "batch_size": 64, "diversity": 0.2, "step_ms": 9.0},
               {"epoch": 4, "batch_size": 32, "diversity": 0.1, "step_ms": 5.0}]
    # only B=32 occurs both ways: measured (3 + 5) / 2, plain 2
    assert analysis.measurement_cost(records) == (4.0, 2.0)
    every_epoch = [r for r in records if r["diversity"] is not None]
    assert analysis.measurement_cost(every_epoch) == (pytest.approx(17 / 3), None)
    assert analysis.measurement_cost([]) == (None, None)
