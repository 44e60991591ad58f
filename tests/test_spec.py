"""The model contract as data: ModelSpec's JSON round trip, its checks, and feeds for models of
several inputs."""

import numpy as np
import pytest

from toolkit.errors import InputError
from toolkit.model import MNIST_CNN_SPEC, validate_batch
from toolkit.spec import ModelSpec, Preprocessing, Task, TensorSpec


def two_input_spec():
    return ModelSpec(
        name="two_in",
        inputs=(TensorSpec("image", "float32", (-1, 3, 8, 8), value_range=(-3.0, 3.0)),
                TensorSpec("mask", "int64", (-1, 4))),
        outputs=(TensorSpec("scores", "float32", (-1, 5)), TensorSpec("embedding", "float32", (-1, 16))),
        task=Task("classification", num_classes=5, output="scores"),
        preprocessing=Preprocessing(size=(8, 8), channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
    )


def test_json_round_trip_keeps_every_field():
    for spec in (MNIST_CNN_SPEC, two_input_spec()):
        again = ModelSpec.from_json(spec.to_json())
        assert again == spec
        assert again.to_json() == spec.to_json()


def test_builtin_spec_is_the_seed_contract():
    assert MNIST_CNN_SPEC.name == "mnist_cnn"
    assert MNIST_CNN_SPEC.inputs[0].shape == (-1, 1, 28, 28) and MNIST_CNN_SPEC.inputs[0].batch_dynamic
    assert MNIST_CNN_SPEC.class_output.name == "logits" and MNIST_CNN_SPEC.task.num_classes == 10
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    assert validate_batch(x) is x  # nothing to convert: no copy


def test_feeds_by_name_are_checked_input_by_input():
    spec = two_input_spec()
    image = np.zeros((2, 3, 8, 8), np.float64)
    mask = np.ones((2, 4), np.int32)
    checked = spec.validate_feeds({"image": image, "mask": mask})
    assert checked["image"].dtype == np.float32 and checked["mask"].dtype == np.int64
    with pytest.raises(InputError, match="lacks inputs \\['mask'\\]"):
        spec.validate_feeds({"image": image})
    with pytest.raises(InputError, match="unknown ones \\['extra'\\]"):
        spec.validate_feeds({"image": image, "mask": mask, "extra": mask})
    with pytest.raises(InputError, match="plain array feeds only one"):
        spec.validate_feeds(image)
    with pytest.raises(InputError, match="different batch sizes"):
        spec.validate_feeds({"image": image, "mask": np.ones((3, 4), np.int64)})
    with pytest.raises(InputError, match="'mask' has dtype float32"):
        spec.validate_feeds({"image": image, "mask": mask.astype(np.float32)})
    with pytest.raises(InputError, match="'image' values span"):
        spec.validate_feeds({"image": image + 4, "mask": mask})
    with pytest.raises(InputError, match="'image' has shape"):
        spec.validate_feeds({"image": np.zeros((2, 3, 8, 9), np.float32), "mask": mask})


def test_a_fixed_batch_is_enforced_and_unbounded_floats_must_be_finite():
    tensor = TensorSpec("x", "float32", (1, 4))
    tensor.validate(np.zeros((1, 4), np.float32))
    with pytest.raises(InputError, match="exactly 1"):
        tensor.validate(np.zeros((2, 4), np.float32))
    with pytest.raises(InputError, match="NaN or Inf"):
        tensor.validate(np.array([[0, np.inf, 0, 0]], np.float32))
    tensor.validate(np.array([[-1e6, 1e6, 0, 0]], np.float32))  # no range: any finite value


@pytest.mark.parametrize("bad, needle", [
    ("{", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"name": "m", "inputs": [], "outputs": []}', "at least one input"),
    ('{"name": "m"}', "malformed"),
    ('{"spec_version": 99, "name": "m"}', "spec_version"),
    ('{"name": "../evil", "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 2]}],'
     ' "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 2]}]}', "file names"),
    ('{"name": "m", "inputs": [{"name": "x", "dtype": "nope", "shape": [-1, 2]}],'
     ' "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 2]}]}', "unknown dtype"),
    ('{"name": "m", "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 2]}],'
     ' "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 3]}], "task": {"kind": "classification", "num_classes": 4}}',
     "3 classes"),
])
def test_a_bad_spec_file_is_one_input_error(bad, needle):
    with pytest.raises(InputError, match=needle):
        ModelSpec.from_json(bad, "model.json")
