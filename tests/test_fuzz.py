"""Property-based tests: random and mutated bytes into every loader of files from elsewhere, and
random batches (NaN, Inf, wrong shapes and dtypes, strided views) into the inference API.

A loader may accept its input or raise the toolkit's own error type, nothing else: no runtime
exception, no crash. The inference API returns (N, 10) finite float32 logits exactly when the batch
meets the documented contract, raises InputError otherwise, and a batch's predictions don't depend
on the order of its images.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from toolkit.errors import CheckpointError, DataError, InputError, ModelFileError

# Modest counts and no deadline: the suite must stay fast on two busy cores.
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FILE_FUZZ = settings(FUZZ, max_examples=300)


@st.composite
def mutations(draw):
    """Edits to a valid file: truncation, bit flips, overwritten bytes, appended bytes. Positions are
    fractions of the length, so a failing example prints as a few numbers, not the whole file."""
    return draw(st.lists(st.one_of(
        st.tuples(st.just("truncate"), st.floats(0, 1)),
        st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
        st.tuples(st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("append"), st.binary(max_size=64)),
    ), min_size=1, max_size=4))


def mutate(valid: bytes, edits) -> bytes:
    data = bytearray(valid)
    for kind, *args in edits:
        at = int(args[0] * max(len(data) - 1, 0)) if kind != "append" else 0
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and data:
            data[at] ^= 1 << args[1]
        elif kind == "overwrite" and data:
            data[at : at + len(args[1])] = args[1]
        elif kind == "append":
            data += args[0]
    return bytes(data)


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()


VALID_IDX = [_idx(np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)), _idx(np.array([7, 2, 1, 0], dtype=np.uint8))]


# --- the IDX parser -----------------------------------------------------------------------------

@FUZZ
@given(random=st.binary(max_size=512), which=st.sampled_from([None, 0, 1]), edits=mutations(), ndim=st.sampled_from([None, 1, 3]))
# found by this test: more dimensions than numpy allows, and dimensions whose int64 product wraps to 0
@example(random=bytes([0, 0, 8, 65]) + (1).to_bytes(4, "big") * 65 + b"x", which=None, edits=[], ndim=None)
@example(random=bytes([0, 0, 8, 4]) + (1 << 16).to_bytes(4, "big") * 4, which=None, edits=[], ndim=None)
def test_parse_idx_accepts_or_raises_data_error(random, which, edits, ndim):
    from toolkit.data import parse_idx

    raw = random if which is None else mutate(VALID_IDX[which], edits)

    try:
        array = parse_idx(raw, "fuzzed", expected_ndim=ndim)
    except DataError:
        return
    assert isinstance(array, np.ndarray)
    assert ndim is None or array.ndim == ndim
    header = 4 + 4 * array.ndim
    assert len(raw) == header + array.nbytes  # nothing accepted that the header does not account for


# --- checkpoints and ONNX files -----------------------------------------------------------------

@pytest.fixture(scope="module")
def valid_files(checkpoint, exported_dir):
    return {"checkpoint": checkpoint.read_bytes(), "onnx": (exported_dir / "mnist_cnn.fp32.onnx").read_bytes()}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def test_checkpoint_loader_accepts_or_raises_checkpoint_error(valid_files, scratch):
    from toolkit.files.checkpoint import load_state_dict
    from toolkit.model import CNN

    path = scratch / "fuzzed.pt"
    expected_keys = set(CNN().state_dict())

    @FILE_FUZZ
    @given(random=st.binary(max_size=1024), use_random=st.booleans(), edits=mutations())
    def check(random, use_random, edits):
        path.write_bytes(random if use_random else mutate(valid_files["checkpoint"], edits))
        try:
            state = load_state_dict(path)
        except CheckpointError:
            return
        assert set(state) == expected_keys

    check()


def test_onnx_loader_accepts_or_raises_model_file_error(valid_files, scratch):
    from toolkit.files.onnx_file import load_checked

    path = scratch / "fuzzed.onnx"

    @FILE_FUZZ
    @given(random=st.binary(max_size=1024), use_random=st.booleans(), edits=mutations())
    def check(random, use_random, edits):
        path.write_bytes(random if use_random else mutate(valid_files["onnx"], edits))
        try:
            model = load_checked(path)
        except ModelFileError:
            return
        assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]

    check()


# --- batches into the inference API -------------------------------------------------------------

def _meets_contract(batch) -> bool:
    """The documented input contract, written independently of validate_batch."""
    if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1:] != (1, 28, 28):
        return False
    if batch.dtype.kind != "f":
        return False
    as32 = batch.astype(np.float32)
    return bool(np.isfinite(as32).all() and (as32 >= 0).all() and (as32 <= 1).all())


def _non_finite(batch) -> bool:
    """Right shape and a float dtype, with NaN or Inf among the values (as float32, what runtimes see)."""
    return (isinstance(batch, np.ndarray) and batch.ndim == 4 and batch.shape[1:] == (1, 28, 28)
            and batch.dtype.kind == "f" and not np.isfinite(batch.astype(np.float32)).all())


pixels = st.floats(0.0, 1.0, width=32)
anything = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def batches(draw):
    n = draw(st.integers(0, 6))
    kind = draw(st.sampled_from(["clean", "clean", "special", "nonfinite", "dtype", "strided", "shape"]))
    if kind == "clean":
        dtype = draw(st.sampled_from([np.float32, np.float64, np.float16]))
        # numpy 1.x refuses a float32-width draw that float16 can't represent exactly
        return draw(hnp.arrays(dtype, (n, 1, 28, 28), elements=st.floats(0.0, 1.0, width=16 if dtype == np.float16 else 32)))
    if kind == "nonfinite":
        # one NaN or infinity in an otherwise valid batch: drawn often enough that every run meets each kind
        batch = draw(hnp.arrays(np.float32, (max(n, 1), 1, 28, 28), elements=pixels))
        batch[tuple(draw(st.integers(0, s - 1)) for s in batch.shape)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return batch
    if kind == "special":
        # mostly valid pixels with a few NaN / Inf / out-of-range values sprinkled in
        batch = draw(hnp.arrays(np.float32, (max(n, 1), 1, 28, 28), elements=pixels))
        for _ in range(draw(st.integers(1, 3))):
            idx = tuple(draw(st.integers(0, s - 1)) for s in batch.shape)
            batch[idx] = draw(anything)
        return batch
    if kind == "dtype":
        dtype = draw(st.sampled_from([np.uint8, np.int32, np.int64, np.bool_, np.complex64]))
        return draw(hnp.arrays(dtype, (n, 1, 28, 28)))
    if kind == "strided":
        big = draw(hnp.arrays(np.float32, (n, 1, 56, 56), elements=pixels))
        view = big[:, :, ::2, ::2] if draw(st.booleans()) else np.asfortranarray(big[:, :, :28, :28])
        return view
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=30).filter(lambda s: len(s) != 4 or s[1:] != (1, 28, 28)))
    return draw(hnp.arrays(np.float32, shape, elements=pixels))


@pytest.fixture(scope="module")
def backends(checkpoint, exported_dir):
    from toolkit.backends import registry

    opened = [registry.create_backend("pytorch", "fp32", checkpoint, threads=1).load(),
              registry.create_backend("onnxruntime", "fp32", exported_dir / "mnist_cnn.fp32.onnx", threads=1).load()]
    yield opened
    for backend in opened:
        backend.close()


def test_validate_batch_matches_the_contract():
    from toolkit.backends.base import validate_batch

    @FUZZ
    @given(batch=batches())
    def check(batch):
        expected_ok = _meets_contract(batch)
        try:
            out = validate_batch(batch)
        except InputError as exc:
            assert not expected_ok, "a batch that meets the contract was refused"
            if _non_finite(batch):
                assert "NaN or Inf" in str(exc), str(exc)
            return
        assert expected_ok, "a batch that breaks the contract was accepted"
        assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == batch.shape
        assert np.array_equal(out, batch.astype(np.float32)), "validation changed the pixel values"

    check()


def test_backends_return_logits_or_input_error_and_ignore_batch_order(backends):
    @settings(FUZZ, max_examples=60)
    @given(batch=batches(), seed=st.integers(0, 2**32 - 1))
    def check(batch, seed):
        for backend in backends:
            try:
                logits = backend.run(batch)
            except InputError:
                assert not _meets_contract(batch)
                continue
            n = batch.shape[0]
            assert logits.shape == (n, 10) and logits.dtype == np.float32 and np.isfinite(logits).all(), backend.name
            if n < 2:
                continue
            perm = np.random.default_rng(seed).permutation(n)
            permuted = backend.run(np.ascontiguousarray(batch[perm]))
            np.testing.assert_allclose(permuted, logits[perm], rtol=1e-4, atol=1e-4, err_msg=backend.name)
            top2 = np.sort(logits, axis=1)[:, -2:]
            clear = (top2[:, 1] - top2[:, 0]) > 1e-3  # argmax is only defined where the top two logits differ
            assert np.array_equal(permuted.argmax(1)[clear[perm]], logits.argmax(1)[perm][clear[perm]]), backend.name

    check()


# --- an earlier benchmark report (toolkit bench --baseline) -------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, width=32) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
bench_keys = st.sampled_from(["cells", "environment", "settings", "pairs", "latency", "device", "backend", "batch_size", "median_us"])


def test_benchmark_baseline_loader_accepts_or_raises_input_error():
    from toolkit.bench import SCHEMA, SCHEMA_VERSION, BenchReport, report_from_dict

    @FUZZ
    @given(body=st.dictionaries(bench_keys, json_values | st.lists(st.dictionaries(bench_keys, json_values, max_size=4), max_size=2), max_size=5))
    def check(body):
        try:
            report = report_from_dict({"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **body}, "fuzzed.json")
        except InputError:
            return
        assert isinstance(report, BenchReport)

    check()
