import dataclasses
import doctest
import math

import pytest
from hypothesis import given, settings, strategies as st

from divebatch import config as config_module
from divebatch.config import (ALLOWED_MODELS, DEFAULT_MODEL, HOT_FIELDS, PACE_FIELDS, PROBLEMS,
                              RunConfig, allowed_range, cap_follows_sgd_batch,
                              check_hot_change, config_fields, method_uses)


def test_defaults_are_valid():
    RunConfig().validate()


def test_every_problem_default_model_is_allowed():
    for problem in PROBLEMS:
        assert DEFAULT_MODEL[problem] in ALLOWED_MODELS[problem]
        RunConfig(problem=problem).validate()


def test_validate_lists_every_bad_field_at_once():
    with pytest.raises(ValueError) as info:
        RunConfig(epochs=0, lr=-1.0, method="adam").validate()
    lines = str(info.value).splitlines()
    assert [line.split()[0] for line in lines] == ["method", "epochs", "lr"]
    assert "epochs should be an int >= 1" in lines[1] and "got epochs=0" in lines[1]


@pytest.mark.parametrize("field,value", [
    ("lr", math.nan), ("lr", math.inf), ("delta", 0.0), ("momentum", 1.0),
    ("batch_size", 0), ("batch_size", 2.5), ("batch_size", True), ("epochs", "3"),
    ("augment", 1), ("device", "tpu"), ("lr_scaling", "cubic"), ("schedule", "poly"),
    ("weight_decay", -0.1), ("seed", -1), ("name", "x" * 5000),
])
def test_bad_values_name_the_field_and_range(field, value):
    with pytest.raises(ValueError) as info:
        RunConfig(**{field: value}).validate()
    message = str(info.value)
    assert message.startswith(f"{field} should be ")
    assert f"got {field}=" in message


def test_cross_field_rules():
    with pytest.raises(ValueError, match="max_batch_size should be an int >= batch_size"):
        RunConfig(batch_size=64, max_batch_size=32).validate()
    with pytest.raises(ValueError, match="min_batch_size should be an int <= batch_size"):
        RunConfig(batch_size=64, min_batch_size=128).validate()
    with pytest.raises(ValueError, match="model should be one of auto, mlp for problem sine"):
        RunConfig(problem="sine", model="cnn").validate()


def test_sgd_b_max_follows_a_larger_batch_unless_the_user_gave_it():
    """SGD never reads B_max: the default 1024 must not refuse a batch of 2048."""
    follows = cap_follows_sgd_batch(RunConfig(method="sgd", batch_size=2048), cap_given=False)
    assert (follows.batch_size, follows.max_batch_size) == (2048, 2048)
    follows.validate()
    given = RunConfig(method="sgd", batch_size=2048, max_batch_size=1024)
    assert cap_follows_sgd_batch(given, cap_given=True) is given
    with pytest.raises(ValueError, match="max_batch_size should be an int >= batch_size"):
        given.validate()
    for method in ("divebatch", "adabatch"):  # they read B_max: a conflict stays one
        adaptive = RunConfig(method=method, batch_size=2048)
        assert cap_follows_sgd_batch(adaptive, cap_given=False) is adaptive
    mistyped = RunConfig(method="sgd", batch_size="2048")  # left for validate to name
    assert cap_follows_sgd_batch(mistyped, cap_given=False) is mistyped


def test_dict_round_trip_and_unknown_fields():
    config = RunConfig(problem="digits", delta=0.5, seed=3)
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown config field"):
        RunConfig.from_dict({"problem": "digits", "learning_rate": 0.1})


def test_every_field_has_help_and_a_range():
    for f in config_fields():
        assert f.metadata["help"]
        assert allowed_range(f)


def _field_values(f: dataclasses.Field):
    anything = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
    return anything


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fuzzed_fields_either_validate_or_name_the_field(data):
    f = data.draw(st.sampled_from(config_fields()))
    value = data.draw(_field_values(f))
    config = RunConfig(**{f.name: value})
    try:
        config.validate()
    except ValueError as error:
        assert f.name in str(error)
    else:
        assert getattr(config, f.name) == value or value != value


def test_method_uses_names_the_fields_each_method_reads():
    hot = {method: [name for name in HOT_FIELDS if method_uses(method, name)]
           for method in ("divebatch", "adabatch", "sgd")}
    assert hot == {"divebatch": ["delta", "max_batch_size", "resize_every", "lr_multiplier"],
                   "adabatch": ["max_batch_size", "resize_every", "lr_multiplier"],
                   "sgd": ["lr_multiplier"]}
    assert method_uses("adabatch", "adabatch_factor") and not method_uses("divebatch",
                                                                          "adabatch_lr_decay")
    assert method_uses("sgd", "lr") and method_uses("sgd", "epochs")


def test_a_hot_change_is_checked_by_name_and_value():
    config = RunConfig(batch_size=32, max_batch_size=256)
    changed = check_hot_change(config, {"delta": 0.5, "max_batch_size": 512})
    assert (changed.delta, changed.max_batch_size) == (0.5, 512) and config.delta == 0.1
    with pytest.raises(ValueError, match="hot parameters are .*, but got epochs, seed"):
        check_hot_change(config, {"seed": 1, "epochs": 3, "delta": 0.5})
    with pytest.raises(ValueError, match=r"max_batch_size should be an int >= batch_size \(32\)"):
        check_hot_change(config, {"max_batch_size": 16})
    with pytest.raises(ValueError, match="lr_multiplier should be a float > 0"):
        check_hot_change(config, {"lr_multiplier": 0.0})


def test_a_pace_is_checked_as_a_hot_change_of_its_own_field():
    assert check_hot_change(RunConfig(), {"pace_s": 2.0}, fields=PACE_FIELDS).pace_s == 2.0
    with pytest.raises(ValueError, match="pace_s should be"):
        check_hot_change(RunConfig(), {"pace_s": -1.0}, fields=PACE_FIELDS)
    with pytest.raises(ValueError, match="hot parameters are pace_s, but got delta"):
        check_hot_change(RunConfig(), {"delta": 0.5}, fields=PACE_FIELDS)


def test_the_module_examples_run():
    assert doctest.testmod(config_module).failed == 0


def test_sgd_above_the_default_cap_built_in_python_is_told_what_to_set():
    with pytest.raises(ValueError, match=r"^max_batch_size should be an int >= batch_size "
                       r"\(2048\), but got max_batch_size=1024 \(SGD never reads it: set it "
                       r"to 2048\)$"):
        RunConfig(method="sgd", batch_size=2048).validate()
    RunConfig(method="sgd", batch_size=2048, max_batch_size=2048).validate()
    with pytest.raises(ValueError, match=r"max_batch_size=1024$"):  # read by DiveBatch
        RunConfig(method="divebatch", batch_size=2048).validate()
