import csv
import io
import json
import subprocess
import sys
from importlib import metadata

import pytest

from tests.helpers.cli import ROOT, cli_in_process, run_cli

SMALL = ["--epochs", "3", "--n-samples", "400", "--dim", "8", "--quiet"]


def start_run(*flags):
    result = cli_in_process("run", *flags)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == lines[-1] and lines[0].isdigit()
    return int(lines[0])


@pytest.mark.parametrize("problem", ["least_squares", "logistic"])
def test_run_list_show_export_end_to_end(problem):
    run_id = start_run("--problem", problem, *SMALL, "--method", "divebatch")
    listing = cli_in_process("list")
    assert listing.returncode == 0 and f"{run_id}" in listing.stdout
    assert "completed" in listing.stdout
    shown = cli_in_process("show", str(run_id))
    assert f"problem = '{problem}'" in shown.stdout
    exported = cli_in_process("export", str(run_id), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 3
    assert list(rows[0])[:10] == ["epoch", "step", "samples_seen", "train_time", "batch_size",
                                  "lr", "diversity", "train_loss", "val_loss", "val_acc"]
    assert (rows[0]["val_acc"] == "") == (problem == "least_squares")
    document = json.loads(cli_in_process("export", str(run_id), "--format", "json").stdout)
    assert document["run"]["config"]["problem"] == problem
    assert [r["epoch"] for r in document["records"]] == [1, 2, 3]


def test_run_prints_id_first_and_progress_on_stderr():
    result = run_cli("run", "--problem", "least_squares", "--epochs", "2", "--n-samples", "300",
                     "--dim", "4")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].strip().isdigit()
    assert "epoch" in result.stderr


def test_digits_three_methods_then_compare():
    common = ["--problem", "digits", "--model", "cnn", "--epochs", "3", "--batch-size", "32",
              "--lr", "0.05", "--quiet"]
    adaptive = ["--max-batch-size", "512", "--resize-every", "2"]  # SGD refuses them
    ids = [start_run(*common, "--method", method, *([] if method == "sgd" else adaptive))
           for method in ("sgd", "divebatch", "adabatch")]
    table = cli_in_process("compare", *map(str, ids))
    assert table.returncode == 0, table.stderr
    assert "SGD B=32" in table.stdout and "AdaBatch" in table.stdout
    assert "DiveBatch (delta=0.1" in table.stdout and "train s to own-1pt" in table.stdout
    assert "train s to common" in table.stdout
    verdict = table.stdout.splitlines()[-1]
    assert "was first to" in verdict and "SGD B=32 reached" in verdict


def test_compare_keeps_runs_of_different_problems_apart():
    from divebatch.config import RunConfig
    from divebatch.runs.store import RunStore
    store = RunStore(RunStore.default_path())
    ids = []
    for problem, method, accs, losses, seconds in (
            ("classification", "sgd", [0.5, 0.9], [1.0, 0.5], 1.0),
            ("classification", "divebatch", [0.8, 0.9], [0.6, 0.4], 0.5),
            ("least_squares", "sgd", [None, None], [0.5, 0.1], 0.01)):
        config = RunConfig(problem=problem, method=method, batch_size=16, epochs=2)
        run_id = store.create_run(config.to_dict(), status="running")
        for epoch, (acc, loss) in enumerate(zip(accs, losses), 1):
            store.append_record(run_id, {"epoch": epoch, "step": 10 * epoch, "train_time": seconds,
                                         "batch_size": 16, "val_acc": acc, "val_loss": loss})
        store.mark_finished(run_id, "completed")
        ids.append(run_id)
    result = cli_in_process("compare", *map(str, ids))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "problem", "method"]
    column = lines[0].index("speed-up")  # each problem is measured against its own baseline
    speedups = [line[column:column + len("speed-up")].strip() for line in lines[2:5]]
    assert speedups == ["1", "2", ""]  # a run alone in its problem has no speed-up
    assert lines[-3].startswith("classification: common target: 0.89 accuracy")
    assert lines[-2].startswith("least_squares: common target: 0.105 validation loss")
    assert lines[-1] == (
        "These runs are of different problems or data, which do not compare: classification "
        "(runs 1, 2) and least_squares (run 3). No speed-up, star or verdict crosses them. "
        "classification: DiveBatch (delta=0.1) was first to 89.0 %, in 1.0 s, 2.0x sooner than "
        "SGD B=16, and ended level with it. SGD B=16 reached 89.0 % (its final accuracy less 1 "
        "point) in 2.0 s and 20 steps; DiveBatch (delta=0.1) in 20 steps, as above.")


