"""divebatch.report.series: x axes, smoothing and the diversity readings, against values
worked out by hand."""

import doctest
import math

import numpy as np
import pytest

from divebatch.report import series
from divebatch.report.series import Columns


def record(epoch, **values):
    base = {"epoch": epoch, "step": 10 * epoch, "samples_seen": 100 * epoch,
            "train_time": 0.5, "batch_size": 8 * epoch, "delta": 0.1,
            "diversity": 0.01 * epoch}
    return {**base, **values}


RECORDS = Columns([record(1), record(2), record(3)])


@pytest.mark.parametrize("axis,ends", [("samples_seen", [100, 200, 300]),
                                       ("step", [10, 20, 30]), ("epoch", [1, 2, 3]),
                                       ("train_time", [0.5, 1.0, 1.5])])
def test_epoch_ends_per_axis(axis, ends):
    assert series.epoch_ends(RECORDS, axis) == pytest.approx(ends)
    assert series.epoch_starts(RECORDS, axis) == pytest.approx([0, *ends[:-1]])


def test_unknown_axis_is_refused():
    with pytest.raises(ValueError, match="axis should be one of"):
        series.epoch_ends(RECORDS, "wall_clock")


def test_ema_matches_a_hand_computed_debiased_average():
    assert series.ema([2.0, 4.0, 8.0], 0.0).tolist() == [2.0, 4.0, 8.0]
    smoothed = series.ema([2.0, 4.0, 8.0], 0.5).tolist()
    # s1 = 1, w1 = .5 -> 2; s2 = .5 + 2 = 2.5, w2 = .75 -> 3.333; s3 = 1.25 + 4, w3 = .875
    assert smoothed == pytest.approx([2.0, 2.5 / 0.75, 5.25 / 0.875])


def test_ema_skips_missing_and_non_finite_values():
    smoothed = series.ema([None, 1.0, math.nan, 3.0, math.inf], 0.5)
    assert smoothed[[1, 3]].tolist() == [1.0, pytest.approx((0.25 + 1.5) / 0.75)]
    assert np.isnan(smoothed[[0, 2, 4]]).all()


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 2.0])
def test_ema_refuses_bad_smoothing(smoothing):
    with pytest.raises(ValueError, match="smoothing should be"):
        series.ema([1.0], smoothing)


def test_diversity_views_use_n_train():
    records = Columns([record(1, diversity=0.05), record(2, diversity=None)])
    for view, n_train, first in (("diversity", 100, 0.05), ("bound", 100, 5.0),
                                 ("noise_scale", 100, 4.0), ("bound", None, math.nan)):
        values = series.diversity_values(records, n_train, view)
        assert values.tolist() == [pytest.approx(first, nan_ok=True), pytest.approx(math.nan,
                                                                                    nan_ok=True)]


def test_the_probe_reading_wins_where_the_run_has_one():
    records = Columns([record(1, diversity=0.05, probe_diversity=0.07),
                       record(2, diversity=0.05, probe_diversity=math.inf), record(3)])
    values = series.diversity_values(records, 100, "diversity")
    assert values[0] == 0.07 and np.isnan(values[1]) and values[2] == pytest.approx(0.03)


def test_a_columns_view_reads_missing_and_non_finite_values_as_nan():
    columns = Columns([{"lr": 0.1}, {"lr": None}, {"lr": math.inf}, {}])
    assert columns["lr"][0] == 0.1 and np.isnan(columns["lr"][1:]).all()
    assert columns.present("lr").tolist() == [True, False, True, False]


def test_effective_lr_is_lr_over_batch_size():
    # DiveBatch with no LR rescaling: 0.1 at B = 16, 16, 64, then cosine-like 0.05 at B = 64
    columns = Columns([record(1, lr=0.1, batch_size=16), record(2, lr=0.1, batch_size=16),
                       record(3, lr=0.1, batch_size=64), record(4, lr=0.05, batch_size=64)])
    assert series.effective_lr(columns).tolist() == pytest.approx(
        [0.00625, 0.00625, 0.0015625, 0.00078125])


def test_effective_lr_is_nan_without_a_batch_size_or_lr():
    columns = Columns([record(1, lr=0.1, batch_size=0), record(2, lr=None, batch_size=8),
                       record(3, lr=0.1, batch_size=None)])
    assert np.isnan(series.effective_lr(columns)).all()


def test_proposal_is_delta_times_yins_bound():
    proposed = series.proposals(Columns([record(1, diversity=0.5, delta=0.2)]), 100)
    assert proposed.tolist() == [pytest.approx(10.0)]


def test_doctests():
    assert doctest.testmod(series).attempted > 0 and doctest.testmod(series).failed == 0


def same_columns(columns, oracle, keys):
    for key in keys:
        np.testing.assert_array_equal(columns[key], oracle[key])
        assert columns.present(key).tolist() == oracle.present(key).tolist()


def test_grown_columns_equal_columns_made_afresh():
    records = [record(1, lr=0.1), record(2, lr=None), record(3, lr=math.nan)]
    columns = Columns(records[:2])
    columns["lr"], columns.present("lr"), columns["batch_size"]  # made before the growth
    assert columns.extends(records) and not columns.extends([dict(r) for r in records])
    grown = columns.grown(records)
    same_columns(grown, Columns(records), ["lr", "batch_size", "diversity"])


def test_columns_after_a_starting_point_equal_columns_of_both():
    first, records = {"epoch": 0, "val_loss": 2.3}, [record(1, val_loss=1.0), record(2)]
    joined = Columns(records).after(first)
    assert len(joined) == 3
    same_columns(joined, Columns([first, *records]), ["val_loss", "epoch", "lr"])
