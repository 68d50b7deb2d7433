"""open_store (divebatch/cli/common.py): a store the user names (--db or $DIVEBATCH_DB) must be
in an existing folder, so a mistyped path is refused rather than created and trained into; the
default .divebatch/runs.db is created as before."""

import pytest

from tests.helpers.cli import cli_in_process


def assert_refused(result, message: str) -> None:
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: {message}\n" and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["list"], ["run", "--epochs", "1", "--quiet"]])
def test_db_in_a_missing_folder_is_refused_and_nothing_is_created(tmp_path, command):
    missing = tmp_path / "no" / "such"
    result = cli_in_process(*command, "--db", str(missing / "runs.db"))
    assert_refused(result, f"--db: the folder {missing} does not exist (create it first, or "
                           f"leave out --db for .divebatch/runs.db)")
    assert not (tmp_path / "no").exists()


def test_db_under_a_file_is_refused_and_the_file_kept(tmp_path):
    kept = tmp_path / "somefile.db"
    kept.write_text("mine")
    result = cli_in_process("list", "--db", str(kept / "runs.db"))
    assert_refused(result, f"--db: {kept} is not a folder (leave out --db for "
                           f".divebatch/runs.db)")
    assert kept.read_text() == "mine"


def test_env_store_in_a_missing_folder_names_the_variable(tmp_path):
    missing = tmp_path / "typo"
    result = cli_in_process("list", env={"DIVEBATCH_DB": str(missing / "runs.db")})
    assert_refused(result, f"$DIVEBATCH_DB: the folder {missing} does not exist (create it "
                           f"first, or unset DIVEBATCH_DB for .divebatch/runs.db)")
    assert not missing.exists()


def test_env_store_that_cannot_be_opened_names_the_variable(tmp_path):
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("not a database " * 100)
    result = cli_in_process("list", env={"DIVEBATCH_DB": str(not_a_store)})
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: $DIVEBATCH_DB: cannot open run store {not_a_store}")
    assert not_a_store.read_text() == "not a database " * 100


def test_default_store_folder_is_still_created(tmp_path, monkeypatch):
    monkeypatch.delenv("DIVEBATCH_DB")
    monkeypatch.chdir(tmp_path)
    result = cli_in_process("list")
    assert result.returncode == 0 and result.stdout == "no runs stored yet\n"
    assert (tmp_path / ".divebatch" / "runs.db").is_file()


def test_empty_db_is_refused_rather_than_the_default_store(tmp_path, monkeypatch):
    monkeypatch.delenv("DIVEBATCH_DB")
    monkeypatch.chdir(tmp_path)
    for command in (["--db", "", "list"], ["list", "--db", ""], ["list", "--db", "  "]):
        result = cli_in_process(*command)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("error: --db should be the path of a run store file, "
                                        "but got --db=")
    assert not (tmp_path / ".divebatch").exists()


@pytest.fixture
def read_only_store(tmp_path, monkeypatch):
    """A store with one finished run that this process cannot write (a read-only file system:
    root writes anything, so the check is patched)."""
    from divebatch.config import RunConfig
    from divebatch.runs import sqlite_file
    from divebatch.runs.store import RunStore
    store = RunStore(tmp_path / "ro" / "runs.db")
    run_id = store.create_run(RunConfig(problem="least_squares").to_dict(), status="running")
    store.append_record(run_id, {"epoch": 1, "train_loss": 0.5, "val_loss": 0.5})
    store.mark_finished(run_id, "completed")
    store.create_run(RunConfig(problem="least_squares").to_dict(), status="running")  # lost
    monkeypatch.setattr(sqlite_file, "writable", lambda path: False)
    return store.path


@pytest.mark.parametrize("command", [["list"], ["show", "1"], ["export", "1"],
                                     ["compare", "1"]])
def test_commands_that_read_work_on_a_read_only_store(read_only_store, command):
    result = cli_in_process("--db", str(read_only_store), *command)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout


@pytest.mark.parametrize("command", [["run", "--epochs", "1", "--quiet"], ["resume", "1"],
                                     ["prune", "--keep", "1"]])
def test_commands_that_write_say_the_store_is_read_only(read_only_store, command):
    result = cli_in_process("--db", str(read_only_store), *command)
    assert_refused(result, f"--db: the run store {read_only_store} is read-only (its file or "
                           f"folder cannot be written); list, show, export and compare can "
                           f"read it")
