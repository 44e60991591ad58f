"""toolkit.files.checkpoint in-process: what a checkpoint must be before its weights are used.

Fast, on checkpoints made here from a fresh CNN; the CLI-level cases (every command refuses them
with one line) and the pickle that would run code are in test_battery.py and test_artifacts.py."""

from __future__ import annotations

import pytest
import torch

from toolkit.errors import CheckpointError
from toolkit.files.checkpoint import (
    MAX_CHECKPOINT_BYTES,
    load_model,
    load_state_dict,
    save_bytes,
    validate_state_dict,
)
from toolkit.model import CNN


@pytest.fixture(scope="module")
def state() -> dict:
    torch.manual_seed(0)
    return CNN().state_dict()


def write(tmp_path, obj, name="m.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_a_state_dict_and_the_wrapped_form_load(tmp_path, state):
    for obj in (state, {"model": state}):
        loaded = load_state_dict(write(tmp_path, obj))
        assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    assert load_state_dict(tmp_path / "m.pt").keys() == state.keys()
    path = tmp_path / "bytes.pt"
    path.write_bytes(save_bytes(state))
    model = load_model(path)
    assert not model.training and torch.equal(model.fc1.bias, state["fc1.bias"])


def test_missing_empty_oversized_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "none.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        load_state_dict(tmp_path / "empty.pt")
    with open(tmp_path / "big.pt", "wb") as fh:
        fh.truncate(MAX_CHECKPOINT_BYTES + 1)
    with pytest.raises(CheckpointError, match="far too large"):
        load_state_dict(tmp_path / "big.pt")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not a zip at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable PyTorch file|not a PyTorch checkpoint"):
        load_state_dict(tmp_path / "junk.pt")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_with_code_is_refused_as_such(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="contains code or objects that are not plain tensors"):
        load_state_dict(write(tmp_path, {"fc1.bias": _Payload()}))
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("obj", [torch.zeros(3), [1, 2], {"fc1.bias": [0.0] * 10}, {"model": torch.zeros(1)}])
def test_anything_but_a_mapping_of_tensors_is_refused(tmp_path, obj):
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_state_dict(write(tmp_path, obj))


def test_keys_shapes_dtypes_and_values_must_be_the_cnns(state):
    missing = {k: v for k, v in state.items() if k != "fc1.bias"}
    with pytest.raises(CheckpointError, match="missing fc1.bias"):
        validate_state_dict(missing)
    with pytest.raises(CheckpointError, match="unexpected extra"):
        validate_state_dict({**state, "extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"fc1.weight has shape \(10, 100\)"):
        validate_state_dict({**state, "fc1.weight": torch.zeros(10, 100)})
    with pytest.raises(CheckpointError, match="fc1.bias is torch.int64"):
        validate_state_dict({**state, "fc1.bias": torch.zeros(10, dtype=torch.int64)})
    for bad in (float("nan"), float("inf"), float("-inf")):
        weights = state["layer1.0.weight"].clone()
        weights[3, 0, 2, 2] = bad
        with pytest.raises(CheckpointError, match="layer1.0.weight contains NaN or Inf"):
            validate_state_dict({**state, "layer1.0.weight": weights})
    validate_state_dict({k: v.double() for k, v in state.items()})  # any floating dtype is fine (fp64, fp16)
    validate_state_dict({k: v.half() for k, v in state.items()})


def test_code_stays_refused_when_the_environment_asks_torch_for_full_unpickling(tmp_path, monkeypatch, capsys):
    # torch reads TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD when weights_only is left to its default: passing it
    # explicitly is what keeps the restricted unpickler on whatever the environment says
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="contains code"):
        load_state_dict(write(tmp_path, {"fc1.bias": _Payload()}))
    assert "this must never run" not in capsys.readouterr().out


def test_size_limit_is_inclusive_and_messages_name_the_file(tmp_path, state):
    at_limit = tmp_path / "at-limit.pt"
    with open(at_limit, "wb") as fh:
        fh.truncate(MAX_CHECKPOINT_BYTES)
    with pytest.raises(CheckpointError) as err:
        load_state_dict(at_limit)
    assert "far too large" not in str(err.value)  # refused for its content, not its size
    path = write(tmp_path, {k: v for k, v in state.items() if k != "fc1.bias"}, "partial.pt")
    with pytest.raises(CheckpointError, match="missing fc1.bias") as err:
        load_state_dict(path)
    assert str(path) in str(err.value)
