"""divebatch.experiments.verdicts: which runs compare, the chance level, and verdict sentences
written out by hand (the stored-run cases are in tests/report/test_target_table.py)."""

import re

import pytest

from divebatch.config import RunConfig
from divebatch.data.problems import load_problem
from divebatch.experiments import analysis, verdicts


def row(method, time, final, flag="", **more):
    return {"method": method, "time_to_common": time, "final_acc": final,
            "final_val_loss": None, "flag": flag, **more}


def test_two_runs_sentences_by_hand():
    sgd = row("SGD at B0", 5.04, 0.950)
    assert verdicts.verdict([sgd, row("DiveBatch", 2.1, 0.942)], 0.9) == (
        "DiveBatch was first to 90.0 %, in 2.1 s, 2.4x sooner than SGD at B0, and ended 0.8 "
        "points lower.")
    assert verdicts.verdict([sgd, row("DiveBatch", 10.08, 0.96)], 0.9) == (
        "SGD at B0 was first to 90.0 %, in 5.0 s. DiveBatch reached 90.0 % in 10.1 s, 2.0x later "
        "than SGD at B0, and ended 1.0 points higher.")
    assert verdicts.verdict([sgd, row("DiveBatch", None, 0.5)], 0.9) == (
        "SGD at B0 was first to 90.0 %, in 5.0 s. DiveBatch never reached 90.0 %.")
    flagged = row("SGD at B0", 1.0, 0.5, flag="ended 40.0 points below its best: its "
                                               "own-final target is not meaningful")
    assert verdicts.verdict([flagged, row("DiveBatch", 2.0, 0.9)], 0.85) == (
        "SGD at B0 was first to 85.0 %, in 1.0 s. DiveBatch reached 85.0 % in 2.0 s, 2.0x later "
        "than SGD at B0, and ended 40.0 points higher. Note: SGD at B0 ended 40.0 points below "
        "its best: its own-final target is not meaningful.")
    assert verdicts.verdict([sgd], 0.9) == ""
    assert verdicts.verdict([sgd, row("DiveBatch", 2.0, 0.9)], None) == ""


def test_three_runs_name_the_highest_and_who_beat_divebatch():
    rows = [row("SGD", 4.0, 0.95), row("DiveBatch", 2.0, 0.90), row("AdaBatch", 1.0, 0.93)]
    assert verdicts.verdict(rows, 0.89) == (
        "AdaBatch was first to 89.0 %, in 1.0 s, 4.0x sooner than SGD, and ended 2.0 points "
        "lower. DiveBatch reached 89.0 % in 2.0 s, 2.0x sooner than SGD, and ended 5.0 points "
        "lower. AdaBatch did better than DiveBatch on both counts: it reached 89.0 % "
        "sooner (1.0 s) and ended higher (93.0 %). SGD ended highest, at 95.0 %.")
    assert verdicts.verdict(rows, 0.89, lead=True) == (  # a projector's: the race alone
        "AdaBatch was first to 89.0 %, in 1.0 s, 4.0x sooner than SGD, and ended 2.0 points "
        "lower. DiveBatch reached 89.0 % in 2.0 s, 2.0x sooner than SGD, and ended 5.0 points "
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
        "(its final one plus 5 %) in 2.0 s and 40 steps; DiveBatch never reached a "
        "validation loss of 0.105.")


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


# --- every sentence agrees with the others and with the table beside it

def race_of_the_four_class_preset():
    """A race like #2-#5 of the '4-class problem' preset: SGD at the large batch is first to
    the common target but never reaches the baseline's own (higher) target."""
    base = row("SGD, small batch (B 16)", 5.36, 0.9363, id=3, base_level=0.9263,
               time_to_base_level=5.9, steps_to_base_level=8000)
    return [base,
            row("DiveBatch (B 16 -> 496)", 1.6, 0.9275, id=2, time_to_base_level=1.8,
                steps_to_base_level=1404),
            row("AdaBatch (B 16 -> 1024)", 0.89, 0.938, id=5, time_to_base_level=1.2,
                steps_to_base_level=1900),
            row("SGD, large batch (B 1024)", 0.40, 0.9203, id=4, time_to_base_level=None)]


def claims(text: str) -> tuple[set, set]:
    """(run, target) pairs the text says were reached, and those it says were never
    reached."""
    reached, never = set(), set()
    for sentence in text.split(". "):
        for clause in sentence.split("; "):
            for who, target in re.findall(r"^(.+?) (?:was first to|reached) ([\d.]+ %)",
                                          clause):
                reached.add((who, target))
            for who, target in re.findall(r"^(.+?) never reached ([\d.]+ %)", clause):
                never |= {(name, target) for name in who.split(" and ")}
    return reached, never


