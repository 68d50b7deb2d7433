from types import SimpleNamespace

from divebatch.report.reproduce_report import measuring_note


def test_measuring_note_names_the_share_of_time_spent_measuring():
    result = SimpleNamespace(cells={("digits", "divebatch"): {"measure_share": 0.314},
                                    ("convex", "divebatch"): {"measure_share": None}})
    assert measuring_note(result, "digits") == (
        " Measuring diversity took 31 % of DiveBatch's training time (mean over seeds): that "
        "part of its time is the price of the measurement, not of training at its batch sizes.")
    assert measuring_note(result, "convex") == ""
