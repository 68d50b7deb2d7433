"""divebatch.report.figures: the charts, their styles, marks and notes."""

import math

import pytest

from divebatch.report import figures as plots, series, sweep_figures as sweep_plots, tables
from divebatch.report.hot_limits import hot_change_limits
from divebatch.report.log_ticks import log_ticks
from divebatch.report.chart_style import style_of, style_of_variant
from divebatch.report.figures import ChartOptions, RunData
from divebatch.report.series import Columns
from tests.helpers.figure_data import record, run


RECORDS = [record(1), record(2), record(3)]


def test_unknown_chart_options_are_refused():
    with pytest.raises(ValueError, match="x_axis should be one of"):
        ChartOptions(x_axis="minutes")


def test_batch_size_is_a_step_line_from_each_epoch_start():
    fig = plots.batch_size_figure([RunData(run(), RECORDS)], ChartOptions())
    steps = fig.data[0]
    assert steps.line.shape == "hv"
    assert list(steps.x) == [0, 100, 200, 300] and list(steps.y) == [8, 16, 24, 24]
    proposal = fig.data[1]  # DiveBatch only: delta * n * Delta_hat at each epoch end
    assert list(proposal.x) == [100, 200, 300]
    assert list(proposal.y) == pytest.approx([0.1, 0.2, 0.3])


INITIAL = {"epoch": 0, "step": 0, "samples_seen": 0, "train_time": 0.0, "batch_size": 8,
           "lr": 0.1, "probe_diversity": 0.5, "val_loss": 2.3, "val_acc": 0.1, "delta": 0.1,
           "max_batch_size": 64, "resize_every": 1, "lr_multiplier": 1.0}


def started(records, **config):
    """A run whose trainer measured its starting point (ChartInstruments.initial)."""
    data = run(**config)
    return RunData({**data, "info": {**data["info"], "initial": INITIAL}}, records)


def test_a_measured_start_is_drawn_at_zero_before_the_first_epoch():
    charts = plots.figures([started([])], ChartOptions())
    assert set(charts) == {"diversity", "batch_size", "lr", "loss", "val_acc", "effective_lr"}
    assert list(charts["diversity"].data[0].x) == [0] and charts["diversity"].data[0].y[0] == 0.5
    assert list(charts["val_acc"].data[0].y) == [10.0]
    validation, train = charts["loss"].data
    assert list(validation.y) == [2.3] and math.isnan(train.y[0])  # no training loss yet
    assert charts["batch_size"] == "Batch size: 8 in every epoch of every run shown."
    grown = plots.figures([started(RECORDS)], ChartOptions(x_axis="epoch"))
    assert list(grown["val_acc"].data[0].x) == [0, 1, 2, 3]
    assert list(grown["batch_size"].data[0].x) == [0, 0, 1, 2, 3]
    assert tables.run_row(started(RECORDS).run, RECORDS)["epochs"] == "3/3"  # charts only


def test_sgd_has_no_proposal_line():
    fig = plots.batch_size_figure([RunData(run(method="sgd"), RECORDS)], ChartOptions())
    assert len(fig.data) == 1


def test_each_method_has_its_own_colour_and_dash_on_every_chart():
    data = [RunData(run(1), RECORDS), RunData(run(2, method="sgd"), RECORDS),
            RunData(run(3, method="adabatch"), RECORDS)]
    fig = plots.loss_figure(data, ChartOptions(x_axis="epoch", log_y=True))
    styles = [(trace.line.color, trace.line.dash) for trace in fig.data]
    divebatch, sgd_small, adabatch = (style_of({"method": m, "batch_size": 8,
                                                "max_batch_size": 64})
                                      for m in ("divebatch", "sgd", "adabatch"))
    assert styles == [divebatch] * 2 + [sgd_small] * 2 + [adabatch] * 2  # val + train
    assert divebatch[0] != adabatch[0] and divebatch[1] != adabatch[1]
    assert [t.line.width for t in fig.data[:2]] == [2.5, 1.2]  # validation thick, train thin
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.xaxis.title.text == "epochs"
    assert "%{y" in fig.data[0].hovertemplate
    assert "<br>epochs: %{x" in fig.data[0].hovertemplate  # the hover names x as its axis does
    batch = plots.batch_size_figure(data, ChartOptions())
    assert all("<br>examples seen: %{x" in trace.hovertemplate for trace in batch.data)
    assert (batch.data[0].line.color, batch.data[0].line.dash) == divebatch
    assert not fig.layout.showlegend and not batch.layout.showlegend  # one shared legend


