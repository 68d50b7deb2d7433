import pytest

from divebatch.report import target_table
from divebatch.runs.store import RunStore


def recs(accs, times, batch=16):
    return [{"epoch": i + 1, "train_time": t, "val_acc": a, "val_loss": 1.0 - a,
             "samples_seen": 10 * (i + 1), "next_batch_size": batch, "batch_size": batch}
            for i, (a, t) in enumerate(zip(accs, times))]


def run(run_id, method, batch_size=16):
    return {"id": run_id, "status": "completed",
            "config": {"method": method, "batch_size": batch_size, "max_batch_size": 256,
                       "delta": 0.1}}


RUNS = [run(1, "divebatch"), run(2, "sgd"), run(3, "sgd", 256), run(4, "adabatch")]
RECORDS = {1: recs([0.6, 0.9, 0.92], [0.5, 0.5, 0.5]),     # target 89 %: 1.0 s
           2: recs([0.7, 0.95, 0.60], [1.0, 1.0, 1.0]),    # collapses: flagged
           3: recs([0.5, 0.6, 0.7], [0.1, 0.1, 0.1], batch=256),  # best 70 %
           4: recs([0.8, 0.93, 0.93], [0.4, 0.4, 0.4])}


def test_four_main_columns_no_empty_cells_and_the_winner():
    table = target_table.build(RUNS, RECORDS)
    # common = lowest best (70 %, SGD large) - 1 point = 69 %
    assert round(table.common, 4) == 0.69
    assert [list(r) for r in table.rows] == [
        ["method", "final accuracy", target_table.TIME_COLUMN, "speed-up"]] * 4
    assert [r["method"] for r in table.rows] == [  # as the legend names them
        "#2 SGD B=16 ⚠", "#1 DiveBatch (delta=0.1)", "#4 AdaBatch", "#3 SGD B=256"]
    assert table.rows[0][target_table.TIME_COLUMN] == "1.00 s (epoch 1)"
    assert table.rows[0]["speed-up"] == "1.00x (baseline)"
    assert table.rows[2]["speed-up"] == "2.50x"     # AdaBatch 0.4 s
    assert table.winner == 3                        # SGD large: 0.3 s (epoch 3)
    for row in table.rows + table.details:
        assert all(isinstance(v, str) and v != "None" for v in row.values())
    assert "35.0 points below its best" in table.details[0]["note"]
    assert "⚠" in table.details[1]["speed-up to own-1pt"]  # baseline flagged
    assert table.verdict.startswith("#3 SGD B=256 was first to 69.0 %, in 0.30 s")
    assert "#1 DiveBatch (delta=0.1) reached 69.0 % in 1.0 s, about as soon as" in table.verdict


def test_unreached_and_empty_runs_read_as_words():
    table = target_table.build([run(2, "sgd"), run(1, "divebatch")],
                               {2: recs([0.9], [1.0]), 1: []})
    assert table.rows[1][target_table.TIME_COLUMN] == "not reached"
    assert table.rows[1]["speed-up"] == target_table.MISSING
    assert "never reached" in table.verdict


# --- the verdict rules, on stored runs built for each case (docs/user-guide.md, "Verdicts")

@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.db")


def stored(store, method, accs, times, steps, sizes, status="completed", losses=None,
           **fields):
    """A stored run of the 4-class problem (unless `fields` say otherwise) with these epochs:
    validation accuracy, training seconds, cumulative optimizer steps, batch size."""
    config = {"problem": "classification", "epochs": len(accs), "batch_size": 16,
              "max_batch_size": 256, "method": method, "delta": 0.1, **fields}
    run_id = store.create_run(config, status="running")
    for epoch, (acc, seconds, step, size) in enumerate(zip(accs, times, steps, sizes), 1):
        store.append_record(run_id, {
            "epoch": epoch, "step": step, "samples_seen": 100 * epoch, "train_time": seconds,
            "batch_size": size, "next_batch_size": size, "val_acc": acc,
            "val_loss": losses[epoch - 1] if losses else 1.0 - acc})
    if status != "running":
        store.mark_finished(run_id, status)
    return run_id


