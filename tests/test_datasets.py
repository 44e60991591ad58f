"""toolkit.datasets in-process: each data source's batches, labels and preprocessing, checked against
an independent computation, and every bad input refused with one line (a ToolkitError, exit 2).
Tiny images and arrays, made here; MNIST from the verified data dir."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_one_line_exception as one_line
from PIL import Image

from toolkit.data import load_split_uint8, to_model_input
from toolkit.datasets import count_overlap, open_data
from toolkit.errors import DataError, InputError
from toolkit.model import MNIST_CNN_SPEC
from toolkit.spec import ModelSpec, Preprocessing, Task, TensorSpec


def spec_for(inputs, classes=3, outputs=None):
    outputs = outputs or (TensorSpec("logits", "float32", (-1, classes)),)
    return ModelSpec("m", tuple(inputs), tuple(outputs), Task("classification", num_classes=classes))


RGB8 = spec_for([TensorSpec("input", "float32", (-1, 3, 8, 8))])
TWO_INPUTS = spec_for([TensorSpec("image", "float32", (-1, 3, 8, 8)), TensorSpec("features", "float32", (-1, 4))], classes=10)


def write_folder(root, sizes_by_class, seed=0, mode="RGB"):
    """root/<class>/<i>.png with random pixels; returns {path: pixels uint8 (H, W, C)} in load order."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in sorted(sizes_by_class):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, (w, h) in enumerate(sizes_by_class[name]):
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            path = root / name / f"{i:03d}.png"
            Image.fromarray(pixels).convert(mode).save(path)
            written[str(path)] = np.asarray(Image.open(path).convert("RGB"))
    return written


# --- mnist --------------------------------------------------------------------------------------

def test_mnist_batches_are_todays_inputs_bit_for_bit():
    data = open_data("mnist", MNIST_CNN_SPEC)
    assert (data.info.kind, data.info.samples, data.info.has_labels) == ("mnist", 10_000, True)
    assert data.info.preprocessing["size"] == (28, 28) and data.info.preprocessing["channels"] == 1
    images, labels = load_split_uint8("test")
    got = list(data.batches(1000, limit=2500))
    assert [len(b[1]) for b in got] == [1000, 1000, 500]
    feeds = np.concatenate([f["input"] for f, _ in got])
    assert np.array_equal(feeds, to_model_input(images[:2500]))
    assert np.array_equal(np.concatenate([lab for _, lab in got]), labels[:2500].astype(np.int64))
    assert got[0][1].dtype == np.int64


def test_mnist_for_a_model_with_other_inputs_is_refused():
    with pytest.raises(InputError) as excinfo:
        open_data("mnist", TWO_INPUTS)
    one_line(excinfo, "one image input", "npz")


# --- imagefolder --------------------------------------------------------------------------------

def test_imagefolder_labels_from_sorted_folders_and_pixels_scaled(tmp_path):
    written = write_folder(tmp_path, {"cat": [(8, 8)] * 3, "ant": [(8, 8)] * 2, "bee": [(8, 8)]})
    pre = Preprocessing(channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    data = open_data(f"imagefolder:{tmp_path}", RGB8, pre)
    assert data.info.class_names == ("ant", "bee", "cat") and data.info.samples == 6
    assert data.info.preprocessing["mean"] == (0.5, 0.4, 0.3)
    feeds, labels = data.load_all()
    assert labels.tolist() == [0, 0, 1, 2, 2, 2]
    expected = np.stack([p.transpose(2, 0, 1) for p in written.values()]).astype(np.float32) / 255
    expected = (expected - np.array(pre.mean, np.float32)[:, None, None]) / np.array(pre.std, np.float32)[:, None, None]
    np.testing.assert_allclose(feeds["input"], expected, rtol=0, atol=1e-6)
    assert [len(lab) for _, lab in data.batches(4)] == [4, 2]


def test_resize_and_centre_crop_match_torchvision(tmp_path):
    from torchvision import transforms

    written = write_folder(tmp_path, {"a": [(20, 12), (11, 30)], "b": [(16, 16)]})
    pre = Preprocessing(size=(8, 8), resize=10, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    feeds, _ = open_data(f"imagefolder:{tmp_path}", RGB8, pre).load_all()
    reference = transforms.Compose([transforms.Resize(10), transforms.CenterCrop(8), transforms.ToTensor(),
                                    transforms.Normalize(pre.mean, pre.std)])
    expected = np.stack([reference(Image.open(path).convert("RGB")).numpy() for path in written])
    np.testing.assert_allclose(feeds["input"], expected, rtol=0, atol=2e-6)


def test_grayscale_model_gets_one_channel_and_the_spec_size_fills_in(tmp_path):
    write_folder(tmp_path, {"x": [(12, 12), (14, 10)]})
    gray = spec_for([TensorSpec("input", "float32", (-1, 1, 8, 8))])
    data = open_data(f"imagefolder:{tmp_path}", gray, Preprocessing(resize=8, channels=1))
    assert data.info.preprocessing["size"] == (8, 8)
    assert data.load_all()[0]["input"].shape == (2, 1, 8, 8)


def test_folders_named_after_the_models_classes_keep_their_labels(tmp_path):
    write_folder(tmp_path, {"3": [(28, 28)] * 2, "7": [(28, 28)]}, mode="L")
    data = open_data(f"imagefolder:{tmp_path}", MNIST_CNN_SPEC)
    feeds, labels = data.load_all()
    assert labels.tolist() == [3, 3, 7] and feeds["input"].shape == (3, 1, 28, 28)
    assert data.info.class_names == ("3", "7")
    renamed = spec_for([TensorSpec("input", "float32", (-1, 1, 28, 28))], classes=10)  # no class names: sorted order
    assert open_data(f"imagefolder:{tmp_path}", renamed).load_all()[1].tolist() == [0, 0, 1]


def test_imagefolder_without_images_is_refused(tmp_path):
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError) as excinfo:
        open_data(f"imagefolder:{tmp_path}", RGB8)
    one_line(excinfo, "no images", "subfolder")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "loose.png")
    with pytest.raises(DataError) as excinfo:
        open_data(f"imagefolder:{tmp_path}", RGB8)
    one_line(excinfo, "1 images lie loose")
    with pytest.raises(InputError) as excinfo:
        open_data(f"imagefolder:{tmp_path / 'nope'}", RGB8)
    one_line(excinfo, "not a directory")


