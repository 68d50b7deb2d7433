import pytest
import torch
from torch import nn

from divebatch.models.registry import SmallCNN, build_model


@pytest.mark.parametrize("name,shape", [("linear", (12,)), ("mlp", (12,)), ("linear", (1, 8, 8)),
                                        ("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)),
                                        ("cnn", (3, 32, 32))])
def test_output_shapes(name, shape):
    model = build_model(name, input_shape=shape, n_outputs=5, hidden=16)
    assert model(torch.zeros(3, *shape)).shape == (3, 5)


def test_cnn_uses_group_norm_by_default_and_batch_norm_on_request():
    assert any(isinstance(m, nn.GroupNorm) for m in SmallCNN(1, 10).modules())
    batch = SmallCNN(1, 10, norm="batch")
    assert any(isinstance(m, nn.BatchNorm2d) for m in batch.modules())


def test_unknown_model_names_the_argument():
    with pytest.raises(ValueError, match="model should be one of"):
        build_model("transformer", input_shape=(3,), n_outputs=1)