def table_of(store, ids):
    return target_table.build([store.get_run(i) for i in ids], store.records_many(ids))


def test_runs_of_different_problems_get_no_shared_star_speedup_or_verdict(store):
    ids = [stored(store, "sgd", [0.5, 0.8, 0.9], [1, 1, 1], [100, 200, 300], [16] * 3),
           stored(store, "divebatch", [0.6, 0.85, 0.895], [0.5] * 3, [100, 150, 175],
                  [16, 64, 128]),
           stored(store, "sgd", [None] * 3, [0.05] * 3, [10, 20, 30], [32] * 3,
                  losses=[0.5, 0.2, 0.1], problem="least_squares", batch_size=32)]
    table = table_of(store, ids)
    assert table.winner is None  # no star across problems
    assert [(r["method"], r["speed-up"]) for r in table.rows] == [
        ("classification · #1 SGD B=16", "1.00x (baseline)"),
        ("classification · #2 DiveBatch (delta=0.1) [B 16 -> 128]", "2.00x"),
        ("least_squares · #3 SGD B=32", target_table.MISSING)]  # alone: no speed-up
    assert table.rows[2]["final accuracy"] == target_table.MISSING
    assert table.rows[2]["final val loss"] == "0.1"
    assert table.verdict == (
        "These runs are of different problems or data, which do not compare: classification "
        "(runs 1, 2) and least_squares (run 3). No speed-up, star or verdict crosses them. "
        "classification: #2 DiveBatch (delta=0.1) [B 16 -> 128] was first to 88.5 %, in 1.5 s, "
        "2.0x sooner than #1 SGD B=16, and ended 0.5 points lower. #1 SGD B=16 reached 89.0 % "
        "(its final accuracy less 1 point) in 3.0 s and 300 steps; #2 DiveBatch (delta=0.1) "
        "[B 16 -> 128] in the same epoch as it reached 88.5 % (175 steps).")  # said once
    assert table.caption.startswith("classification: Common target: 88.5 %")
    assert "least_squares: Common target: a validation loss of 0.105" in table.caption


def test_the_same_problem_with_other_data_does_not_compare_either(store):
    ids = [stored(store, "sgd", [0.5, 0.9], [1, 1], [10, 20], [16] * 2),
           stored(store, "divebatch", [0.5, 0.9], [1, 1], [10, 20], [16] * 2, noise=0.3)]
    table = table_of(store, ids)
    assert table.winner is None
    assert table.verdict == (
        "These runs are of different problems or data, which do not compare: classification "
        "(noise=0.1) (run 1) and classification (noise=0.3) (run 2). No speed-up, star or "
        "verdict crosses them.")


FOUR_CLASS_RACE = [  # method, accuracies, seconds, steps, batch sizes, fields
    ("sgd", [0.80, 0.90, 0.95], [2, 2, 2], [400, 800, 1200], [16] * 3, {}),
    ("divebatch", [0.70, 0.88, 0.92], [1, 1, 1], [400, 450, 462], [16, 128, 541], {}),
    ("adabatch", [0.85, 0.93, 0.94], [0.8] * 3, [400, 600, 700], [16, 32, 64], {}),
    ("sgd", [0.60, 0.68, 0.70], [0.1] * 3, [25, 50, 75], [256] * 3, {"batch_size": 256})]