def test_mixed_sizes_without_a_resize_are_refused(tmp_path):
    any_size = spec_for([TensorSpec("input", "float32", (-1, 3, -1, -1))])
    write_folder(tmp_path, {"a": [(8, 8), (9, 8)]})
    with pytest.raises(DataError) as excinfo:
        list(open_data(f"imagefolder:{tmp_path}", any_size).batches(8))
    one_line(excinfo, "mixed sizes", "001.png", "--resize")
    # with a resize the same folder loads
    assert open_data(f"imagefolder:{tmp_path}", any_size, Preprocessing(resize=8, size=(8, 8))).load_all()[0]["input"].shape == (2, 3, 8, 8)


def test_images_of_another_size_than_the_model_takes_are_refused(tmp_path):
    write_folder(tmp_path, {"a": [(10, 10)]})
    with pytest.raises(DataError) as excinfo:
        list(open_data(f"imagefolder:{tmp_path}", RGB8).batches(8))
    one_line(excinfo, "10x10", "takes 8x8", "--resize")


def test_a_corrupt_png_is_named(tmp_path):
    write_folder(tmp_path, {"a": [(8, 8)] * 2})
    bad = tmp_path / "a" / "001.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DataError) as excinfo:
        list(open_data(f"imagefolder:{tmp_path}", RGB8).batches(8))
    one_line(excinfo, "cannot decode image", str(bad), "replace or remove")


def test_16_bit_images_are_refused_not_clipped(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "a" / "deep.png")
    gray = spec_for([TensorSpec("input", "float32", (-1, 1, 8, 8))])
    with pytest.raises(DataError) as excinfo:
        open_data(f"imagefolder:{tmp_path}", gray).load_all()
    one_line(excinfo, "deep.png", "16-bit")


def test_more_class_folders_than_the_model_has_classes_is_refused(tmp_path):
    write_folder(tmp_path, {c: [(8, 8)] for c in "abcd"})
    with pytest.raises(InputError) as excinfo:
        open_data(f"imagefolder:{tmp_path}", RGB8)
    one_line(excinfo, "4 class folders", "outside the class range 0..2")


# --- npz ----------------------------------------------------------------------------------------

def two_input_arrays(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.random((n, 3, 8, 8), dtype=np.float32), "features": rng.random((n, 4), dtype=np.float32),
            "labels": rng.integers(0, 10, n)}


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_two_inputs_with_labels(tmp_path, compressed):
    arrays = two_input_arrays()
    path = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    data = open_data(f"npz:{path}", TWO_INPUTS)
    assert (data.info.samples, data.info.has_labels) == (10, True)
    assert isinstance(data.arrays["image"], np.memmap) != compressed  # stored members are mapped, not read
    got = list(data.batches(4, limit=9))
    assert [len(lab) for _, lab in got] == [4, 4, 1]
    for name in ("image", "features"):
        assert np.array_equal(np.concatenate([f[name] for f, _ in got]), arrays[name][:9])
        assert got[0][0][name].flags.writeable
    assert np.array_equal(np.concatenate([lab for _, lab in got]), arrays["labels"][:9])


def test_npz_without_labels_and_float64_converted(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, input=np.random.default_rng(0).random((3, 3, 8, 8)))
    data = open_data(f"npz:{path}", RGB8)
    feeds, labels = data.load_all()
    assert labels is None and not data.info.has_labels and feeds["input"].dtype == np.float32


def test_npz_lacking_an_input_is_refused(tmp_path):
    arrays = two_input_arrays()
    del arrays["features"]
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError) as excinfo:
        open_data(f"npz:{tmp_path / 'd.npz'}", TWO_INPUTS)
    one_line(excinfo, "lacks input 'features'", "image, labels")


