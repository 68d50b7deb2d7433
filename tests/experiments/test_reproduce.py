"""Reproduce: the plan, skipped benchmarks, and a tiny CLI run."""

import doctest

import pytest

from tests.helpers.cli import cli_in_process
from divebatch.experiments import paper_setup, reproduce
from divebatch.runs.store import RunStore

TINY = reproduce.ReproSpec(scale="tiny", benchmarks=("convex",), seeds=(0,))


def test_plan_runs_every_method_per_seed_with_the_right_settings():
    plan = {p.cell[1]: p.config for p in TINY.plan()}
    assert list(plan) == list(paper_setup.METHODS)
    small, large = plan["sgd_small"], plan["sgd_large"]
    assert (small.method, small.batch_size) == ("sgd", 8)
    assert (large.method, large.batch_size, large.lr) == ("sgd", 128, small.lr)
    assert plan["sgd_large_linear"].lr == pytest.approx(small.lr * 128 / 8)
    assert (plan["adabatch"].method, plan["adabatch"].lr_scaling) == ("adabatch", "none")
    assert (plan["divebatch_linear"].method, plan["divebatch_linear"].lr_scaling) == \
        ("divebatch", "linear")
    assert all(c.problem == "logistic" and c.diversity_every_epoch is False
               for c in plan.values())
    assert len(reproduce.ReproSpec("quick", ("convex", "digits"), (0, 1, 2)).plan()) == 42


def test_image_benchmarks_are_skipped_with_a_note_where_they_cannot_run():
    spec = reproduce.ReproSpec(scale="quick", benchmarks=("convex", "cifar10"), seeds=(0,))
    import torch
    note = spec.skipped()["cifar10"]
    assert ("GPU" in note) if not torch.cuda.is_available() else ("CIFAR-10" in note)
    assert spec.runnable() == ["convex"]
    with pytest.raises(ValueError, match="benchmarks should be some of"):
        reproduce.ReproSpec(benchmarks=("mnist",)).validate()


def test_cli_reproduce_tiny_prints_the_table_and_writes_the_report(tmp_path):
    args = ("reproduce", "--scale", "tiny", "--benchmarks", "convex", "--seeds", "1",
            "--output", str(tmp_path / "out"), "--quiet")
    result = cli_in_process(*args)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("CIFAR-10 (ResNet-18, 200 epochs, SGD B=128)", "5.00x", "synthetic convex",
                 "DiveBatch speed-up", "SGD, large batch, linear LR"):
        assert text in out
    assert any(word in out for word in ("AGREES", "DIFFERS", "UNCLEAR"))
    why = next(line for line in out.splitlines() if line.startswith("why: "))
    assert "Measuring diversity took" in why  # as in the report, not only there
    markdown = (tmp_path / "out" / "reproduce.md").read_text()
    assert "## Side by side" in markdown and "| paper | CIFAR-10" in markdown
    assert "Measuring diversity took" in markdown  # the "why" line names the meter's share
    html = (tmp_path / "out" / "reproduce.html").read_text()
    assert "<table>" in html and "plotly" in html.lower()
    store = RunStore(RunStore.default_path())
    assert len(store.list_runs(group=TINY.group)) == 7
    again = cli_in_process(*args)
    assert again.returncode == 0 and "reusing 7" in again.stderr
    assert len(store.list_runs()) == 7


def test_cli_reproduce_bad_input_exit_2():
    result = cli_in_process("reproduce", "--benchmarks", "mnist")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    result = cli_in_process("reproduce", "--seeds", "0")
    assert result.returncode == 2 and "--seeds should be an int >= 1" in result.stderr


def test_doctest():
    assert doctest.testmod(reproduce).failed == 0


def test_a_standard_error_below_the_shown_precision_prints_as_0():
    """The table showed "-0.28 ± 5.6e-15": seeds that agree leave rounding noise."""
    from divebatch.report.reproduce_report import _signed_points
    assert _signed_points(-0.0028, 5.6e-17) == "-0.28 ± 0"
    assert _signed_points(-0.0028, 0.0012) == "-0.28 ± 0.12"
    assert _signed_points(0.01, None) == "+1.00" and _signed_points(None, 0.1) == ""
