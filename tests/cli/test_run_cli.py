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


def test_a_missing_device_is_named_as_the_flag(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(cli_in_process("run", "--device", "cuda", "--quiet"),
                          "--device should be auto or cpu on this machine (no CUDA), but got "
                          "--device='cuda'")


def test_a_presets_model_that_does_not_fit_the_typed_problem_names_the_preset():
    """The user typed --problem sine, not --model: the cnn came from the preset."""
    result = cli_in_process("run", "--preset", "digits_race", "--problem", "sine", "--quiet")
    assert_one_line_error(result, "the preset digits_race's model cnn does not fit --problem "
                                  "sine: add --model auto (or one of mlp)")
    assert "--model=" not in result.stderr


@pytest.mark.parametrize("flags, needle", [
    (["--method", "sgd", "--delta", "0.5"], "--delta is not used by method sgd (only by "
                                            "divebatch); leave it out"),
    (["--method", "sgd", "--max-batch-size", "64"], "--max-batch-size is not used by method "
                                                    "sgd (only by divebatch, adabatch; SGD at "
                                                    "B_max: --batch-size B --max-batch-size B)"),
    (["--method", "adabatch", "--min-batch-size", "4"], "--min-batch-size is not used by "
                                                        "method adabatch (only by divebatch)"),
    (["--adabatch-factor", "3"], "--adabatch-factor is not used by method divebatch (only by "
                                 "adabatch)"),
    (["--method", "sgd", "--batch-size", "2048", "--max-batch-size", "1024"],
     "--max-batch-size should be an int >= --batch-size (2048), but got --max-batch-size=1024"),
    (["--method", "adabatch", "--batch-size", "2048"],  # B_max is AdaBatch's: no default moves
     "--max-batch-size should be an int >= --batch-size (2048), but got --max-batch-size=1024"),
])
def test_method_flags_the_method_ignores_are_refused(flags, needle, store):
    assert_one_line_error(cli_in_process("run", *flags, "--quiet"), needle)
    assert store.list_runs() == []


@pytest.mark.parametrize("flags", [
    ["--preset", "classification_race", "--method", "sgd", "--epochs", "1"],  # preset's delta
    ["--problem", "least_squares", "--method", "sgd", "--batch-size", "64",
     "--max-batch-size", "64", "--epochs", "1"],  # SGD at B_max
])
def test_method_fields_a_preset_sets_or_sgd_at_b_max_are_accepted(flags):
    result = cli_in_process("run", *flags, "--quiet")
    assert result.returncode == 0, result.stderr


SMALL_SGD = ["--problem", "least_squares", "--n-samples", "4096", "--dim", "8", "--epochs", "1",
             "--method", "sgd"]


@pytest.mark.parametrize("flags, b_max", [
    (["--batch-size", "2048"], 2048),  # the default B_max (1024) follows the batch size
    (["--batch-size", "64"], 1024),  # below the default: B_max is left alone
    (["--preset", "tradeoff_race", "--batch-size", "1024"], 1024),  # the preset's 512 follows
])
def test_sgd_above_the_default_b_max_runs_as_typed_and_is_stored_consistently(flags, b_max,
                                                                              store):
    """`run --method sgd --batch-size 2048` was refused: B_max (1024 by default, read only by
    the adaptive methods) had to be given as 2048 too."""
    result = cli_in_process("run", *SMALL_SGD, *flags, "--quiet")
    assert result.returncode == 0, result.stderr
    config = store.list_runs()[0]["config"]
    batch = int(flags[flags.index("--batch-size") + 1])
    assert (config["method"], config["batch_size"], config["max_batch_size"]) == \
        ("sgd", batch, b_max)


def test_a_config_file_without_b_max_runs_sgd_above_the_default(tmp_path, store):
    path = tmp_path / "sgd.json"
    path.write_text('{"method": "sgd", "batch_size": 2048}')
    result = cli_in_process("run", *SMALL_SGD[:-2], "--config", str(path), "--quiet")
    assert result.returncode == 0, result.stderr
    assert store.list_runs()[0]["config"]["max_batch_size"] == 2048
    path.write_text('{"method": "sgd", "batch_size": 2048, "max_batch_size": 1024}')
    assert_one_line_error(cli_in_process("run", "--config", str(path), "--quiet"),
                          "max_batch_size should be an int >= batch_size (2048), but got "
                          "max_batch_size=1024")


def test_an_offline_download_prints_the_error_alone_and_leaves_no_folder(tmp_path, monkeypatch):
    """It printed a progress bar, then the error, and left an empty data/ folder behind."""
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.delenv("DIVEBATCH_DATA")
    monkeypatch.chdir(tmp_path)
    result = cli_in_process("download", "cifar10")
    assert_one_line_error(result, "could not download")
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "mine"
    kept.mkdir()
    result = cli_in_process("download", "cifar10", "--data-dir", str(kept / "a" / "b"))
    assert_one_line_error(result, "could not download")
    assert list(tmp_path.iterdir()) == [kept] and list(kept.iterdir()) == []
