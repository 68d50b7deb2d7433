"""`list` and `compare` (divebatch/cli/run.py): filters that match nothing, and bad input
refused with exit code 2 and one line naming the flag."""

import pytest

from tests.helpers.cli import cli_in_process
from divebatch.config import RunConfig
from divebatch.runs.store import STATUSES


def assert_one_line_error(result, needle: str) -> None:
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, needle", [
    (["--limit", "-1"], "--limit should be an int >= 0, but got --limit=-1"),
    (["--limit", "many"], "argument --limit: invalid int value: 'many'"),
    (["--status", "nosuch"], "argument --status: invalid choice: 'nosuch'"),
])
def test_list_refuses_bad_filters(args, needle):
    assert_one_line_error(cli_in_process("list", *args), needle)


def test_list_help_names_the_statuses():
    shown = cli_in_process("list", "--help")
    assert shown.returncode == 0 and "{" + ",".join(STATUSES) + "}" in shown.stdout


def test_list_says_when_stored_runs_do_not_match(store):
    assert cli_in_process("list").stdout == "no runs stored yet\n"
    store.create_run(RunConfig().to_dict(), status="running")
    queued = cli_in_process("list", "--status", "queued")
    assert queued.returncode == 0
    assert queued.stdout == "no runs match --status queued (the store holds other runs)\n"
    none = cli_in_process("list", "--limit", "0")
    assert none.stdout == "no runs match --limit 0 (the store holds other runs)\n"


def stored_run(store, problem: str, accuracies: list) -> int:
    run_id = store.create_run(RunConfig(problem=problem, epochs=len(accuracies)).to_dict(),
                              status="running")
    for epoch, accuracy in enumerate(accuracies, 1):
        store.append_record(run_id, {"epoch": epoch, "step": epoch, "train_time": epoch,
                                     "batch_size": 16, "val_acc": accuracy,
                                     "val_loss": 1.0 / epoch})
    store.mark_finished(run_id, "completed")
    return run_id


@pytest.mark.parametrize("target", ["1.5", "95", "-1", "0", "nan"])
def test_compare_refuses_an_accuracy_target_outside_0_to_1(store, target):
    ids = [str(stored_run(store, "classification", [0.5, 0.9])) for _ in range(2)]
    result = cli_in_process("compare", *ids, "--target", target)
    assert_one_line_error(result, f"--target should be a fraction > 0 and <= 1 for accuracy "
                                  f"(classification runs measure accuracy), but got "
                                  f"--target={float(target)}")


@pytest.mark.parametrize("target", ["-1", "0", "nan", "inf"])
def test_compare_refuses_a_loss_target_that_is_not_positive_and_finite(store, target):
    ids = [str(stored_run(store, "least_squares", [None, None])) for _ in range(2)]
    result = cli_in_process("compare", *ids, "--target", target)
    assert_one_line_error(result, f"--target should be a validation loss > 0 and finite "
                                  f"(least_squares runs measure no accuracy), but got "
                                  f"--target={float(target)}")


def test_compare_takes_a_loss_target_above_1_for_regression_runs(store):
    ids = [str(stored_run(store, "least_squares", [None, None])) for _ in range(2)]
    result = cli_in_process("compare", *ids, "--target", "1.5")
    assert result.returncode == 0, result.stderr
    assert "common target: 1.5 validation loss (--target)" in result.stdout
