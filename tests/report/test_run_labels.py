"""divebatch.report.run_labels: run names on charts (more in test_plots, through figures)."""

import doctest

from divebatch.report import run_labels


def test_doctests():
    assert doctest.testmod(run_labels).attempted > 0 and doctest.testmod(run_labels).failed == 0


def test_format_value_keeps_text_and_marks_missing():
    assert [run_labels.format_value(v) for v in (0.00625, 16, None, "cosine")] == \
        ["0.00625", "16", "?", "cosine"]


def test_the_note_above_the_charts_names_runs_that_ended_before_their_epochs():
    """A run stopped, interrupted or failed before its planned epochs: its curves end there.
    A failed run was not named at all."""
    runs = [{"id": 3, "status": "stopped", "config": {"method": "sgd", "batch_size": 8,
                                                      "epochs": 60}},
            {"id": 4, "status": "failed", "config": {"method": "sgd", "batch_size": 16,
                                                     "epochs": 10}},
            {"id": 5, "status": "completed", "config": {"method": "sgd", "batch_size": 32,
                                                        "epochs": 2}}]
    records = {3: [{"epoch": e} for e in range(1, 7)], 4: [{"epoch": 1}],
               5: [{"epoch": 1}, {"epoch": 2}]}
    assert run_labels.stopped_note(runs, records, {3: [], 4: [], 5: []}) == (
        "Stopped before the end: #3 SGD B=8 at epoch 6 of 60; #4 SGD B=16 at epoch 1 of 10 "
        "(failed). Their curves end there, not at a finish.")
