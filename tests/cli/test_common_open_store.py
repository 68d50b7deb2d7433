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
