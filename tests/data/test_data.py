import pytest
import torch

from divebatch.config import RunConfig
from divebatch.data.problem import correct_predictions, per_sample_loss
from divebatch.data.problems import SYNTHETIC_DEFAULTS, load_problem


@pytest.mark.parametrize("problem,task", [("least_squares", "regression"),
                                          ("logistic", "binary"), ("sine", "regression"),
                                          ("classification", "multiclass")])
def test_synthetic_shapes_tasks_and_split(problem, task):
    data = load_problem(RunConfig(problem=problem, n_samples=500, dim=12), "cpu")
    assert data.task == task
    assert data.x_train.shape == (400, 12) and data.x_val.shape == (100, 12)
    assert data.y_train.shape == (400,)
    assert data.x_train.dtype == torch.float32


def test_default_sizes_match_the_issue():
    assert SYNTHETIC_DEFAULTS["least_squares"] == (10_000, 400)
    assert SYNTHETIC_DEFAULTS["logistic"] == (20_000, 512)
    data = load_problem(RunConfig(problem="least_squares"), "cpu")
    assert data.n_train + len(data.y_val) == 10_000 and data.x_train.shape[1] == 400


def test_seeded_and_different_across_seeds():
    a = load_problem(RunConfig(problem="sine", n_samples=300, seed=1), "cpu")
    b = load_problem(RunConfig(problem="sine", n_samples=300, seed=1), "cpu")
    c = load_problem(RunConfig(problem="sine", n_samples=300, seed=2), "cpu")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, c.x_train)


def test_train_and_validation_do_not_overlap():
    data = load_problem(RunConfig(problem="classification", n_samples=400, dim=6), "cpu")
    train_rows = {tuple(row.tolist()) for row in data.x_train}
    assert not any(tuple(row.tolist()) in train_rows for row in data.x_val)


def test_classification_is_not_linearly_separable_but_has_all_classes():
    data = load_problem(RunConfig(problem="classification", n_samples=2000), "cpu")
    assert set(data.y_train.tolist()) == {0, 1, 2, 3}
    from sklearn.linear_model import LogisticRegression
    fit = LogisticRegression(max_iter=500).fit(data.x_train.numpy(), data.y_train.numpy())
    assert fit.score(data.x_val.numpy(), data.y_val.numpy()) < 0.9


def test_digits_is_real_and_offline():
    data = load_problem(RunConfig(problem="digits"), "cpu")
    assert data.x_train.shape[1:] == (1, 8, 8) and data.n_outputs == 10
    assert data.n_train + len(data.y_val) == 1797
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0


def test_losses_are_per_sample_and_accuracy_counts():
    outputs = torch.tensor([[2.0, -1.0], [0.0, 3.0], [1.0, 0.5]])
    targets = torch.tensor([0, 1, 1])
    losses = per_sample_loss("multiclass")(outputs, targets)
    assert losses.shape == (3,)
    assert int(correct_predictions("multiclass", outputs, targets)) == 2
    regression = per_sample_loss("regression")(torch.tensor([[1.0], [3.0]]),
                                               torch.tensor([0.0, 1.0]))
    assert torch.allclose(regression, torch.tensor([0.5, 2.0]))
    assert correct_predictions("regression", outputs, targets) is None
    binary = correct_predictions("binary", torch.tensor([[1.0], [-2.0]]), torch.tensor([1.0, 1.0]))
    assert int(binary) == 1
