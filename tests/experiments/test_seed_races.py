"""divebatch.experiments.seed_races: time and steps to the small batch's level, and the trade-off
check, on records written out by hand."""

from divebatch.experiments import seed_races


def records(accuracies, steps_per_epoch, seconds_per_epoch=1.0):
    return [{"epoch": e, "step": e * steps_per_epoch, "train_time": seconds_per_epoch,
             "val_acc": acc, "batch_size": 32} for e, acc in enumerate(accuracies, start=1)]


def race(small, dive, large):
    return {"sgd_small": records(small, 100), "divebatch": records(dive, 25, 0.5),
            "adabatch": records(dive, 25, 0.5), "sgd_large": records(large, 6, 0.25)}


def test_time_and_steps_to_sgd_at_b0s_final_minus_one_point():
    judged = seed_races.judge(race(small=[0.80, 0.88, 0.90, 0.91],
                                     dive=[0.85, 0.905, 0.90, 0.905],
                                     large=[0.70, 0.80, 0.84, 0.85]), 32)
    assert judged["sgd_small"]["level"] == 0.91 - 0.01
    # SGD at B0 first reaches 0.90 at epoch 3: 3 s, 300 steps; DiveBatch at epoch 2: 1 s, 50
    assert (judged["sgd_small"]["time_to_level"], judged["sgd_small"]["steps_to_level"]) == \
        (3.0, 300)
    assert (judged["divebatch"]["time_to_level"], judged["divebatch"]["steps_to_level"]) == \
        (1.0, 50)
    assert judged["divebatch"]["level_speedup"] == 3.0
    assert judged["divebatch"]["level_step_ratio"] == 6.0
    assert judged["sgd_large"]["time_to_level"] is None  # never reached
    assert "MEETS" in seed_races.trade_off([judged])


def test_the_trade_off_check_misses_when_divebatch_ends_too_low():
    judged = seed_races.judge(race(small=[0.80, 0.90, 0.91], dive=[0.85, 0.89, 0.89],
                                     large=[0.70, 0.80, 0.85]), 32)
    assert judged["divebatch"]["time_to_level"] is None
    line = seed_races.trade_off([judged])
    assert "misses" in line and "DiveBatch -2.00 points" in line