def test_no_run_is_said_to_reach_a_target_and_never_to_reach_it():
    text = verdicts.verdict(race_of_the_four_class_preset(), 0.913)
    assert "reached it" not in text and "the target" not in text  # each target named
    assert text.startswith("SGD, large batch (B 1024) was first to 91.3 %")
    assert "SGD, large batch (B 1024) never reached 92.6 %." in text  # the baseline's own
    assert "DiveBatch (B 16 -> 496) reached 91.3 % in 1.6 s" in text
    assert "it reached 91.3 % sooner (0.89 s)" in text
    reached, never = claims(text)
    assert ("SGD, large batch (B 1024)", "91.3 %") in reached
    assert ("SGD, large batch (B 1024)", "92.6 %") in never
    assert not reached & never


def test_point_gaps_subtract_the_values_the_table_shows():
    # 93.63 % and 92.75 % show as 93.6 % and 92.8 %: 0.8 points, not the raw 0.88 -> 0.9
    text = verdicts.verdict(race_of_the_four_class_preset()[:2], 0.913)
    assert "and ended 0.8 points lower." in text
    base, dive = row("SGD", 5.0, 0.9049), row("DiveBatch", 2.0, 0.9051)  # 90.5 % both
    assert "ended level with it" in verdicts.verdict([base, dive], 0.9)


def test_runs_sharing_a_label_are_told_apart_by_their_id():
    rows = [row("SGD B=8", 4.0, 0.95, id=3), row("SGD B=8", 2.0, 0.93, id=7),
            row("DiveBatch", 3.0, 0.94, id=9)]
    text = verdicts.verdict(rows, 0.9)
    assert text.startswith("SGD B=8 #7 was first to 90.0 %, in 2.0 s, 2.0x sooner than "
                           "SGD B=8 #3")
    assert "#9" not in text  # a label no other run shares stays as it is
    assert "#" not in verdicts.verdict(rows[1:], 0.9)


def test_a_loss_gap_too_small_for_whole_percents_is_never_called_lower():
    """'ended with a 0 % lower validation loss' read as a gap; equal shown losses are the
    same, and a gap under 1 % gets the digits that show it."""
    base = {**row("SGD", 2.0, None), "final_val_loss": 0.10}
    same = {**row("DiveBatch", 1.0, None), "final_val_loss": 0.100001}  # 0.1 as shown
    assert "ended with the same validation loss (0.1)." in verdicts.verdict([base, same], 0.11)
    close = {**row("DiveBatch", 1.0, None), "final_val_loss": 0.0996}
    assert "ended with a 0.4 % lower validation loss." in verdicts.verdict([base, close], 0.11)
    assert "0 %" not in verdicts.verdict([base, close], 0.11)


def test_a_two_run_verdict_says_each_time_once():
    """Both runs met the baseline's own target at the epoch they met the common one: the
    sentence on it repeated DiveBatch's 1.5 s and 2.0x; now its steps alone."""
    base = row("SGD", 3.0, 0.90, base_level=0.89, time_to_base_level=3.0,
               steps_to_base_level=300)
    dive = row("DiveBatch", 1.5, 0.895, time_to_base_level=1.5, steps_to_base_level=175)
    text = verdicts.verdict([base, dive], 0.885)
    assert text == (
        "DiveBatch was first to 88.5 %, in 1.5 s, 2.0x sooner than SGD, and ended 0.5 points "
        "lower. SGD reached 89.0 % (its final accuracy less 1 point) in 3.0 s and 300 steps; "
        "DiveBatch in the same epoch as it reached 88.5 % (175 steps).")
    assert text.count("1.5 s") == 1 and text.count("2.0x") == 1
    same = verdicts.verdict([{**base, "base_level": 0.885}, dive], 0.885)
    assert same.endswith("DiveBatch in 175 steps, as above.")
    assert same.count("1.5 s") == 1


def test_a_stopped_run_is_named_first_and_its_last_value_is_no_end():
    base = row("SGD", 3.0, 0.90, id=1, epochs=30, planned_epochs=30)
    stopped = row("DiveBatch", 1.4, 0.70, id=3, epochs=6, planned_epochs=60,
                  stopped_early=True)
    text = verdicts.verdict([base, stopped, row("AdaBatch", 2.0, 0.91)], 0.69)
    assert text.startswith("Ended early: DiveBatch stopped at epoch 6 of 60. It is "
                           "compared only up to where it stopped. DiveBatch was first to "
                           "69.0 %, in 1.4 s, 2.1x sooner than SGD.")
    assert "points lower" not in text.split("AdaBatch")[0]  # no end set against another's
    assert "AdaBatch ended highest, at 91.0 %." in text
    never = row("DiveBatch", None, 0.5, stopped_early=True, epochs=2, planned_epochs=60)
    assert "DiveBatch had not reached 69.0 % when it was stopped." in verdicts.verdict(
        [base, never], 0.69)


def test_an_interrupted_or_failed_run_is_named_as_ended_early_too():
    """Only runs the user stopped were named: a run whose worker died at epoch 6 of 60 was
    ranked as if it had finished."""
    base = row("SGD", 3.0, 0.90, id=1, epochs=30, planned_epochs=30)
    failed = row("DiveBatch", 1.4, 0.70, id=3, epochs=6, planned_epochs=60,
                 stopped_early=True, status="failed")
    assert verdicts.verdict([base, failed], 0.69).startswith(
        "Ended early: DiveBatch failed at epoch 6 of 60. It is compared only up "
        "to where it stopped.")
    for status in ("interrupted", "failed", "stopped"):
        assert analysis.stopped_early({"status": status, "config": {"epochs": 60}}, [{}] * 6)
    assert not analysis.stopped_early({"status": "diverged", "config": {"epochs": 60}}, [{}])
    assert not analysis.stopped_early({"status": "failed", "config": {"epochs": 6}}, [{}] * 6)