def test_a_second_run_of_a_method_gets_another_shade_and_the_same_dash():
    data = [RunData(run(1), RECORDS), RunData(run(2), RECORDS)]
    first, second = plots.lr_figure(data, ChartOptions()).data
    assert first.line.color != second.line.color and first.line.dash == second.line.dash


def test_shared_legend_names_every_run_and_the_train_loss_key():
    data = [RunData(run(1), RECORDS), RunData(run(2, method="sgd"), RECORDS)]
    legend = plots.legend_figure(data)
    names = [trace.name for trace in legend.data]
    assert names[:2] == ["#1 DiveBatch (delta=0.1)", "#2 SGD B=8"]
    assert "thin: train loss" in names and "shaded: capped at B_max" in names
    assert legend.layout.showlegend and not legend.layout.xaxis.visible


def test_projector_charts_are_lower_with_larger_type():
    data = [RunData(run(), RECORDS)]
    wall = plots.figures(data, ChartOptions())["loss"]
    projector = plots.figures(data, ChartOptions(projector=True))["loss"]
    assert (wall.layout.height, projector.layout.height) == (320, 204)
    assert projector.layout.font.size > wall.layout.font.size
    assert projector.layout.title.font.size > wall.layout.title.font.size
    diversity = plots.figures(data, ChartOptions(projector=True))["diversity"]
    assert diversity.layout.title.text == "Gradient diversity"  # no "(fixed probe ...)"
    assert not diversity.layout.yaxis.title.text
    legend_font = [plots.legend_spec(data, ChartOptions(projector=on))["layout"]["legend"]
                   ["font"]["size"] for on in (False, True)]
    assert legend_font[1] > legend_font[0]


def test_constant_learning_rate_collapses_to_a_note():
    charts = plots.figures([RunData(run(), RECORDS)], ChartOptions())
    assert charts["lr"] == "Learning rate: 0.1 in every epoch of every run shown."
    changing = [record(1), record(2, lr=0.05)]
    assert not isinstance(plots.figures([RunData(run(), changing)], ChartOptions())["lr"], str)


def test_effective_lr_chart_is_lr_over_b_as_steps_on_a_log_axis():
    small = [record(1, batch_size=16, lr=0.1), record(2, batch_size=16, lr=0.1)]
    grown = [record(1, batch_size=16, lr=0.1), record(2, batch_size=64, lr=0.1)]
    figure = plots.figures([RunData(run(1, method="sgd"), small), RunData(run(2), grown)],
                           ChartOptions(x_axis="epoch"))["effective_lr"]
    assert figure.layout.yaxis.type == "log"
    sgd, dive = figure.data
    assert list(sgd.x) == [0, 1, 2] and list(sgd.y) == pytest.approx([0.00625] * 3)
    assert list(dive.y) == pytest.approx([0.00625, 0.0015625, 0.0015625])  # B x4: LR / 4
    assert dive.line.shape == "hv"
    assert "Seesaw" in plots.CHART_NOTES["effective_lr"]


def test_a_constant_effective_lr_collapses_to_a_note():
    records = [record(1, batch_size=16), record(2, batch_size=16)]  # lr 0.1
    charts = plots.figures([RunData(run(), records)], ChartOptions())
    assert charts["effective_lr"] == \
        "Effective learning rate LR / B: 0.00625 in every epoch of every run shown."


def test_batch_size_chart_shades_the_epochs_capped_at_b_max():
    records = [record(1, batch_size=16), record(2, batch_size=64), record(3, batch_size=64)]
    assert plots.capped_spans(Columns(records), {}, "epoch") == [(1, 3)]
    fig = plots.batch_size_figure([RunData(run(), records)], ChartOptions(x_axis="epoch"))
    [band] = [s for s in fig.layout.shapes if s.type == "rect"]
    assert (band.x0, band.x1) == (1, 3)
    assert not fig.layout.annotations  # the legend names the band: no words over the lines
    sgd_large = run(method="sgd", batch_size=64)  # always at B_max: nothing to point out
    fig = plots.batch_size_figure([RunData(sgd_large, records)], ChartOptions())
    assert not fig.layout.shapes