def test_labels_outside_the_class_range_are_refused(tmp_path):
    arrays = two_input_arrays()
    arrays["labels"][7] = 10
    np.savez(tmp_path / "d.npz", **arrays)
    data = open_data(f"npz:{tmp_path / 'd.npz'}", TWO_INPUTS)
    with pytest.raises(InputError) as excinfo:
        list(data.batches(4))
    one_line(excinfo, "label 10", "outside the class range 0..9")


def test_npz_bad_files(tmp_path):
    with pytest.raises(InputError) as excinfo:
        open_data(f"npz:{tmp_path / 'none.npz'}", RGB8)
    one_line(excinfo, "does not exist")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError) as excinfo:
        open_data(f"npz:{tmp_path / 'junk.npz'}", RGB8)
    one_line(excinfo, "cannot read npz")
    arrays = two_input_arrays()
    arrays["labels"] = arrays["labels"][:5]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(DataError) as excinfo:
        open_data(f"npz:{tmp_path / 'short.npz'}", TWO_INPUTS)
    one_line(excinfo, "different lengths")


# --- script -------------------------------------------------------------------------------------

SCRIPT = '''
import numpy as np

def load_data():
    rng = np.random.default_rng(0)
    for n in (3, 5, 1, 4):  # items of any batch size
        yield {"image": rng.random((n, 3, 8, 8), dtype=np.float32), "features": rng.random((n, 4), dtype=np.float32)}, np.arange(n) % 10

def unlabelled():
    yield {"image": np.zeros((2, 3, 8, 8), np.float32), "features": np.zeros((2, 4), np.float32)}

def lacks_features():
    yield {"image": np.zeros((2, 3, 8, 8), np.float32)}

def raises():
    raise RuntimeError("no data here")
    yield
'''


def test_script_items_are_recut_to_the_batch_size(tmp_path):
    path = tmp_path / "data.py"
    path.write_text(SCRIPT)
    data = open_data(f"script:{path}", TWO_INPUTS)
    assert (data.info.samples, data.info.has_labels) == (None, True)
    got = list(data.batches(4))
    assert [len(lab) for _, lab in got] == [4, 4, 4, 1]
    assert np.concatenate([lab for _, lab in got]).tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 0, 0, 1, 2, 3]
    rng = np.random.default_rng(0)
    expected = []
    for n in (3, 5, 1, 4):
        expected.append(rng.random((n, 3, 8, 8), dtype=np.float32))
        rng.random((n, 4), dtype=np.float32)
    assert np.array_equal(np.concatenate([f["image"] for f, _ in got]), np.concatenate(expected))
    assert len(data.load_all(limit=6)[1]) == 6
    unlabelled = open_data(f"script:{path}:unlabelled", TWO_INPUTS)
    assert not unlabelled.info.has_labels and unlabelled.load_all()[1] is None


def test_script_errors(tmp_path):
    path = tmp_path / "data.py"
    path.write_text(SCRIPT)
    with pytest.raises(InputError) as excinfo:
        open_data(f"script:{path}:lacks_features", TWO_INPUTS).load_all()
    one_line(excinfo, "lacks inputs ['features']")
    with pytest.raises(InputError) as excinfo:
        open_data(f"script:{path}:nothing", TWO_INPUTS)
    one_line(excinfo, "no function 'nothing'")
    with pytest.raises(DataError) as excinfo:
        open_data(f"script:{path}:raises", TWO_INPUTS)
    one_line(excinfo, "RuntimeError: no data here")
    with pytest.raises(InputError) as excinfo:
        open_data(f"script:{tmp_path / 'none.py'}", TWO_INPUTS)
    one_line(excinfo, "does not exist")


def test_unknown_source_forms_are_refused():
    for text in ("imagenet", "npz:", "folder:/x", "mnist:train"):
        with pytest.raises(InputError) as excinfo:
            open_data(text, RGB8)
        one_line(excinfo, "not one of mnist, imagefolder:DIR")


# --- overlap ------------------------------------------------------------------------------------

def test_count_overlap_counts_identical_samples(tmp_path):
    arrays = two_input_arrays(10, seed=1)
    np.savez(tmp_path / "eval.npz", **arrays)
    fresh = two_input_arrays(5, seed=2)
    calib = {k: np.concatenate([arrays[k][3:8], fresh[k]]) for k in arrays}
    np.savez(tmp_path / "calib.npz", **calib)
    evaluation = open_data(f"npz:{tmp_path / 'eval.npz'}", TWO_INPUTS)
    assert count_overlap(open_data(f"npz:{tmp_path / 'calib.npz'}", TWO_INPUTS), evaluation) == 5
    np.savez(tmp_path / "fresh.npz", **fresh)
    assert count_overlap(open_data(f"npz:{tmp_path / 'fresh.npz'}", TWO_INPUTS), evaluation) == 0


def test_mnist_train_and_test_do_not_overlap_but_test_overlaps_itself():
    test = open_data("mnist", MNIST_CNN_SPEC)
    assert count_overlap(open_data("mnist", MNIST_CNN_SPEC, split="train"), test, limit=500) == 0
    assert count_overlap(test, open_data("mnist", MNIST_CNN_SPEC), limit=500) == 500
