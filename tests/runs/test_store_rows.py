"""The store's rows: JSON text that keeps NaN, infinities and numpy / torch scalars, and the
one-line errors of what a write must be given."""

import json
import math

import numpy as np
import pytest
import torch

from divebatch.runs import store_rows


def test_json_keeps_nan_infinities_none_and_scalars_with_item():
    text = store_rows.dumps({"a": float("nan"), "b": float("-inf"), "c": None,
                             "d": np.float32(0.5), "e": torch.tensor(3)})
    assert text == '{"a":NaN,"b":-Infinity,"c":null,"d":0.5,"e":3}'
    assert store_rows.dumps_or_none(None) is None
    with pytest.raises(TypeError, match="cannot store a object as JSON"):
        store_rows.dumps(object())
    assert math.isnan(json.loads(text)["a"])


def test_checks_name_the_field_and_what_is_allowed():
    with pytest.raises(ValueError, match="status should be one of a, b, but got status='c'"):
        store_rows.check_choice("status", "c", ("a", "b"))
    with pytest.raises(ValueError, match="record should have an int 'epoch'"):
        store_rows.epoch_of({"epoch": 1.5})
    assert store_rows.epoch_of({"epoch": np.int64(4)}) == 4
    with pytest.raises(TypeError, match="config should be a dict"):
        store_rows.check_config([("seed", 1)])
