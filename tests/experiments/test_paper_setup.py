"""The paper's setup: its numbers as speed-ups and accuracy changes, the methods' configs."""

import doctest

import pytest

from divebatch.experiments import paper_setup


def test_paper_numbers_as_speedups_and_accuracy_changes():
    assert paper_setup.paper_speedup("CIFAR-10", "divebatch") == pytest.approx(3189 / 638)
    assert paper_setup.paper_speedup("Tiny-ImageNet", "adabatch") == pytest.approx(9703 / 7146)
    assert paper_setup.paper_change("CIFAR-100", "divebatch") == pytest.approx(71.8 - 74.9)


def test_methods_differ_only_in_method_batch_lr_and_scaling():
    fields = paper_setup.BENCHMARKS["digits"].scales["quick"]
    configs = {m: paper_setup.method_config(fields, m, seed=3) for m in paper_setup.METHODS}
    assert {c.seed for c in configs.values()} == {3}
    assert configs["sgd_large_linear"].lr == pytest.approx(fields["lr"] * 512 / 32)
    assert (configs["adabatch_linear"].method, configs["adabatch_linear"].lr_scaling) == \
        ("adabatch", "linear")
    assert configs["divebatch"].name == "DiveBatch seed=3"


def test_doctest():
    assert doctest.testmod(paper_setup).failed == 0
