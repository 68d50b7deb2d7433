"""The paper's claims judged from our numbers: verdict words, findings, their explanation."""

import doctest

from divebatch.experiments import claims, paper_setup, reproduce


def test_verdicts_come_from_the_numbers():
    assert claims.speed_verdict(2.0, 0.2) == "faster"
    assert claims.speed_verdict(1.3, 0.2) == "no clear difference"
    assert claims.speed_verdict(0.5) == "slower"
    assert claims.accuracy_verdict(-1.7) == "slightly lower"
    assert claims.accuracy_verdict(-0.3) == "about the same"
    assert claims.accuracy_verdict(-1.0, se_points=0.6) == "about the same"
    assert claims.accuracy_verdict(-7.0) == "much lower"
    assert claims.accuracy_verdict(1.0) == "higher"


def fake_result(speedup, speedup_se, change, change_se, ada_ratio):
    cells = {("digits", m): {"speedup": None, "speedup_se": None, "final_change": None,
                             "final_change_se": None, "final_batch_size": None,
                             "epochs_to_target": None}
             for m in paper_setup.METHODS}
    cells[("digits", "divebatch")].update(speedup=speedup, speedup_se=speedup_se,
                                         final_change=change, final_change_se=change_se)
    spec = reproduce.ReproSpec(scale="quick", benchmarks=("digits",), seeds=(0, 1))
    return reproduce.ReproResults(spec, [], [], cells, {}, {"digits": ada_ratio})


def test_findings_agree_differ_or_stay_unclear_by_the_numbers():
    found = claims.findings(fake_result(2.0, 0.1, -0.02, 0.002, (0.5, 0.1)))
    assert [f["agrees"] for f in found] == [True, True, False]
    assert found[0]["paper"] == "faster, 1.50 to 5.00x"
    assert found[0]["ours"] == "faster, 2.00 ± 0.1x"
    assert found[1]["ours"].startswith("slightly lower, -2.00 ± 0.2")
    assert found[2]["ours"].startswith("slower, 0.50")
    found = claims.findings(fake_result(1.1, 0.3, 0.001, None, (None, None)))
    assert [f["agrees"] for f in found] == [None, False, None]
    assert found[2]["ours"] == "no finished runs yet"
    assert all(f.keys() == found[0].keys() for f in found)  # pages read every key
    # the paper's "slightly lower" against our "about the same": a difference in DiveBatch's
    # favour, which must not read as a failure
    assert found[1]["favourable"] and not found[0]["favourable"]
    assert claims.finding_line(found[1]).startswith("DIFFERS, in DiveBatch's favour")
    assert "no accuracy loss" in claims.finding_line(found[1])
    assert not found[2]["favourable"]  # no finished runs: a finding all the same


def test_a_collapsed_baseline_leaves_the_speed_claim_unclear_and_warns_first():
    result = fake_result(2.0, 0.1, -0.02, 0.002, (0.5, 0.1))
    result.cells[("digits", "sgd_small")].update(diverged=1, flagged=0, finished=2)
    found = claims.findings(result)
    assert found[0]["agrees"] is None and not found[0]["favourable"]
    assert found[0]["ours"] == (
        "⚠ SGD at the small batch collapsed in 1 of 2 seeds, so speed-ups over it are not "
        "meaningful; faster, 2.00 ± 0.1x")
    assert claims.finding_line(found[0]).startswith(
        "UNCLEAR - digits 8x8, small CNN: DiveBatch is faster than SGD at the small batch? "
        "Paper: faster, 1.50 to 5.00x. Ours: ⚠ SGD at the small batch collapsed")
    assert found[1]["agrees"] is True  # final accuracies still compare


def test_findings_from_unfinished_runs_say_so_far():
    result = fake_result(2.0, 0.1, -0.02, 0.002, (0.5, 0.1))
    result.cells[("digits", "divebatch")].update(finished=1, planned=2)
    found = claims.findings(result)
    assert [c["ours"] for c in found] == [
        "faster, 2.00 ± 0.1x (so far: 1 of 2 seeds)",
        "slightly lower, -2.00 ± 0.2 points (so far: 1 of 2 seeds)",
        "slower, 0.50 ± 0.1x (AdaBatch's time / DiveBatch's) (so far: 1 of 2 seeds)"]


def explained(final_batch, epochs_to_target, peak):
    result = fake_result(1.0, 0.1, 0.0, None, (None, None))
    for method in ("sgd_small", "divebatch", "adabatch"):
        result.cells[("digits", method)]["epochs_to_target"] = epochs_to_target
    result.cells[("digits", "divebatch")]["final_batch_size"] = final_batch
    result.peak_bound["digits"] = peak
    return claims.explanation(result, "digits")


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


def test_doctest():
    assert doctest.testmod(claims).failed == 0