def test_long_traces_are_thinned_but_keep_every_batch_size_change():
    records = [record(e, batch_size=8 * 2 ** (e // 300), val_loss=1.0 + (e == 777))
               for e in range(1, 2001)]
    fig = plots.batch_size_figure([RunData(run(max_batch_size=10**6), records)],
                                  ChartOptions(x_axis="epoch"))
    steps = fig.data[0]
    assert len(steps.x) <= 520
    changes = [(x, y) for x, y, y_next in zip(steps.x, steps.y, steps.y[1:]) if y != y_next]
    assert [x for x, _ in changes] == [298, 598, 898, 1198, 1498, 1798]
    loss = plots.loss_figure([RunData(run(), records)], ChartOptions(x_axis="epoch")).data[0]
    assert len(loss.x) <= 520 and 2.0 in list(loss.y)  # the spike survives


def test_accuracy_in_percent_and_never_log():
    fig = plots.accuracy_figure([RunData(run(), RECORDS)], ChartOptions(log_y=True))
    assert list(fig.data[0].y) == pytest.approx([60.0, 70.0, 80.0])
    assert fig.layout.yaxis.type == "linear"


def test_accuracy_chart_only_for_classification():
    regression = [record(e, val_acc=None) for e in (1, 2)]
    assert "val_acc" not in plots.figures([RunData(run(), regression)], ChartOptions())
    assert set(plots.figures([RunData(run(), RECORDS)], ChartOptions())) == set(plots.CHARTS)


def test_smoothing_and_diversity_view_reach_the_figure():
    options = ChartOptions(diversity_view="bound", smoothing=0.5)
    fig = plots.diversity_figure([RunData(run(), RECORDS)], options)
    assert list(fig.data[0].y) == pytest.approx(series.ema([1.0, 2.0, 3.0], 0.5))
    assert "Yin" in fig.layout.yaxis.title.text


def test_hot_changes_are_marked_at_their_epoch():
    events = [{"kind": "hot_change", "epoch": 2, "message": "changed delta=0.5",
               "payload": {"delta": 0.5}},
              {"kind": "batch_size", "epoch": 1, "message": "batch size 8 -> 16"}]
    fig = plots.lr_figure([RunData(run(), RECORDS, events)],
                          ChartOptions(x_axis="train_time"))
    assert [shape.x0 for shape in fig.layout.shapes] == [pytest.approx(1.0)]
    assert fig.layout.annotations[0].text == "δ 0.5"  # short, above the plot area
    assert fig.layout.annotations[0].hovertext == "delta 0.1 → 0.5 at epoch 2"


def test_a_hot_change_of_three_values_is_marked_in_a_few_words():
    """delta 0.02 -> 0.05, B_max 1024 -> 256, R 3 -> 2 in one change: each chart carried the
    whole sentence, cut at its right edge; now the new values alone, the rest on hover."""
    events = [{"kind": "hot_change", "epoch": 2, "message": "changed",
               "payload": {"resize_every": 2, "delta": 0.05, "max_batch_size": 256}}]
    specs = plots.figure_specs([RunData(run(), RECORDS, events)], ChartOptions())
    for name, chart in specs.items():
        if isinstance(chart, str):
            continue
        [note] = chart["layout"]["annotations"]
        assert note["text"] == "δ 0.05 · B_max 256 · R 2", name
        assert len(note["text"]) <= 30 and note["yref"] == "y domain" and note["y"] == 1
        assert note["hovertext"] == ("delta 0.1 → 0.05, max_batch_size 64 → 256, "
                                     "resize_every 1 → 2 at epoch 2")


def test_the_legend_label_follows_a_hot_change():
    after = [record(1), record(2, delta=0.5)]
    assert plots.chart_label(RunData(run(), after)) == "#1 DiveBatch (delta=0.1 -> 0.5)"


def test_the_legend_label_follows_a_hot_change_made_while_paused():
    """delta 0.02 -> 0.3 sent while the run waits after epoch 2: no record has it yet."""
    records = [record(1, delta=0.02), record(2, delta=0.02)]
    events = [{"kind": "paused", "epoch": 2, "message": "paused after epoch 2"},
              {"kind": "hot_change", "epoch": 2, "message": "changed delta=0.3",
               "payload": {"delta": 0.3}}]
    data = RunData(run(delta=0.02), records, events)
    assert plots.chart_label(data) == "#1 DiveBatch (delta=0.02 -> 0.3)"
    legend = plots.legend_spec([data])
    assert legend["data"][0]["name"] == "#1 DiveBatch (delta=0.02 -> 0.3)"
    assert plots.progress(data.run, records,
                          {"epoch": 2, "paused": True}, events)[1].startswith(
        "#1 DiveBatch (delta=0.02 -> 0.3): 2/3 epochs")  # the progress line names it the same
    older = [{**events[1], "epoch": 1, "payload": {"delta": 0.7}}]  # since overridden
    assert plots.chart_label(RunData(run(delta=0.02), records, older)) == (
        "#1 DiveBatch (delta=0.02)")


def test_hot_change_words_never_change_the_x_range():
    """A label at the right edge of a short run: plotly's autorange would widen the axis
    to fit its words; the range is the data's, fixed."""
    events = [{"kind": "hot_change", "epoch": 3, "message": "changed max_batch_size=512",
               "payload": {"max_batch_size": 512, "delta": 0.3, "resize_every": 4}}]
    for axis in ("samples_seen", "train_time", "epoch"):
        spec = plots.figure_specs([RunData(run(), RECORDS, events)],
                                  ChartOptions(x_axis=axis))
        for name, chart in spec.items():
            if isinstance(chart, str):
                continue
            xs = [x for trace in chart["data"] for x in trace["x"] if math.isfinite(x)]
            low, high = chart["layout"]["xaxis"]["range"]
            assert chart["layout"]["xaxis"]["autorange"] is False
            assert low <= min(xs) and max(xs) <= high, name
            assert high - low <= 1.05 * (max(xs) - min(xs)), name


def test_log_axes_label_a_few_ticks_written_out_at_any_range():
    """One tick per decade left a curve from 0.02 to 0.6 with one label (10^-1) and a range
    under a decade with none; plotly's own labels crowd or say a bare '2' for 2000."""
    cosine = [record(e, lr=0.1 * (0.8 + 0.2 * math.cos(e / 4)), diversity=0.02 + 0.05 * e)
              for e in range(1, 13)]
    for projector in (False, True):
        charts = plots.figure_specs([RunData(run(), cosine)],
                                    ChartOptions(log_y=True, projector=projector))
        for name in ("lr", "diversity", "loss", "batch_size"):
            axis = charts[name]["layout"]["yaxis"]
            assert 3 <= len(axis["tickvals"]) <= (5 if projector else 8), name
            assert all(text[0].isdigit() for text in axis["ticktext"]), name
    charts = plots.figure_specs([RunData(run(), cosine)], ChartOptions(log_y=True))
    assert charts["diversity"]["layout"]["yaxis"]["ticktext"] == ["0.1", "0.2", "0.5"]
    assert charts["lr"]["layout"]["yaxis"]["ticktext"] == ["0.06", "0.07", "0.08", "0.09",
                                                           "0.1"]  # 0.1 to 0.06
    flat = [record(e, lr=0.1, val_loss=0.5, train_loss=0.5) for e in (1, 2)]
    axis = plots.figure_specs([RunData(run(), flat)], ChartOptions(log_y=True))["loss"][
        "layout"]["yaxis"]
    assert "tickvals" not in axis and axis["nticks"] == 6  # no room for two: plotly's own


def test_log_ticks_write_large_and_small_values_out():
    assert log_ticks(800, 6000)["ticktext"] == ["1000", "2000", "5000"]
    assert log_ticks(20, 3e5)["ticktext"] == ["100", "1000", "10k", "100k"]
    assert log_ticks(2e-5, 1e-3)["ticktext"] == ["3·10⁻⁵", "10⁻⁴", "3·10⁻⁴", "10⁻³"]
    assert log_ticks(1.3e-4, 0.05)["ticktext"] == ["10⁻⁴", "10⁻³", "10⁻²"]  # not 8 crowded
    assert len(log_ticks(1e-9, 1e9)["tickvals"]) <= 8
    assert log_ticks(0.5, 0.5) == {} and log_ticks(0, 1) == {}


def test_progress_says_when_a_run_is_paused():
    fraction, text = plots.progress(run(), RECORDS[:2], {"epoch": 2, "paused": True})
    assert fraction == pytest.approx(2 / 3)
    assert text.endswith("2/3 epochs · paused after epoch 2")


def test_progress_adds_the_live_part_of_the_epoch():
    fraction, text = plots.progress(run(), RECORDS[:1], {"epoch": 2, "batch": 5,
                                                         "n_batches": 10})
    assert fraction == pytest.approx((1 + 0.5) / 3)
    assert "1/3 epochs" in text and "batch 5/10" in text
    assert plots.progress(run(), RECORDS[:1], {"epoch": 1, "batch": 5, "n_batches": 10})[0] \
        == pytest.approx(1 / 3)  # a stale progress row is ignored


def test_png_download_has_a_telling_filename():
    config = plots.png_config("loss", [RunData(run(3), []), RunData(run(4), [])])
    assert config["toImageButtonOptions"] == {"format": "png", "scale": 2,
                                              "filename": "divebatch-loss-runs-3-4"}


def test_hot_change_limits_say_why_a_change_waits():
    config = {"method": "divebatch", "max_batch_size": 64}
    capped = [record(6, batch_size=64, next_batch_size=64, resize_every=3)]
    delta_up = [{"kind": "hot_change", "epoch": 6, "payload": {"delta": 0.5}}]
    notes = hot_change_limits(config, capped, delta_up)
    assert notes[0].startswith("The batch is already at B_max = 64")
    assert notes[1].startswith("The next resize is at the end of epoch 9, 3 epochs away")
    assert hot_change_limits(config, [record(2, batch_size=16, resize_every=1)],
                             delta_up) == []
    assert hot_change_limits({"method": "sgd"}, capped, delta_up) == []
    # R changed to 4 after epoch 6 (no record has it yet): the note uses the new R
    new_r = [{"kind": "hot_change", "epoch": 6, "payload": {"resize_every": 4}}]
    notes = hot_change_limits(config, capped, new_r)
    assert notes == ["The next resize is at the end of epoch 8, 2 epochs away: delta and "
                     "B_max act on the batch size only then."]  # delta unchanged: no cap note


def test_hot_change_limits_say_nothing_before_a_change():
    """A race reaching B_max in the guided tour: nobody changed anything, nothing to explain."""
    config = {"method": "divebatch", "max_batch_size": 64}
    capped = [record(6, batch_size=64, next_batch_size=64, resize_every=3)]
    assert hot_change_limits(config, capped) == []
    lr_only = [{"kind": "hot_change", "epoch": 6, "payload": {"lr_multiplier": 2.0}}]
    assert hot_change_limits(config, capped, lr_only) == []


def test_a_b_max_lowered_under_the_batch_caps_it_from_the_next_epoch():
    """B_max 1024 -> 256 with the batch at 386: it is above the new cap, not 'already at'."""
    config = {"method": "divebatch", "max_batch_size": 1024, "resize_every": 3}
    records = [record(4, batch_size=386, next_batch_size=386, max_batch_size=1024,
                      resize_every=3)]
    change = [{"kind": "hot_change", "epoch": 4,
               "payload": {"delta": 0.05, "max_batch_size": 256, "resize_every": 2}}]
    assert hot_change_limits(config, records, change) == [
        "The batch (386) is above the new B_max = 256: it is capped at 256 from the next "
        "epoch.",
        "The next resize is at the end of epoch 6, 2 epochs away: delta acts on the batch "
        "size only then."]  # the lowered cap acts at once: only delta waits


def test_a_heatmap_of_one_value_draws_no_colour_scale():
    def cell(name, delta, final):
        return {"cell": name, "label": name, "delta": delta, "max_batch_size": 64,
                "resize_every": 1, "final": final, "final_se": None, "finished": 1,
                "planned": 1}
    cells = [cell("baseline", None, 0.0046), cell("a", 0.1, 0.0046), cell("b", 0.5, None)]
    one = sweep_plots.heatmap(cells, "final", "delta", "max_batch_size", {}, "validation loss")
    assert one.data[0].showscale is False
    cells[2]["final"] = 0.005
    two = sweep_plots.heatmap(cells, "final", "delta", "max_batch_size", {}, "validation loss")
    assert two.data[0].showscale is True


def test_sweep_curves_name_the_metric_once():
    runs = [{"label": "cell · run 1", "records": [record(1)], "method": "divebatch"}]
    titles = [a.text for a in sweep_plots.curves(runs, "validation loss").layout.annotations]
    assert titles[0] == "validation loss vs training time"
    titles = [a.text for a in sweep_plots.curves(runs, "accuracy").layout.annotations]
    assert titles[0] == "validation accuracy vs training time"


def test_sweep_and_reproduce_curves_use_the_method_styles():
    runs = [{"label": "cell · run 1", "records": [record(1)], "method": "divebatch"},
            {"label": "SGD, small batch B0", "records": [record(1)]}]
    styles = {(t.line.color, t.line.dash) for t in sweep_plots.curves(runs).data}
    assert styles == {style_of_variant("divebatch"), style_of_variant("sgd_small")}


def test_a_projectors_legend_stays_three_wide_and_grows_a_line_for_a_two_line_entry():
    names = ["#3 SGD B=8", "#1 DiveBatch (delta=0.1)", "#2 DiveBatch (delta=0.5)",
             "thick: validation loss", "thin: train loss", "dotted: hot change"]
    projector = ChartOptions(projector=True)
    two_rows = plots.legend_height(names, projector)
    ended = [names[0] + "<br>stopped at epoch 7 of 60", *names[1:]]
    assert plots.legend_height(ended, projector) == two_rows + round(1.3 * 17)  # a line more
    wide = ["#12 DiveBatch (delta=0.125 -> 0.5)", *names[1:]]  # plotly puts 2 to a row
    assert plots.legend_height(wide, projector) == two_rows + round(1.7 * 17)  # a row more
