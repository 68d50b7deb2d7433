"""divebatch.experiments.verdicts: which runs compare, the chance level, and verdict sentences
written out by hand (the stored-run cases are in tests/report/test_target_table.py)."""

import pytest

from divebatch.config import RunConfig
from divebatch.data.problems import load_problem
from divebatch.experiments import verdicts


def row(method, time, final, flag="", **more):
    return {"method": method, "time_to_common": time, "final_acc": final,
            "final_val_loss": None, "flag": flag, **more}


def test_two_runs_sentences_by_hand():
    sgd = row("SGD at B0", 5.04, 0.950)
    assert verdicts.verdict([sgd, row("DiveBatch", 2.1, 0.942)], 0.9) == (
        "DiveBatch was first to 90.0 %, in 2.1 s, 2.4x sooner than SGD at B0, and ended 0.8 "
        "points lower.")
    assert verdicts.verdict([sgd, row("DiveBatch", 10.08, 0.96)], 0.9) == (
        "SGD at B0 was first to 90.0 %, in 5.0 s. DiveBatch reached it in 10.1 s, 2.0x later "
        "than SGD at B0, and ended 1.0 points higher.")
    assert verdicts.verdict([sgd, row("DiveBatch", None, 0.5)], 0.9) == (
        "SGD at B0 was first to 90.0 %, in 5.0 s. DiveBatch never reached it.")
    flagged = row("SGD at B0", 1.0, 0.5, flag="ended 40.0 points below its best: its "
                                               "own-final target is not meaningful")
    assert verdicts.verdict([flagged, row("DiveBatch", 2.0, 0.9)], 0.85) == (
        "SGD at B0 was first to 85.0 %, in 1.0 s. DiveBatch reached it in 2.0 s, 2.0x later "
        "than SGD at B0, and ended 40.0 points higher. Note: SGD at B0 ended 40.0 points below "
        "its best: its own-final target is not meaningful.")
    assert verdicts.verdict([sgd], 0.9) == ""
    assert verdicts.verdict([sgd, row("DiveBatch", 2.0, 0.9)], None) == ""


def test_three_runs_name_the_highest_and_who_beat_divebatch():
    rows = [row("SGD", 4.0, 0.95), row("DiveBatch", 2.0, 0.90), row("AdaBatch", 1.0, 0.93)]
    assert verdicts.verdict(rows, 0.89) == (
        "AdaBatch was first to 89.0 %, in 1.0 s, 4.0x sooner than SGD, and ended 2.0 points "
        "lower. DiveBatch reached it in 2.0 s, 2.0x sooner than SGD, and ended 5.0 points "
        "lower. AdaBatch did better than DiveBatch on both counts: it reached the target "
        "sooner (1.0 s) and ended higher (93.0 %). SGD ended highest, at 95.0 %.")
    assert verdicts.verdict(rows, 0.89, lead=True) == (  # a projector's: the race alone
        "AdaBatch was first to 89.0 %, in 1.0 s, 4.0x sooner than SGD, and ended 2.0 points "
        "lower. DiveBatch reached it in 2.0 s, 2.0x sooner than SGD, and ended 5.0 points "
        "lower.")
    live = [dict(r, active=True) for r in rows[:2]]
    assert verdicts.verdict(live, 0.89, lead=True).startswith("So far (runs still training): ")


def test_regression_verdict_speaks_of_validation_loss():
    base = {**row("SGD", 2.0, None), "final_val_loss": 0.10, "base_level": 0.105,
            "time_to_base_level": 2.0, "steps_to_base_level": 40}
    dive = {**row("DiveBatch", 1.0, None), "final_val_loss": 0.12,
            "time_to_base_level": None}
    assert verdicts.verdict([base, dive], 0.126) == (
        "DiveBatch was first to a validation loss of 0.126, in 1.0 s, 2.0x sooner than SGD, "
        "and ended with a 20 % higher validation loss. SGD reached a validation loss of 0.105 "
        "(its final one plus 5 %) in 2.0 s and 40 steps; DiveBatch never reached it.")


def test_near_chance_threshold_from_the_number_of_classes():
    # chance + 20 % of the way to 100 %: 60 % on 2 classes, 40 % on 4, 28 % on 10
    assert verdicts.near_chance(0.599, "logistic") and not verdicts.near_chance(0.60, "logistic")
    assert verdicts.near_chance(0.399, "classification")
    assert not verdicts.near_chance(0.401, "classification")
    assert verdicts.near_chance(0.279, "digits") and not verdicts.near_chance(0.281, "digits")
    assert not verdicts.near_chance(0.1, "least_squares")  # regression: no chance level
    assert not verdicts.near_chance(None, "logistic")


@pytest.mark.parametrize("problem", ["logistic", "classification", "digits"])
def test_classes_agree_with_the_data(problem):
    data = load_problem(RunConfig(problem=problem, n_samples=400, dim=8), "cpu")
    labels = set(data.y_train.long().tolist()) | set(data.y_val.long().tolist())
    assert labels == set(range(verdicts.CLASSES[problem]))


def test_data_key_groups_by_problem_and_data_but_not_seed():
    key = verdicts.data_key
    assert key({"problem": "classification"}) == key(
        {"problem": "classification", "n_samples": 8000, "dim": 20, "seed": 3})
    assert key({"problem": "classification"}) != key({"problem": "classification",
                                                      "noise": 0.3})
    assert key({"problem": "digits", "dim": 5}) == key({"problem": "digits"})  # unused field
    assert key({"problem": "least_squares"}) != key({"problem": "logistic"})
    runs = [{"id": i, "config": c} for i, c in enumerate(
        [{"problem": "logistic"}, {"problem": "digits"}, {"problem": "logistic", "seed": 1}])]
    groups = verdicts.group_by_data(runs)
    assert [[r["id"] for r in g] for g in groups] == [[0, 2], [1]]
    assert verdicts.group_names(groups) == ["logistic", "digits"]