def test_the_verdict_names_the_best_method_whoever_it_is(store):
    ids = [stored(store, m, a, t, s, b, **f) for m, a, t, s, b, f in FOUR_CLASS_RACE]
    table = table_of(store, ids)
    assert [r["method"] for r in table.rows] == [
        "#1 SGD B=16", "#2 DiveBatch (delta=0.1) [B 16 -> 541]", "#3 AdaBatch [B 16 -> 64]",
        "#4 SGD B=256"]
    assert table.winner == 3
    # common target: lowest best (SGD large, 70 %) - 1 point = 69 %
    assert table.verdict == (  # all three in their first epoch: no "did better ... sooner"
        "#4 SGD B=256 was first to 69.0 %, in 0.30 s, 6.7x sooner than #1 SGD B=16, and ended "
        "25.0 points lower. #2 DiveBatch (delta=0.1) [B 16 -> 541] reached 69.0 % in 1.0 s, "
        "2.0x sooner than #1 SGD B=16, and ended 3.0 points lower. #1 SGD B=16, #2 DiveBatch "
        "(delta=0.1) [B 16 -> 541] and #3 AdaBatch [B 16 -> 64] reached 69.0 % in their first "
        "epoch, so their times compare what one epoch cost each, not how the methods train: a "
        "target this easy does not separate them. #1 SGD B=16 ended highest, at 95.0 %. "
        "#1 SGD B=16 reached 94.0 % (its final accuracy less 1 point) in 6.0 s and 1200 steps; "
        "#3 AdaBatch [B 16 -> 64] in 2.4 s and 700 steps (2.5x sooner); #2 DiveBatch "
        "(delta=0.1) [B 16 -> 541] and #4 SGD B=256 never reached 94.0 %.")


def test_while_a_run_goes_the_verdict_says_so_far_and_claims_no_final(store):
    ids = [stored(store, "sgd", [0.50, 0.60], [1, 1], [100, 200], [16] * 2,
                  status="running", epochs=30),
           stored(store, "divebatch", [0.55, 0.62, 0.646], [0.5] * 3, [100, 150, 175],
                  [16, 32, 64], status="running", epochs=30)]
    table = table_of(store, ids)
    assert table.verdict == (
        "So far (runs still training): #2 DiveBatch (delta=0.1) [B 16 -> 64] was first to "
        "59.0 %, in 1.0 s, 2.0x sooner than #1 SGD B=16, and is 4.6 points higher. #1 SGD B=16 "
        "reached 59.0 % (its latest accuracy less 1 point) in 2.0 s and 200 steps; "
        "#2 DiveBatch (delta=0.1) [B 16 -> 64] in 150 steps, as above.")
    assert "ended" not in table.verdict


def test_one_finished_run_beside_a_running_one_is_still_so_far(store):
    ids = [stored(store, "sgd", [0.80, 0.90, 0.95], [2, 2, 2], [400, 800, 1200], [16] * 3),
           stored(store, "sgd", [0.60, 0.65], [0.1] * 2, [25, 50], [256] * 2,
                  status="running", batch_size=256, epochs=3)]
    table = table_of(store, ids)
    assert table.verdict == (
        "So far (runs still training): #2 SGD B=256 was first to 64.0 %, in 0.20 s, 10.0x "
        "sooner than #1 SGD B=16, and is 30.0 points lower. #1 SGD B=16 reached 94.0 % (its "
        "final accuracy less 1 point) in 6.0 s and 1200 steps; #2 SGD B=256 has not reached "
        "94.0 % yet.")


def test_a_common_target_near_chance_is_flagged_before_anything_else(store):
    logistic = {"problem": "logistic"}
    ids = [stored(store, "sgd", [0.6, 0.8, 0.9], [1, 1, 1], [10, 20, 30], [16] * 3,
                  **logistic),
           stored(store, "divebatch", [0.7, 0.85, 0.9], [0.5] * 3, [10, 15, 18],
                  [16, 32, 64], **logistic),
           stored(store, "sgd", [0.51, 0.535, 0.52], [0.1] * 3, [1, 2, 3], [256] * 3,
                  batch_size=256, **logistic)]  # never learns: best 53.5 %
    table = table_of(store, ids)
    assert table.verdict.startswith(
        "⚠ The common target, 52.5 %, is near chance (50.0 % on a 2-class problem), so "
        "reaching it does not separate learning from guessing: #3 SGD B=256 set it, its best "
        "accuracy being 53.5 %. Compare the final accuracies. #3 SGD B=256 was first to "
        "52.5 %, in 0.20 s")
    assert table.verdict.endswith(
        "#1 SGD B=16 reached 89.0 % (its final accuracy less 1 point) in 3.0 s and 30 steps; "
        "#2 DiveBatch (delta=0.1) [B 16 -> 64] in 1.5 s and 18 steps (2.0x sooner); #3 SGD "
        "B=256 never reached 89.0 %.")


