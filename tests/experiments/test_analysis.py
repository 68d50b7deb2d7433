import math

import pytest

from divebatch.experiments import analysis


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
    # the baseline's own target, 0.95: SGD at epoch 3 (6 s); DiveBatch's best is 0.94
    assert rows[1]["base_level"] == pytest.approx(0.95)
    assert (rows[0]["epochs_to_base_level"], rows[0]["time_to_base_level"]) == (3, 6.0)
    assert rows[1]["time_to_base_level"] is None and rows[1]["epochs_to_base_level"] is None
    assert not rows[0]["active"] and not rows[1]["active"]


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


def test_measuring_share_is_meter_seconds_over_training_seconds():
    records = [{"epoch": 1, "train_time": 4.0, "diversity": 0.1, "measure_time": 1.0},
               {"epoch": 2, "train_time": 3.0, "diversity": None, "measure_time": 0.0},
               {"epoch": 3, "train_time": 3.0, "diversity": 0.2, "measure_time": 1.5}]
    assert analysis.measuring_time(records) == 2.5
    assert analysis.measuring_share(records) == pytest.approx(0.25)
    summary = analysis.summarize({"id": 1, "config": {"method": "divebatch"}}, records)
    assert (summary["measure_time"], summary["measure_share"]) == (2.5, pytest.approx(0.25))
    # a measured epoch stored before measure_time existed: the share is unknown, not 0
    legacy = [{k: v for k, v in r.items() if k != "measure_time"} for r in records]
    assert analysis.measuring_share(legacy) is None
    assert analysis.measuring_share([]) is None


def test_common_target_is_lowest_best_minus_one_point():
    records = {1: recs([0.5, 0.9, 0.7], [1, 1, 1]), 2: recs([0.6, 0.95], [1, 1])}
    assert analysis.common_target(records) == pytest.approx(0.89)
    losses = {1: recs([None] * 2, [1, 1], losses=[1.0, 0.2]),
              2: recs([None] * 2, [1, 1], losses=[1.0, 0.4])}
    assert analysis.common_target(losses) == pytest.approx(0.42)


def test_collapsed_run_is_flagged_and_does_not_win_the_own_final_race():
    """The issue's case: SGD at B0 peaks early and collapses; its own-final target (final
    - 1 point) is met in epoch 1, so the paper's metric alone credits the collapse."""
    sgd = {"id": 1, "config": {"method": "sgd", "batch_size": 16}}
    dive = {"id": 2, "config": {"method": "divebatch", "delta": 0.1}}
    records = {1: recs([0.856, 0.70, 0.50, 0.328], [1, 1, 1, 1]),
               2: recs([0.60, 0.85, 0.90, 0.91], [0.5, 0.5, 0.5, 0.5])}
    rows, common = analysis.compare([sgd, dive], records)
    assert rows[0]["drop_points"] == pytest.approx(52.8)
    assert rows[0]["flag"] == ("ended 52.8 points below its best: its own-final target is "
                               "not meaningful")
    assert rows[1]["flag"] == ""
    assert rows[0]["time_to_target"] == 1  # the paper's metric is fooled ...
    assert rows[1]["speedup_own"] == pytest.approx(1 / 1.5)
    assert rows[1]["speedup_own_flag"].startswith("SGD B=16 ended 52.8 points")  # ... flagged
    # common target: min(85.6, 91) - 1 = 84.6 %: SGD in 1 s, DiveBatch in 1 s
    assert common == pytest.approx(0.846)
    assert rows[1]["speedup"] == pytest.approx(1.0)


def test_drop_within_two_points_is_not_flagged():
    records = recs([0.90, 0.93, 0.911], [1, 1, 1])
    assert analysis.drop_points(records) == pytest.approx(1.9)
    assert analysis.flag_note(analysis.drop_points(records)) == ""
    assert analysis.drop_points(recs([None], [1], losses=[0.3])) is None


def test_method_label_names_what_the_run_did():
    dive = {"method": "divebatch", "delta": 0.1, "batch_size": 16}
    assert analysis.method_label(dive) == "DiveBatch (delta=0.1)"
    assert analysis.method_label(dive, (16, 541)) == "DiveBatch (delta=0.1, B 16 -> 541)"
    assert analysis.method_label(dive, (16, 16)) == "DiveBatch (delta=0.1)"
    assert analysis.method_label({"method": "adabatch"}, (16, 64)) == "AdaBatch (B 16 -> 64)"
    assert analysis.method_label({"method": "sgd", "batch_size": 32}, (32, 32)) == "SGD B=32"
    records = [{"epoch": e, "train_time": 1.0, "val_acc": 0.5, "batch_size": b}
               for e, b in ((1, 16), (2, 128), (3, 541))]
    assert analysis.summarize({"id": 1, "config": dive}, records)["method"] == (
        "DiveBatch (delta=0.1, B 16 -> 541)")


def test_method_label_names_a_delta_changed_while_the_run_trained():
    dive = {"method": "divebatch", "delta": 0.1, "batch_size": 16}
    records = [{"epoch": e, "train_time": 1.0, "batch_size": b, "delta": d}
               for e, b, d in ((1, 16, 0.1), (2, 16, 0.5), (3, 64, 0.5))]
    assert analysis.summarize({"id": 1, "config": dive}, records)["method"] == (
        "DiveBatch (delta=0.1 -> 0.5, B 16 -> 64)")
    unchanged = [{**record, "delta": 0.1} for record in records]
    assert analysis.summarize({"id": 1, "config": dive}, unchanged)["method"] == (
        "DiveBatch (delta=0.1, B 16 -> 64)")
