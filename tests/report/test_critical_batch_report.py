"""The critical-batch chart and its sentence, on summaries and records written out by hand."""

import re

import pytest

from divebatch.report.critical_batch import critical_batch_sentence, critical_label
from divebatch.report.critical_figure import critical_batch_figure
from divebatch.report.figures import RunData


def summary(epoch, steps_by_batch, noise_scale=None, target=0.5):
    """A checkpoint's summary whose branches took these steps (S = S_min + E_min / B)."""
    from divebatch.experiments.critical_batch import summarize
    rows = [{"epoch": epoch, "batch_size": 0,
             "data": {"loss": 1.0, "target": target, "noise_scale": noise_scale}}]
    rows += [{"epoch": epoch, "batch_size": b, "data": {"batch_size": b, "steps_to_target": s}}
             for b, s in steps_by_batch.items()]
    return summarize(rows)[0]


SIZES = (8, 16, 32, 64, 128, 256)
EARLY = summary(0, {b: 10 * (1 + 16 / b) for b in SIZES}, noise_scale=20.0)   # B_crit 16
LATE = summary(10, {b: 10 * (1 + 64 / b) for b in SIZES}, noise_scale=100.0)  # B_crit 64


def run(run_id, method, batch_sizes, delta=None, diversity=None, **config):
    records = [{"epoch": e + 1, "batch_size": b, "next_batch_size": b, "delta": delta,
                "diversity": diversity, "step_ms": 1.0} for e, b in enumerate(batch_sizes)]
    return RunData({"id": run_id, "name": "", "info": {"n_train": 1000},
                    "config": {"method": method, "batch_size": batch_sizes[0],
                               "max_batch_size": 256, **config}}, records)


def test_labels_say_where_the_critical_batch_lies():
    assert critical_label(EARLY) == "~ 16"
    assert critical_label(summary(0, {8: 100.0, 16: 50.0, 32: 25.0})) == "> 32"
    assert critical_label(summary(0, {8: 9.0, 16: 9.0, 32: 9.0})) == "< 8"
    assert critical_label(summary(0, {}, target=None)) == "no decrease"


def test_the_sentence_names_the_trend_each_batch_and_the_estimates():
    small = run(1, "sgd", [8] * 12)
    large = run(2, "sgd", [256] * 12, max_batch_size=256)
    dive = run(3, "divebatch", [8] * 6 + [32] * 6, delta=0.1, diversity=0.4)  # 0.1*1000*0.4
    text = critical_batch_sentence([EARLY, LATE], [small, large, dive])
    assert "was ~ 16 at epoch 0 and ~ 64 at epoch 10: it grew as the loss fell" in text
    assert "SGD, small batch trained at B = 8 at epoch 10, below it" in text
    assert "SGD, large batch trained at B = 256 at epoch 10, at or above it" in text
    assert "DiveBatch trained at B = 32 at epoch 10, near it" in text
    assert "the noise scale B_simple read 100 (1.6x the measured value)" in text
    assert "DiveBatch's proposal δ·n·Δ̂ was 40 (0.6" in text  # 40 / 64


def test_the_sentence_names_a_peak_in_the_middle():
    peak = summary(5, {b: 10 * (1 + 128 / b) for b in SIZES})  # B_crit 128
    text = critical_batch_sentence([EARLY, peak, LATE], [])
    assert "was ~ 16 at epoch 0, ~ 128 at epoch 5 and ~ 64 at epoch 10: it grew" in text
    assert "(a decaying learning rate lowers it again)" in text


def test_the_sentence_names_the_batches_held_at_their_noise_floor():
    late = summary(20, {64: 30.0, 128: 30.0})
    late["branches"][:0] = [{"batch_size": 16, "steps_to_target": None, "floor": True},
                            {"batch_size": 32, "steps_to_target": None, "floor": True}]
    text = critical_batch_sentence([EARLY, late], [run(1, "sgd", [8] * 21)])
    assert "< 64 at epoch 20" in text
    assert "At epoch 20 batches below 64 could not lower the loss at all" in text


