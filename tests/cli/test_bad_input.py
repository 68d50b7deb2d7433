"""Bad input everywhere: every RunConfig field through the library and the CLI, malformed
config files, and a run that runs out of memory."""

import dataclasses
import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.helpers.cli import run_cli
from divebatch import cli
from divebatch.runs import control_requests, queue, worker
from divebatch.config import RunConfig, allowed_range, config_fields
from divebatch.runs.store import RunStore
from divebatch.training.trainer import train

FIELDS = {f.name: f for f in config_fields()}
NOT_NUMBERS = st.one_of(st.none(), st.text(max_size=6), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
HUGE = st.sampled_from([10**400, -10**400, 10**5000])


def out_of_range_numbers(f: dataclasses.Field):
    """Numbers of the field's type outside its range, including its open bounds."""
    meta, is_int = f.metadata, f.type == "int"
    numbers = st.integers if is_int else st.floats
    options = [HUGE]
    if meta["low"] is not None:
        options.append(numbers(max_value=meta["low"] - 1) if is_int
                       else numbers(max_value=meta["low"], exclude_max=not meta["low_open"]))
    if meta["high"] is not None:
        options.append(numbers(min_value=meta["high"] + 1) if is_int
                       else numbers(min_value=meta["high"], exclude_min=not meta["high_open"]))
    return st.one_of(*options)


def bad_values(f: dataclasses.Field):
    """Values `f` must refuse: wrong types, NaN / infinities, out of range, unknown choices."""
    meta = f.metadata
    if meta["choices"]:
        return st.one_of(st.text(max_size=12).filter(lambda v: v not in meta["choices"]),
                         st.integers(), st.booleans(), NOT_NUMBERS.filter(
                             lambda v: not isinstance(v, str)))
    if f.type == "bool":
        return st.one_of(st.integers(), st.floats(), st.sampled_from(["true", "yes", "1"]),
                         NOT_NUMBERS)
    if f.type == "str":
        return st.one_of(st.integers(), st.booleans(), st.floats(), st.text(min_size=4097),
                         st.text().map(lambda v: v + "\x00"),
                         NOT_NUMBERS.filter(lambda v: not isinstance(v, str)))
    wrong_type = [st.booleans(), NOT_NUMBERS, st.just(math.nan), st.just(math.inf),
                  st.just(-math.inf)]
    if f.type == "int":
        wrong_type.append(st.floats(allow_nan=False).filter(lambda v: not v.is_integer()))
        wrong_type.append(st.floats(allow_nan=False, allow_infinity=False)
                          .filter(lambda v: v.is_integer()))  # 3.0 is not an int
    return st.one_of(out_of_range_numbers(f), *wrong_type)


@st.composite
def field_and_bad_value(draw):
    f = draw(st.sampled_from(config_fields()))
    return f, draw(bad_values(f))


@settings(max_examples=400, deadline=None)
@given(field_and_bad_value())
def test_every_field_refuses_bad_values_naming_field_and_range(case):
    f, value = case
    with pytest.raises(ValueError) as info:
        RunConfig(**{f.name: value}).validate()
    line = next(line for line in str(info.value).splitlines() if line.startswith(f.name))
    assert line.startswith(f"{f.name} should be {allowed_range(f)}, but got {f.name}=")
    assert len(line) < 400


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
              st.sampled_from(["divebatch", "digits", "cnn", "cosine", "cpu", "sqrt"])),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=2), max_leaves=4)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), JSON_VALUES, max_size=6))
def test_any_mix_of_values_is_either_valid_or_a_value_error(values):
    config = RunConfig.from_dict(values)
    try:
        config.validate()
    except ValueError as error:
        assert all(" should be " in line for line in str(error).splitlines())
    else:
        for name, value in values.items():
            assert getattr(config, name) == value