@pytest.mark.parametrize("args,needle", [
    (["run", "--epochs", "0"], "--epochs should be an int >= 1"),
    (["run", "--epochs", "abc"], "--epochs: should be an int >= 1"),
    (["run", "--problem", "mnist"], "--problem should be one of"),
    (["run", "--lr", "nan"], "--lr should be a float > 0"),
    (["run", "--batch-size", "64", "--max-batch-size", "8"], "--max-batch-size should be"),
    (["show", "999"], "run_id should be the id of a stored run"),
    (["export", "999"], "run_id should be the id of a stored run"),
    (["run", "--config", "/nonexistent.json"], "--config: cannot read"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(args, needle):
    result = cli_in_process(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_config_file_with_flag_override(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"problem": "sine", "epochs": 5, "n_samples": 300}))
    run_id = start_run("--config", str(path), "--epochs", "2", "--quiet")
    shown = cli_in_process("show", str(run_id)).stdout
    assert "problem = 'sine'" in shown and "epochs = 2" in shown
    path.write_text("{not json")
    result = cli_in_process("run", "--config", str(path))
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_db_flag_and_env(tmp_path):
    db = tmp_path / "elsewhere.db"
    run_id = start_run("--db", str(db), "--problem", "sine", *SMALL)
    assert db.exists()
    assert str(run_id) in cli_in_process("list", "--db", str(db)).stdout
    assert "no runs stored yet" in cli_in_process("list").stdout


def test_presets_listed_and_used_as_a_base():
    listing = cli_in_process("presets")
    assert "cifar10_small" in listing.stdout and "digits_race" in listing.stdout
    run_id = start_run("--preset", "nonconvex_mlp", "--epochs", "1", "--n-samples", "200")
    shown = cli_in_process("show", str(run_id)).stdout
    assert "problem = 'sine'" in shown and "resize_every = 2" in shown and "epochs = 1" in shown
    missing = cli_in_process("run", "--preset", "cifar10_small")
    assert missing.returncode == 2 and "python -m divebatch download cifar10" in missing.stderr
    bad = cli_in_process("run", "--preset", "nope")
    assert bad.returncode == 2 and "--preset should be one of" in bad.stderr


def test_output_into_a_closed_pipe_ends_quietly():
    """`python -m divebatch presets | head -1`: the reader goes away before we write."""
    process = subprocess.Popen([sys.executable, "-m", "divebatch", "presets"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and b"Traceback" not in stderr and b"Broken" not in stderr


def test_version_names_the_package_however_it_is_invoked():
    import divebatch
    version = metadata.version("divebatch")
    assert divebatch.__version__ == version and "__version__" in dir(divebatch)
    result = cli_in_process("--version")
    assert result.returncode == 0 and result.stdout == f"divebatch {version}\n"
    as_module = run_cli("--version")  # `python -m divebatch --version`
    assert as_module.returncode == 0 and as_module.stdout == f"divebatch {version}\n"


def test_version_of_a_source_tree_never_installed(monkeypatch):
    import divebatch

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(metadata, "version", not_installed)
    assert divebatch._installed_version() == "(not installed)"


def test_data_flags_a_problem_ignores_are_refused(isolated_store):
    result = cli_in_process("run", "--problem", "digits", "--n-samples", "5")
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr == ("error: --n-samples is not used by problem digits (only by "
                             "least_squares, logistic, sine, classification, cifar10, "
                             "cifar100, tiny_imagenet); leave it out\n")
    dim = cli_in_process("run", "--problem", "digits", "--dim", "5")
    assert dim.returncode == 2 and "--dim is not used by problem digits" in dim.stderr
    sweep = cli_in_process("sweep", "--problem", "digits", "--noise", "0.5")
    assert sweep.returncode == 2 and "Traceback" not in sweep.stderr
    assert sweep.stderr.startswith("error: --noise is not used by problem digits")
    assert not isolated_store.exists()