def test_the_sentence_when_steps_never_fall_or_nothing_is_measured():
    flat = summary(0, {8: 9.0, 16: 9.0, 32: 9.0})
    assert "the step size, not the gradient noise, limits progress" in \
        critical_batch_sentence([flat], [run(1, "sgd", [8])])
    stalled = critical_batch_sentence([EARLY, summary(5, {}, target=None),
                                       summary(9, {}, target=None)], [])
    assert "At epochs 5, 9 no batch size lowered the loss by 1 %" in stalled
    assert "no decrease to measure" in critical_batch_sentence(
        [summary(0, {}, target=None)], [run(1, "sgd", [8])])
    assert critical_batch_sentence([], []).startswith("No critical batch size measured yet")


def test_the_figure_draws_every_series_with_the_bound_as_the_marker():
    dive = run(3, "divebatch", [8] * 6 + [32] * 6, delta=0.1, diversity=0.4)
    above = summary(5, {8: 100.0, 16: 50.0, 32: 25.0})
    figure = critical_batch_figure([EARLY, above, LATE], dive, [dive, run(1, "sgd", [8] * 12)])
    by_name = {trace.name: trace for trace in figure.data}
    measured = by_name["critical batch size (measured)"]
    assert list(measured.x) == [0, 5, 10]
    assert list(measured.y) == pytest.approx([16.0, 32.0, 64.0])
    assert list(measured.marker.symbol) == ["circle", "triangle-up", "circle"]
    assert list(by_name["B_simple at the checkpoint"].y) == [20.0, 100.0]
    assert set(by_name["DiveBatch's proposal δ·n·Δ̂"].y) == {40.0}
    assert list(by_name["B_simple = n·Δ̂ − 1 (DiveBatch)"].y) == [399.0] * 12
    assert list(by_name["batch used: SGD, small batch"].y) == [8.0] * 13
    assert figure.layout.yaxis.type == "log"


def test_the_sentence_names_every_plotted_point_in_whole_batches_and_says_nothing_twice():
    # the classification race of the Runs page: < 16, ~ 249, ~ 322 and ~ 69.5 (drawn ~ 70)
    wide = (16, 32, 64, 128, 256, 512, 1024)
    summaries = [summary(0, {b: 9.0 for b in wide})] + [
        summary(epoch, {b: 10 * (1 + crit / b) for b in wide})
        for epoch, crit in ((7, 249.0), (15, 322.0), (22, 69.5))]
    runs = [run(1, "sgd", [16] * 30), run(2, "sgd", [1024] * 30, batch_size=1024,
                                          max_batch_size=1024),
            run(3, "adabatch", [16] * 3 + [1024] * 27, max_batch_size=1024),
            run(4, "divebatch", [16] * 3 + [435] * 27, delta=0.02, diversity=21.8)]
    text = critical_batch_sentence(summaries, runs)
    drawn = critical_batch_figure(summaries, runs[3], runs).data
    labels = next(t for t in drawn if t.name == "critical batch size (measured)").text
    assert list(labels) == ["< 16", "~ 249", "~ 322", "~ 70"]
    assert text.startswith("The measured critical batch size was < 16 at epoch 0, ~ 249 at "
                           "epoch 7, ~ 322 at epoch 15 and ~ 70 at epoch 22: it grew as the "
                           "loss fell, as Merrill et al. found, then fell back")
    assert "69.5" not in text and not re.search(r"B = \d+\.\d", text)
    sentences = re.split(r"(?<=\.) ", text)
    assert len(sentences) == len(set(sentences))
    assert text.count("a larger batch cuts few steps there") == 1
    assert ("At epoch 22 SGD, large batch (B = 1024), AdaBatch (B = 1024) and DiveBatch "
            "(B = 435) trained at or above it: a larger batch cuts few steps" in text)
    assert "SGD, small batch trained at B = 16 at epoch 22, below it" in text
    assert "DiveBatch's proposal δ·n·Δ̂ was 436 (6.3x the measured value)" in text
