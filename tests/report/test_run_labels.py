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
        "Ended early: #3 SGD B=8 stopped at epoch 6 of 60; #4 SGD B=16 failed at epoch 1 of "
        "10. Their curves end there, not at a finish.")


def test_the_legend_says_where_a_run_that_ended_early_ended_as_the_verdict_does():
    """A run stopped at epoch 2 of 10 was named in the legend as if it had finished: only the
    verdict above the charts said it stopped. Running and finished runs keep their names."""
    from divebatch.report.figures import RunData, legend_spec
    from divebatch.report.target_table import build

    def run(run_id, status, batch_size):
        return {"id": run_id, "status": status, "info": {"n_train": 100},
                "config": {"method": "sgd", "batch_size": batch_size, "epochs": 10,
                           "problem": "classification"}}

    def records(epochs):
        return [{"epoch": e, "train_time": 1.0, "samples_seen": 100 * e, "batch_size": 8,
                 "val_acc": 0.5 + 0.04 * e, "val_loss": 1.0 / e, "train_loss": 1.0 / e}
                for e in range(1, epochs + 1)]

    runs = [run(1, "completed", 8), run(2, "stopped", 16), run(3, "failed", 32),
            run(4, "running", 64)]
    epochs = {1: 10, 2: 2, 3: 4, 4: 3}
    data = [RunData(r, records(epochs[r["id"]])) for r in runs]
    names = [trace["name"] for trace in legend_spec(data)["data"][:4]]
    assert names == ["#1 SGD B=8", "#2 SGD B=16<br>stopped at epoch 2 of 10",
                     "#3 SGD B=32<br>failed at epoch 4 of 10", "#4 SGD B=64"]
    assert [run_labels.chart_label(d) for d in data] == [  # the traces, for their hover
        "#1 SGD B=8", "#2 SGD B=16", "#3 SGD B=32", "#4 SGD B=64"]
    verdict = build(runs, {d.run["id"]: d.records for d in data}).verdict
    said = "; ".join(name.replace("<br>", " ") for name in names[1:3])
    assert f"Ended early: {said}." in verdict
