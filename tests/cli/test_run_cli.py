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
