"""Reproduce: the plan, the paper's numbers, verdicts from numbers, and a tiny CLI run."""

import doctest

import pytest

from tests.helpers.cli import cli_in_process
from divebatch.experiments import reproduce
from divebatch.runs.store import RunStore

TINY = reproduce.ReproSpec(scale="tiny", benchmarks=("convex",), seeds=(0,))


def test_plan_runs_every_method_per_seed_with_the_right_settings():
    plan = {p.cell[1]: p.config for p in TINY.plan()}
    assert list(plan) == list(reproduce.METHODS)
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


def test_paper_numbers_as_speedups_and_accuracy_changes():
    assert reproduce.paper_speedup("CIFAR-10", "divebatch") == pytest.approx(3189 / 638)
    assert reproduce.paper_speedup("Tiny-ImageNet", "adabatch") == pytest.approx(9703 / 7146)
    assert reproduce.paper_change("CIFAR-100", "divebatch") == pytest.approx(71.8 - 74.9)


def test_verdicts_come_from_the_numbers():
    assert reproduce.speed_verdict(2.0, 0.2) == "faster"
    assert reproduce.speed_verdict(1.3, 0.2) == "no clear difference"
    assert reproduce.speed_verdict(0.5) == "slower"
    assert reproduce.accuracy_verdict(-1.7) == "slightly lower"
    assert reproduce.accuracy_verdict(-0.3) == "about the same"
    assert reproduce.accuracy_verdict(-1.0, se_points=0.6) == "about the same"
    assert reproduce.accuracy_verdict(-7.0) == "much lower"
    assert reproduce.accuracy_verdict(1.0) == "higher"


def fake_result(speedup, speedup_se, change, change_se, ada_ratio):
    cells = {("digits", m): {"speedup": None, "speedup_se": None, "final_change": None,
                             "final_change_se": None, "final_batch_size": None,
                             "epochs_to_target": None}
             for m in reproduce.METHODS}
    cells[("digits", "divebatch")].update(speedup=speedup, speedup_se=speedup_se,
                                         final_change=change, final_change_se=change_se)
    spec = reproduce.ReproSpec(scale="quick", benchmarks=("digits",), seeds=(0, 1))
    return reproduce.ReproResults(spec, [], [], cells, {}, {"digits": ada_ratio})


def test_findings_agree_differ_or_stay_unclear_by_the_numbers():
    claims = reproduce.findings(fake_result(2.0, 0.1, -0.02, 0.002, (0.5, 0.1)))
    assert [f["agrees"] for f in claims] == [True, True, False]
    assert claims[0]["paper"] == "faster, 1.50 to 5.00x"
    assert claims[0]["ours"] == "faster, 2.00 ± 0.1x"
    assert claims[1]["ours"].startswith("slightly lower, -2.00 ± 0.2")
    assert claims[2]["ours"].startswith("slower, 0.50")
    claims = reproduce.findings(fake_result(1.1, 0.3, 0.001, None, (None, None)))
    assert [f["agrees"] for f in claims] == [None, False, None]
    assert claims[2]["ours"] == "no finished runs yet"
    assert all(f.keys() == claims[0].keys() for f in claims)  # pages read every key
    # the paper's "slightly lower" against our "about the same": a difference in DiveBatch's
    # favour, which must not read as a failure
    assert claims[1]["favourable"] and not claims[0]["favourable"]
    assert reproduce.finding_line(claims[1]).startswith("DIFFERS, in DiveBatch's favour")
    assert "no accuracy loss" in reproduce.finding_line(claims[1])
    assert not claims[2]["favourable"]  # no finished runs: a finding all the same


def test_a_collapsed_baseline_leaves_the_speed_claim_unclear_and_warns_first():
    result = fake_result(2.0, 0.1, -0.02, 0.002, (0.5, 0.1))
    result.cells[("digits", "sgd_small")].update(diverged=1, flagged=0, finished=2)
    claims = reproduce.findings(result)
    assert claims[0]["agrees"] is None and not claims[0]["favourable"]
    assert claims[0]["ours"] == (
        "⚠ SGD at the small batch collapsed in 1 of 2 seeds, so speed-ups over it are not "
        "meaningful; faster, 2.00 ± 0.1x")
    assert reproduce.finding_line(claims[0]).startswith(
        "UNCLEAR - digits 8x8, small CNN: DiveBatch is faster than SGD at the small batch? "
        "Paper: faster, 1.50 to 5.00x. Ours: ⚠ SGD at the small batch collapsed")
    assert claims[1]["agrees"] is True  # final accuracies still compare


def test_findings_from_unfinished_runs_say_so_far():
    result = fake_result(2.0, 0.1, -0.02, 0.002, (0.5, 0.1))
    result.cells[("digits", "divebatch")].update(finished=1, planned=2)
    claims = reproduce.findings(result)
    assert [c["ours"] for c in claims] == [
        "faster, 2.00 ± 0.1x (so far: 1 of 2 seeds)",
        "slightly lower, -2.00 ± 0.2 points (so far: 1 of 2 seeds)",
        "slower, 0.50 ± 0.1x (AdaBatch's time / DiveBatch's) (so far: 1 of 2 seeds)"]


def explained(final_batch, epochs_to_target, peak):
    result = fake_result(1.0, 0.1, 0.0, None, (None, None))
    for method in ("sgd_small", "divebatch", "adabatch"):
        result.cells[("digits", method)]["epochs_to_target"] = epochs_to_target
    result.cells[("digits", "divebatch")]["final_batch_size"] = final_batch
    result.peak_bound["digits"] = peak
    return reproduce.explanation(result, "digits")


def test_explanation_says_why_by_hand():
    # quick digits: B0 32, B_max 512, R 2, 20 epochs
    assert explained(32, 8, 20.5) == (
        "digits 8x8, small CNN: DiveBatch never grew the batch: its bound δ·n·Δ̂ peaked at "
        "20.5, below B0 = 32, so it trained like SGD at B0 and paid for measuring diversity; "
        "the methods reached their own targets after 8 to 8 of 20 epochs (resizes every 2).")
    assert explained(512, 2, 3000.0).endswith(
        "went from B0 = 32 to the cap B_max = 512; every method reached its own target within "
        "2 of 20 epochs, before the first resize after epoch 2 could act, so the speed-ups "
        "mostly measure the cost of measuring, not larger batches.")
    assert "grew the batch from B0 = 32 to 100 on average" in explained(100, 5, 120.0)
    assert explained(None, None, None).endswith("no finished DiveBatch run yet.")


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