def test_details_say_how_much_of_a_run_was_measuring():
    measured = [{**r, "diversity": 0.1, "measure_time": 0.25} for r in recs([0.6, 0.9], [1, 1])]
    table = target_table.build([run(1, "divebatch"), run(2, "sgd")],
                               {1: measured, 2: recs([0.6, 0.9], [1, 1])})
    by_run = {row["run"]: row[target_table.MEASURING_COLUMN] for row in table.details}
    assert by_run == {"1": "0.50 s (25 %)", "2": "0.00 s (0 %)"}


def test_the_verdict_names_each_run_as_the_legend_does(store):
    """Two DiveBatch runs of one delta: the legend said '#2 DiveBatch (delta=0.1)' and '#3
    ...', the verdict and table 'DiveBatch (B 8 -> 2048)' and 'DiveBatch (B 8 -> 1542)'."""
    from divebatch.report.run_labels import labelled_with_hot_values
    ids = [stored(store, "sgd", [0.5, 0.8, 0.9], [1, 1, 1], [10, 20, 30], [8] * 3),
           stored(store, "divebatch", [0.6, 0.85, 0.9], [0.5] * 3, [10, 15, 18], [8, 64, 2048]),
           stored(store, "divebatch", [0.6, 0.8, 0.89], [0.6] * 3, [10, 15, 18], [8, 64, 1542])]
    table = table_of(store, ids)
    for run_id, path in zip(ids[1:], ("[B 8 -> 2048]", "[B 8 -> 1542]")):
        legend = labelled_with_hot_values(store.get_run(run_id), store.records(run_id), [])
        assert legend == f"#{run_id} DiveBatch (delta=0.1)"
        assert f"{legend} {path}" in table.verdict
        assert f"{legend} {path}" in [row["method"] for row in table.rows]
    assert "DiveBatch (B" not in table.verdict
    # a delta changed while the run trained, and one sent while it waits (no record yet)
    store.add_event(ids[2], "hot_change", "changed delta=0.5", epoch=3,
                       payload={"delta": 0.5})
    events = {run_id: store.events(run_id) for run_id in ids}
    changed = target_table.build([store.get_run(i) for i in ids], store.records_many(ids),
                                 events_by_run=events)
    assert f"#{ids[2]} DiveBatch (delta=0.1 -> 0.5) [B 8 -> 1542]" in changed.verdict


def test_a_stopped_run_is_named_and_never_ranked_as_finished(store):
    """Stopped at epoch 2 of 10 with a low accuracy: it set a common target so low that it
    was 'first, 2.1x sooner'; now the finished runs set it, and the verdict says it stopped."""
    ids = [stored(store, "sgd", [0.6, 0.8, 0.9], [1, 1, 1], [10, 20, 30], [16] * 3),
           stored(store, "divebatch", [0.55, 0.62], [0.4] * 2, [10, 15], [16, 32],
                  status="stopped", epochs=10),
           stored(store, "adabatch", [0.7, 0.85, 0.88], [0.8] * 3, [10, 15, 18], [16, 32, 64])]
    table = table_of(store, ids)
    assert round(table.common, 4) == 0.87  # the finished runs' lowest best, less 1 point
    dive = f"#{ids[1]} DiveBatch (delta=0.1) [B 16 -> 32]"
    assert table.verdict.startswith(
        f"Ended early: {dive} stopped at epoch 2 of 10. It is compared only up to where it "
        f"stopped. #{ids[2]} AdaBatch [B 16 -> 64] was first to 87.0 %")
    assert f"{dive} had not reached 87.0 % when it was stopped." in table.verdict
    assert "highest" in table.verdict and f"{dive} ended" not in table.verdict
    assert table.rows[1]["final accuracy"] == "62.0 % (stopped, epoch 2/10)"
    assert table.verdict_lead.startswith(f"Ended early: {dive} stopped at epoch 2 of 10.")
