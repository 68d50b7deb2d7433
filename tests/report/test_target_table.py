from divebatch.report import target_table


def recs(accs, times):
    return [{"epoch": i + 1, "train_time": t, "val_acc": a, "val_loss": 1.0 - a,
             "samples_seen": 10 * (i + 1), "next_batch_size": 16, "batch_size": 16}
            for i, (a, t) in enumerate(zip(accs, times))]


def run(run_id, method, batch_size=16):
    return {"id": run_id, "status": "completed",
            "config": {"method": method, "batch_size": batch_size, "max_batch_size": 256}}


RUNS = [run(1, "divebatch"), run(2, "sgd"), run(3, "sgd", 256), run(4, "adabatch")]
RECORDS = {1: recs([0.6, 0.9, 0.92], [0.5, 0.5, 0.5]),     # target 89 %: 1.0 s
           2: recs([0.7, 0.95, 0.60], [1.0, 1.0, 1.0]),    # collapses: flagged
           3: recs([0.5, 0.6, 0.7], [0.1, 0.1, 0.1]),      # never reaches 89 %... best 70
           4: recs([0.8, 0.93, 0.93], [0.4, 0.4, 0.4])}


def test_four_main_columns_no_empty_cells_and_the_winner():
    table = target_table.build(RUNS, RECORDS)
    # common = lowest best (70 %, SGD large) - 1 point = 69 %
    assert round(table.common, 4) == 0.69
    assert [list(r) for r in table.rows] == [
        ["method", "final accuracy", target_table.TIME_COLUMN, "speed-up"]] * 4
    assert [r["method"] for r in table.rows] == [
        "SGD, small batch (B=16) ⚠", "DiveBatch (B=16)", "AdaBatch (B=16)",
        "SGD, large batch (B=256)"]
    assert table.rows[0][target_table.TIME_COLUMN] == "1.00 s (epoch 1)"
    assert table.rows[0]["speed-up"] == "1.00x (baseline)"
    assert table.rows[2]["speed-up"] == "2.50x"     # AdaBatch 0.4 s
    assert table.winner == 3                        # SGD large: 0.3 s (epoch 3)
    for row in table.rows + table.details:
        assert all(isinstance(v, str) and v != "None" for v in row.values())
    assert "35.0 points below its best" in table.details[0]["note"]
    assert "⚠" in table.details[1]["speed-up to own-1pt"]  # baseline flagged
    assert table.verdict.startswith("DiveBatch (B=16) reached 69.0 % in 1.0 s")


def test_unreached_and_empty_runs_read_as_words():
    table = target_table.build([run(2, "sgd"), run(1, "divebatch")],
                               {2: recs([0.9], [1.0]), 1: []})
    assert table.rows[1][target_table.TIME_COLUMN] == "not reached"
    assert table.rows[1]["speed-up"] == target_table.MISSING
    assert "never reached" in table.verdict


def test_details_say_how_much_of_a_run_was_measuring():
    measured = [{**r, "diversity": 0.1, "measure_time": 0.25} for r in recs([0.6, 0.9], [1, 1])]
    table = target_table.build([run(1, "divebatch"), run(2, "sgd")],
                               {1: measured, 2: recs([0.6, 0.9], [1, 1])})
    by_method = {row["method"]: row[target_table.MEASURING_COLUMN] for row in table.details}
    assert by_method["DiveBatch (B=16)"] == "0.50 s (25 %)"
    assert by_method["SGD, small batch (B=16)"] == "0.00 s (0 %)"
