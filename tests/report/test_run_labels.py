"""divebatch.report.run_labels: run names on charts (more in test_plots, through figures)."""

import doctest

from divebatch.report import run_labels


def test_doctests():
    assert doctest.testmod(run_labels).attempted > 0 and doctest.testmod(run_labels).failed == 0


def test_format_value_keeps_text_and_marks_missing():
    assert [run_labels.format_value(v) for v in (0.00625, 16, None, "cosine")] == \
        ["0.00625", "16", "?", "cosine"]
