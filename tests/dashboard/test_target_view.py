"""dashboard.target_view: the time-to-target table as a page draws it itself, the same
words and cells as the Streamlit table (dashboard/live.py)."""

from dashboard import target_view
from divebatch.report import target_table

RUNS = [{"id": 1, "status": "running",
         "config": {"method": "sgd", "batch_size": 16, "max_batch_size": 64}},
        {"id": 2, "status": "finished",
         "config": {"method": "divebatch", "batch_size": 16, "delta": 0.1}}]
RECORDS = {1: [{"epoch": 1, "train_time": 2.0, "val_acc": 0.8},
               {"epoch": 2, "train_time": 2.0, "val_acc": 0.9}],
           2: [{"epoch": 1, "train_time": 1.0, "val_acc": 0.9}]}


def test_parts_are_the_tables_cells_as_text_the_winner_starred():
    table = target_table.build(RUNS, RECORDS)
    parts = target_view.parts(table, RUNS)
    assert parts["title"] == "Time to target (★ first to the common target)"
    header, *rows = parts["rows"]
    assert header == list(table.rows[0])
    assert [row[0] for row in rows] == [table.rows[0]["method"], table.rows[1]["method"] + " ★"]
    assert all(isinstance(cell, str) for row in parts["details"] for cell in row)
    assert parts["details"][0] == list(table.details[0])
    assert parts["caption"].startswith(table.caption) and "updated every 5 s" in parts["caption"]
    assert parts["details_caption"] == target_view.DETAILS_CAPTION


def test_the_caption_says_nothing_of_updates_once_no_run_trains():
    finished = [{**run, "status": "finished"} for run in RUNS]
    table = target_table.build(finished, RECORDS)
    assert "updated every" not in target_view.parts(table, finished)["caption"]
