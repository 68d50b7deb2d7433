"""Presets, method variants, races and the RunConfig <-> URL query encoding."""

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from divebatch.config import RunConfig, config_fields
from divebatch.links import config_from_query, config_to_query, read_query
from divebatch.presets import (IMAGE_PROBLEMS, PRESETS, SYNTHETIC_PROBLEMS, paper_config,
                               presets_for, race_configs, race_sorted, variant_of,
                               variant_uses, with_variant)
from tests.helpers.dataset_files import make_cifar10_binary

from tests.helpers.cli import cli_in_process


@pytest.mark.parametrize("key", sorted(PRESETS))
def test_every_preset_is_a_valid_config(key):
    preset = PRESETS[key]
    preset.config().validate()
    assert preset.title and preset.lesson


def test_presets_split_between_the_labs():
    synthetic = presets_for(SYNTHETIC_PROBLEMS)
    images = presets_for(IMAGE_PROBLEMS)
    assert synthetic[0].key == "convex" and len(synthetic) + len(images) == len(PRESETS)
    assert {p.key for p in images} >= {"digits_race", "cifar10_small", "cifar10_paper"}


def test_paper_configs_follow_the_paper():
    cifar10, tiny = paper_config("cifar10"), paper_config("tiny_imagenet")
    assert (cifar10["batch_size"], cifar10["max_batch_size"], cifar10["resize_every"],
            cifar10["delta"], cifar10["epochs"]) == (128, 2048, 20, 0.1, 200)
    assert (cifar10["momentum"], cifar10["weight_decay"], cifar10["lr"],
            cifar10["schedule"], cifar10["model"]) == (0.9, 5e-4, 0.1, "cosine", "resnet18")
    assert (tiny["batch_size"], tiny["delta"]) == (256, 0.01)
    assert paper_config("cifar100")["delta"] == 0.01
    small = PRESETS["cifar10_small"].config()
    assert (small.epochs, small.resize_every, small.n_samples) == (30, 5, 10_000)


def test_variants():
    base = RunConfig(batch_size=16, max_batch_size=512)
    large = with_variant(base, "sgd_large")
    assert (large.method, large.batch_size) == ("sgd", 512)
    assert variant_of(large) == "sgd_large" and variant_of(large.to_dict()) == "sgd_large"
    assert variant_of(with_variant(base, "sgd_small")) == "sgd_small"
    assert variant_of(with_variant(large, "adabatch", small_batch=16)) == "adabatch"
    with pytest.raises(ValueError, match="variant should be one of"):
        with_variant(base, "adam")


def test_sgd_small_above_b_max_takes_its_batch_as_b_max():
    """The dashboard's SGD small greys B_max out: a batch above it must not block Start."""
    small = with_variant(RunConfig(batch_size=2048), "sgd_small")
    assert (small.method, small.batch_size, small.max_batch_size) == ("sgd", 2048, 2048)
    small.validate()
    below = with_variant(RunConfig(batch_size=16, max_batch_size=512), "sgd_small")
    assert (below.batch_size, below.max_batch_size) == (16, 512)


def test_race_is_four_methods_on_one_problem_and_seed():
    base = RunConfig(problem="digits", seed=5, batch_size=16, max_batch_size=512)
    race = race_configs(base)
    assert [label for label, _ in race] == ["DiveBatch", "SGD, small batch",
                                           "SGD, large batch", "AdaBatch"]
    assert {(c.problem, c.seed, c.epochs) for _, c in race} == {("digits", 5, base.epochs)}
    assert [c.batch_size for _, c in race] == [16, 16, 512, 16]
    runs = [{"id": i, "config": c.to_dict()} for i, (_, c) in enumerate(race, start=1)]
    assert [variant_of(r["config"]) for r in race_sorted(runs)] == \
        ["sgd_small", "divebatch", "adabatch", "sgd_large"]


def test_defaults_encode_to_an_empty_query():
    assert config_to_query(RunConfig()) == {}
    assert config_from_query({}) == RunConfig()


def test_round_trip_of_every_preset():
    for preset in PRESETS.values():
        config = preset.config()
        assert config_from_query(config_to_query(config)) == config


@st.composite
def configs(draw):
    """Valid configs with a few random fields changed."""
    changes = {"seed": draw(st.integers(0, 2**31 - 1)),
               "delta": draw(st.floats(1e-6, 1e3, allow_nan=False)),
               "lr": draw(st.floats(1e-6, 10.0)),
               "augment": draw(st.booleans()),
               "name": draw(st.text(st.characters(blacklist_categories=("Cs",),
                                                  blacklist_characters="\x00"), max_size=20)),
               "problem": draw(st.sampled_from(SYNTHETIC_PROBLEMS))}
    return RunConfig(**changes)


@settings(max_examples=60, deadline=None)
@given(configs())
def test_round_trip_is_exact(config):
    query = config_to_query(config)
    assert all(isinstance(v, str) for v in query.values())
    assert config_from_query(query) == config


