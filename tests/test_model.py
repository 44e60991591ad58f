import numpy as np
import pytest
import torch

from toolkit.errors import InputError
from toolkit.files.checkpoint import load_model, load_state_dict
from toolkit.model import CNN, NUM_PARAMETERS, validate_batch


def test_shapes_and_parameter_count():
    model = CNN().eval()
    assert sum(p.numel() for p in model.parameters()) == NUM_PARAMETERS == 28_938
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10) and out.dtype == torch.float32


def test_module_names_match_the_seed_notebook():
    keys = set(CNN().state_dict())
    assert keys == {"layer1.0.weight", "layer1.0.bias", "layer2.0.weight", "layer2.0.bias", "fc1.weight", "fc1.bias"}


def test_seed_style_state_dict_loads_unchanged(tmp_path):
    # What the notebook does: torch.save(model.state_dict(), path) of its own class.
    class SeedCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            nn = torch.nn
            self.layer1 = nn.Sequential(nn.Conv2d(1, 16, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2, 2))
            self.layer2 = nn.Sequential(nn.Conv2d(16, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2, 2))
            self.fc1 = nn.Linear(7 * 7 * 32, 10)

        def forward(self, x):
            out = self.layer2(self.layer1(x))
            return self.fc1(out.reshape(out.size(0), -1))

    seed = SeedCNN().eval()
    path = tmp_path / "seed.pt"
    torch.save(seed.state_dict(), path)
    assert set(load_state_dict(path)) == set(seed.state_dict())
    model = load_model(path)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), seed(x))


# --- the input contract: validate_batch ---------------------------------------------------------

def _valid(n: int = 3) -> np.ndarray:
    return np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0, 0, 0), (2, 0, 27, 27), (1, 0, 13, 5)])
def test_one_nan_or_inf_anywhere_is_refused_as_such(value, where):
    batch = _valid()
    batch[where] = value
    with pytest.raises(InputError, match="NaN or Inf"):
        validate_batch(batch)


@pytest.mark.parametrize("value, span", [(np.nextafter(np.float32(1), np.float32(2)), "1"), (255.0, "255"),
                                         (-1e-7, "-1e-07"), (-0.5, "-0.5")])
def test_a_value_just_outside_0_1_is_refused_with_the_span(value, span):
    batch = _valid()
    batch[1, 0, 3, 4] = value
    with pytest.raises(InputError, match=r"values span \[.*\], expected \[0, 1\]") as err:
        validate_batch(batch)
    assert span in str(err.value)


def test_the_edges_of_0_1_and_negative_zero_are_accepted():
    batch = _valid()
    batch[0, 0, 0, 0], batch[0, 0, 0, 1], batch[2, 0, 5, 5] = 0.0, 1.0, -0.0
    assert validate_batch(batch) is batch


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.bool_, np.complex64])
def test_non_float_dtypes_are_refused(dtype):
    with pytest.raises(InputError, match="dtype"):
        validate_batch(np.zeros((2, 1, 28, 28), dtype=dtype))


@pytest.mark.parametrize("shape", [(1, 28, 28), (2, 3, 28, 28), (2, 1, 28, 27), (2, 1, 27, 28), (2, 1, 28, 28, 1), ()])
def test_wrong_shapes_are_refused(shape):
    with pytest.raises(InputError, match="shape"):
        validate_batch(np.zeros(shape, dtype=np.float32))


def test_input_error_is_a_value_error_for_callers():
    with pytest.raises(ValueError):
        validate_batch(np.full((1, 1, 28, 28), 2.0, dtype=np.float32))
    with pytest.raises(InputError, match="numpy array"):
        validate_batch([[0.0]])


def test_a_valid_float32_batch_is_passed_through_without_a_copy():
    batch = _valid()
    assert validate_batch(batch) is batch


@pytest.mark.parametrize("make", [
    lambda b: b.astype(np.float64),
    lambda b: b.astype(np.float16),
    lambda b: np.asfortranarray(b),
    lambda b: np.repeat(b, 2, axis=0)[::2],
], ids=["float64", "float16", "fortran", "strided"])
def test_other_floats_and_layouts_are_copied_to_contiguous_float32(make):
    source = make(_valid())
    out = validate_batch(source)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable
    assert np.array_equal(out, source.astype(np.float32))
    assert not np.shares_memory(out, source)


def test_a_read_only_batch_is_copied_once_and_left_alone():
    batch = _valid()
    batch.flags.writeable = False
    out = validate_batch(batch)
    assert out is not batch and out.flags.writeable and np.array_equal(out, batch)
    assert not batch.flags.writeable


def test_an_empty_batch_is_valid():
    out = validate_batch(np.zeros((0, 1, 28, 28), dtype=np.float64))
    assert out.shape == (0, 1, 28, 28) and out.dtype == np.float32
