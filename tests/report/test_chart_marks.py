"""divebatch.report.chart_marks: what the charts draw over their lines (more in test_plots,
through figures)."""

from divebatch.report import chart_marks, figures as plots
from divebatch.report.figures import ChartOptions, RunData


def run():
    return {"id": 1, "name": "", "status": "completed",
            "config": {"method": "divebatch", "batch_size": 8, "max_batch_size": 64,
                       "delta": 0.1, "epochs": 3, "problem": "classification"}}


RECORDS = [{"epoch": e, "step": 10 * e, "samples_seen": 80 * e, "train_time": 0.5 * e,
            "wall_time": 0.6 * e, "batch_size": 8 * e, "next_batch_size": 8 * e + 8,
            "lr": 0.1, "diversity": 0.1 * e, "probe_diversity": 0.1 * e, "train_loss": 1 / e,
            "val_loss": 1.1 / e, "val_acc": 0.3 * e, "delta": 0.1, "max_batch_size": 64}
           for e in (1, 2, 3)]


def test_a_hot_change_label_sits_above_the_plot_area_and_hides_no_point():
    """'δ 0.5 · B_max 1024 · R 2' at the top of the diversity chart, inside the plot area,
    covered the curve's last points: the labels now sit in the top margin, a row each (up to
    NOTE_ROWS), with the margin grown to hold them and the title pinned above them."""
    events = [{"kind": "hot_change", "epoch": e, "message": "changed",
               "payload": {"delta": d, "max_batch_size": 1024, "resize_every": 2}}
              for e, d in ((2, 0.5), (3, 0.6))]
    specs = plots.figure_specs([RunData(run(), RECORDS, events)], ChartOptions())
    bare = plots.figure_specs([RunData(run(), RECORDS)], ChartOptions())
    for name, chart in specs.items():
        if isinstance(chart, str):
            continue
        layout = chart["layout"]
        notes = layout["annotations"]
        assert [(n["y"], n["yref"], n["yanchor"]) for n in notes] == [
            (1, "y domain", "bottom")] * 2, name  # from the plot area's top edge up
        assert [n["yshift"] for n in notes] == [0, chart_marks.NOTE_ROW_PX]  # a row each
        assert "bgcolor" not in notes[0]  # nothing to hide there
        assert layout["margin"]["t"] == bare[name]["layout"]["margin"]["t"] + 2 * 16
        assert layout["title"]["y"] == 1 and layout["title"]["yanchor"] == "top"
        assert "y" not in bare[name]["layout"]["title"]  # a chart without marks as before