@pytest.mark.parametrize("query,message", [
    ({"epochs": "ten"}, "epochs should be an int, but got epochs='ten'"),
    ({"epochs": "2.5"}, "epochs should be an int"),
    ({"delta": "nan"}, "delta should be a number"),
    ({"augment": "maybe"}, "augment should be true or false"),
    ({"learning_rate": "0.1"}, "learning_rate is not a setting"),
    ({"epochs": "0"}, "epochs should be an int >= 1"),
    ({"problem": "mnist"}, "problem should be one of"),
    ({"batch_size": "64", "max_batch_size": "32"}, "max_batch_size should be an int >="),
])
def test_malformed_queries_are_refused(query, message):
    with pytest.raises(ValueError, match=message):
        config_from_query(query)


def test_every_bad_parameter_is_listed_at_once():
    with pytest.raises(ValueError) as info:
        config_from_query({"epochs": "ten", "delta": "x", "seed": "3"})
    assert [line.split()[0] for line in str(info.value).splitlines()] == ["epochs", "delta"]


def test_a_field_that_conflicts_with_a_default_is_refused_alone():
    """batch_size=4096 against the default B_max (1024): that one field is left out, the
    rest of the link applies (it used to discard the whole link)."""
    config, refused = read_query({"batch_size": "4096", "epochs": "5", "delta": "ten"})
    assert config == RunConfig(epochs=5)
    assert set(refused) == {"batch_size", "delta"}
    assert refused["batch_size"].startswith("conflicts with a default: max_batch_size")


def test_an_sgd_link_above_the_default_b_max_applies_whole():
    """method=sgd&batch_size=2048: B_max follows the batch unless the link sets it."""
    query = {"method": "sgd", "batch_size": "2048"}
    assert config_from_query(query) == RunConfig(method="sgd", batch_size=2048,
                                                 max_batch_size=2048)
    assert read_query(query) == (config_from_query(query), {})
    _, refused = read_query({**query, "max_batch_size": "1024"})
    assert refused == {"max_batch_size": "should be an int >= batch_size (2048), but got 1024 "
                                         "(SGD never reads it: set it to 2048)"}


def test_reasons_name_fields_by_the_pages_labels_and_unset_ones_as_defaults():
    """B_max=4 in a link whose B0 is refused: the reason names B0 by its label, as the
    default a link leaves unset (the value it was checked against), never the raw field."""
    labels = {"batch_size": "initial batch size B0", "max_batch_size": "max batch size B_max"}
    _, refused = read_query({"batch_size": "ten", "max_batch_size": "4"}, name_of=labels.get)
    assert refused["max_batch_size"] == \
        "should be an int >= the default initial batch size B0 (32), but got 4"
    _, refused = read_query({"batch_size": "8", "max_batch_size": "4"}, name_of=labels.get)
    assert refused["max_batch_size"] == "should be an int >= initial batch size B0 (8), but got 4"


def test_ignored_keys_are_skipped():
    assert config_from_query({"instructor": "1", "seed": "4"}, ignore=("instructor",)) == \
        RunConfig(seed=4)


def test_every_field_type_round_trips():
    changed = {}
    for f in config_fields():
        if f.metadata["choices"]:
            changed[f.name] = [c for c in f.metadata["choices"] if c != f.default][0]
        elif f.type == "bool":
            changed[f.name] = not f.default
    changed.update(model="auto", n_samples=7, lr=0.125, data_dir="/tmp/x y",
                   problem="digits")
    config = dataclasses.replace(RunConfig(), **changed)
    assert config_from_query(config_to_query(config)) == config


@pytest.mark.slow
def test_cifar10_small_preset_runs_end_to_end_on_cpu(tmp_path):
    """The scaled-down paper recipe (ResNet-18 with GroupNorm, augmentation, cosine schedule,
    DiveBatch measuring every epoch) on files in the official CIFAR-10 binary format, through
    the CLI; only the sizes shrink so that it fits a CPU test."""
    make_cifar10_binary(tmp_path)
    started = cli_in_process(
        "run", "--preset", "cifar10_small", "--data-dir", str(tmp_path), "--n-samples", "32",
        "--epochs", "2", "--resize-every", "1", "--batch-size", "16", "--max-batch-size", "32",
        "--device", "cpu")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[-1]
    assert "status=completed epochs=2" in started.stdout + started.stderr
    shown = cli_in_process("show", run_id).stdout
    assert "model = 'resnet18'" in shown and "schedule = 'cosine'" in shown
    records = json.loads(cli_in_process("export", run_id, "--format", "json").stdout)["records"]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(math.isfinite(r["diversity"]) and r["diversity"] > 0 for r in records)
    assert records[0]["batch_size"] == 16 and records[1]["lr"] < records[0]["lr"]


def test_variant_uses_greys_out_what_a_variant_ignores():
    fields = ("delta", "min_batch_size", "resize_every", "max_batch_size", "adabatch_factor",
              "lr")
    used = {variant: [name for name in fields if variant_uses(variant, name)]
            for variant in ("divebatch", "adabatch", "sgd_small", "sgd_large")}
    assert used == {"divebatch": ["delta", "min_batch_size", "resize_every", "max_batch_size",
                                  "lr"],
                    "adabatch": ["resize_every", "max_batch_size", "adabatch_factor", "lr"],
                    "sgd_small": ["lr"], "sgd_large": ["max_batch_size", "lr"]}