def cli_text(value) -> str:
    """How a user would type `value` (an int too long to write out: 5000 nines)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**4000:
        return "9" * 5000
    return json.dumps(value) if isinstance(value, (list, dict, type(None))) else str(value)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=field_and_bad_value())
def test_cli_refuses_bad_flags_with_one_line_and_code_2(case, capsys, isolated_store,
                                                        monkeypatch):
    monkeypatch.setattr(worker, "execute_run", lambda *a, **k: pytest.fail("a run started"))
    f, value = case
    flag = "--" + f.name.replace("_", "-")
    text = cli_text(value)
    argv = ["run", f"{flag}={text}"]  # "=": a value may start with "-"
    if f.type == "str" and not f.metadata["choices"] and len(text) <= 4096 \
            and "\x00" not in text:
        return  # any short text is a valid name / data_dir: nothing to refuse
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert f.name in err or flag in err
    assert not isolated_store.exists() or RunStore(isolated_store).list_runs() == []


@pytest.mark.parametrize("argv, expected", [
    (["--epochs", "1e3"], "--epochs: should be an int >= 1 and <= 100000, but got '1e3'"),
    (["--lr", "nan"], "--lr should be a float > 0 and <= 100, but got --lr=nan"),
    (["--lr=-inf"], "--lr should be a float > 0 and <= 100, but got --lr=-inf"),
    (["--momentum", "1"], "--momentum should be a float >= 0 and < 1"),
    (["--seed", "9" * 6000], "--seed: should be an int >= 0 and <= 2147483647, but got '999"),
    (["--n-samples", "10000000", "--dim", "1000"], "--n-samples * --dim should be <= 200000000"),
    (["--batch-size", "64", "--max-batch-size", "8"],
     "--max-batch-size should be an int >= --batch-size (64), but got --max-batch-size=8"),
])
def test_cli_names_field_and_range_in_one_line(argv, expected, capsys, isolated_store):
    assert cli.main(["run", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and expected in err
    assert not isolated_store.exists()


def test_cli_process_exits_2_without_a_traceback():
    result = run_cli("run", "--lr", "nan", "--epochs", "-3")
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr == ("error: --epochs should be an int >= 1 and <= 100000, but got "
                             "--epochs=-3; --lr should be a float > 0 and <= 100, but got "
                             "--lr=nan\n")


@pytest.mark.parametrize("content, expected", [
    ('{"epochs": 3, "lr": NaN}', "error: lr should be a float > 0"),  # the file's key
    ('{"epochs": 3, "problem": ["x"]}', "problem should be one of"),
    ('{"epochs": 3, "learning_rate": 0.1}', "unknown config field(s): learning_rate"),
    ('{"epochs": 3, "batch_size": 1e999}', "batch_size should be an int"),
    ('[{"epochs": 3}]', "should hold a JSON object of RunConfig fields"),
    ('{"epochs": 3', "is not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (b"\xff\xfe{}", "is not valid JSON"),
    ("{" + " " * 1_000_001 + "}", "is larger than 1000000 bytes"),
])
def test_malformed_config_file_is_refused_and_nothing_is_stored(tmp_path, capsys, content,
                                                                 expected, isolated_store):
    path = tmp_path / "config.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert cli.main(["run", "--config", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not isolated_store.exists() or RunStore(isolated_store).list_runs() == []


def test_library_entry_points_refuse_bad_configs_before_storing(isolated_store):
    store = RunStore(isolated_store)
    with pytest.raises(ValueError, match="epochs should be an int >= 1"):
        queue.submit(store, RunConfig(epochs=0))
    assert store.list_runs() == []
    run_id = store.create_run(RunConfig().to_dict(), status="running")
    with pytest.raises(ValueError, match="delta should be a float > 0"):
        control_requests.request_hot_change(store, run_id, delta=math.nan)
    with pytest.raises(ValueError, match="hot parameters are"):
        control_requests.request_hot_change(store, run_id, epochs=5)


# --- out of memory: the run ends as failed with advice, its records kept

OOM_ABOVE = 16  # samples per forward pass that "fit in memory"
OOM_CONFIG = RunConfig(problem="least_squares", n_samples=300, dim=8, epochs=6, batch_size=4,
                       max_batch_size=256, method="adabatch", resize_every=1)


@pytest.fixture(params=["OutOfMemoryError", "RuntimeError"])
def tight_memory(request, monkeypatch):
    """nn.Linear.forward raises like CUDA does when a batch is larger than OOM_ABOVE."""
    forward = torch.nn.Linear.forward

    def limited(self, inputs):
        if torch.is_grad_enabled() and inputs.shape[0] > OOM_ABOVE:
            if request.param == "OutOfMemoryError":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            raise RuntimeError("CUDA error: out of memory")
        return forward(self, inputs)
    monkeypatch.setattr(torch.nn.Linear, "forward", limited)


def test_out_of_memory_ends_the_run_as_failed_with_advice(tight_memory):
    result = train(OOM_CONFIG)  # batch sizes 4, 8, 16, then 32 does not fit
    assert result.status == "failed"
    assert [r.batch_size for r in result.records] == [4, 8, 16]
    assert "out of memory in epoch 4 at batch size 32" in result.message
    assert "smaller max_batch_size (now 256)" in result.message
    assert result.events[-1]["kind"] == "out_of_memory"


def test_out_of_memory_in_a_stored_run_is_a_clean_failure(tight_memory, isolated_store):
    store = RunStore(isolated_store)
    run_id = store.create_run(OOM_CONFIG.to_dict())
    worker.execute_run(store, run_id)
    run = store.get_run(run_id)
    assert run["status"] == "failed" and "smaller max_batch_size" in run["error"]
    assert [r["epoch"] for r in store.records(run_id)] == [1, 2, 3]


def test_other_runtime_errors_still_fail_loudly(monkeypatch, isolated_store):
    def broken(self, inputs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    monkeypatch.setattr(torch.nn.Linear, "forward", broken)
    store = RunStore(isolated_store)
    run_id = store.create_run(OOM_CONFIG.to_dict())
    worker.execute_run(store, run_id)
    assert store.get_run(run_id)["error"] == ("RuntimeError: mat1 and mat2 shapes cannot be "
                                              "multiplied")