def test_a_projectors_lead_while_runs_train_is_one_sentence():
    """Instructor mode at 1280x720: the 'So far' lead's two sentences pushed the loss and
    accuracy charts below the screen while a race ran."""
    rows = [dict(r, active=True) for r in (row("SGD", 4.0, 0.95), row("DiveBatch", 2.0, 0.90),
                                           row("AdaBatch", 1.0, 0.93))]
    assert verdicts.verdict(rows, 0.89, lead=True) == (
        "So far (runs still training): AdaBatch was first to 89.0 %, in 1.0 s, 4.0x sooner "
        "than SGD, and is 2.0 points lower.")


def test_a_race_decided_in_the_first_epoch_says_its_times_are_one_epochs_cost():
    """The Synthetic lab's default race: every method but SGD at B_max met the common target
    (set by SGD at B_max) in its first epoch, and the verdict called DiveBatch 2.0x later than
    SGD at B0 with no word that this was one epoch's cost (measuring diversity in it) against
    another's."""
    base = row("SGD B=8", 0.23, None, epochs_to_common=1, final_val_loss=0.010)
    large = row("SGD B=2048", 0.13, None, epochs_to_common=59, final_val_loss=0.014)
    dive = row("DiveBatch", 0.47, None, kind="divebatch", epochs_to_common=1,
               measure_to_common=0.21, final_val_loss=0.010)
    text = verdicts.verdict([base, dive, large], 0.0146)
    assert ("DiveBatch reached a validation loss of 0.0146 in 0.47 s, 2.0x later than "
            "SGD B=8") in text
    assert ("SGD B=8 and DiveBatch reached a validation loss of 0.0146 in their first epoch, "
            "so their times compare what one epoch cost each (0.21 s of DiveBatch's went to "
            "measuring diversity), not how the methods train: a target this easy does not "
            "separate them.") in text
    assert verdicts.verdict([base, dive, large], 0.0146, lead=True).endswith(  # a projector's
        "2 of these runs met it in their first epoch: their times are one epoch's cost (0.21 s "
        "of DiveBatch's went to measuring diversity), not the methods'.")
    later = {**dive, "epochs_to_common": 3}
    assert "first epoch" not in verdicts.verdict([base, later, large], 0.0146)
    assert "first epoch" not in verdicts.verdict([{**base, "epochs_to_common": 2}, dive],
                                                  0.0146)


def test_no_run_beats_divebatch_on_a_tie_as_shown_or_a_first_epoch_and_1_0x_is_as_soon():
    """Seen in a browser: 'AdaBatch did better than DiveBatch on both counts: it reached it
    sooner and ended lower (0.005046)' against 0.005047, both in their first epoch; and
    '1.0x later'."""
    base = {**row("SGD", 0.30, None), "final_val_loss": 0.0056, "epochs_to_common": 1}
    dive = {**row("DiveBatch", 0.29, None), "final_val_loss": 0.005047, "kind": "divebatch",
            "epochs_to_common": 1}
    ada = {**row("AdaBatch", 0.15, None), "final_val_loss": 0.0050471, "epochs_to_common": 3}
    text = verdicts.verdict([base, dive, ada], 0.0146)
    assert "did better" not in text  # 0.005047 both, as the table shows them
    assert "DiveBatch reached a validation loss of 0.0146 in 0.29 s, about as soon as SGD" in text
    lower = {**ada, "final_val_loss": 0.004}
    assert "AdaBatch did better than DiveBatch on both counts" in verdicts.verdict(
        [base, dive, lower], 0.0146)
    first = {**lower, "epochs_to_common": 1}
    text = verdicts.verdict([base, dive, first], 0.0146)
    assert "did better" not in text
    assert "SGD, DiveBatch and AdaBatch reached a validation loss of 0.0146 in their first " \
           "epoch" in text


def test_a_queued_run_is_named_as_queued_not_as_training():
    """A second Start waiting behind a paused run: the verdict said '#2 has not reached ...
    yet', as if it were training."""
    first = row("#1 DiveBatch", 0.36, None, kind="divebatch", active=True, status="running",
                final_val_loss=0.0054)
    queued = row("#2 DiveBatch", None, None, kind="divebatch", active=True, status="queued")
    text = verdicts.verdict([first, queued], 0.0056)
    assert text == ("So far (runs still training): #1 DiveBatch was first to a validation loss "
                    "of 0.0056, in 0.36 s. #2 DiveBatch is queued and not started yet.")
    base_queued = verdicts.verdict([queued, first], 0.0056)
    assert "which #2 DiveBatch has not done yet (it is queued)" in base_queued
