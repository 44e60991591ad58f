import os
import subprocess
from pathlib import Path

import pytest
from helpers import DATA_DIR, REFERENCE

CHECKPOINT = REFERENCE / "mnist_cnn.pt"


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def pytest_collection_modifyitems(config, items):
    import importlib.util

    has_cuda = _cuda()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU; none is visible on this machine"))
        if "tensorrt" in item.keywords and not (has_trt and has_cuda):
            item.add_marker(pytest.mark.skip(reason="needs TensorRT and a CUDA GPU; this machine lacks " + ("TensorRT" if not has_trt else "a GPU")))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from toolkit.data import ensure_mnist

    ensure_mnist(DATA_DIR)
    return DATA_DIR


@pytest.fixture(scope="session")
def checkpoint() -> Path:
    assert CHECKPOINT.is_file(), "the committed checkpoint artifacts/reference/mnist_cnn.pt is missing"
    return CHECKPOINT


@pytest.fixture(scope="session")
def test_images(data_dir):
    from toolkit.data import load_split_uint8, to_model_input

    images, labels = load_split_uint8("test", data_dir)
    return to_model_input(images), labels.astype("int64")


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return proc.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def readonly_dir(tmp_path):
    """A directory nobody (root included) can write: a read-only tmpfs, else chmod 500 for non-root."""
    d = tmp_path / "readonly"
    if _mount_tmpfs(d, "ro,size=1m"):
        yield d
        _umount(d)
        return
    d.mkdir(exist_ok=True)
    d.chmod(0o500)
    if os.access(d, os.W_OK):
        d.chmod(0o700)
        pytest.skip("cannot make an unwritable directory here (root without mount rights)")
    yield d
    d.chmod(0o700)


@pytest.fixture
def full_dir(tmp_path):
    """A directory on a tiny tmpfs that fills up after a few KiB (real ENOSPC)."""
    d = tmp_path / "full"
    if not _mount_tmpfs(d, "size=16k"):
        pytest.skip("cannot mount a tiny tmpfs here (needs root with mount rights)")
    yield d
    _umount(d)


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory, checkpoint, data_dir):
    """Every ONNX precision re-exported from the committed checkpoint, once per test session."""
    from toolkit.export.onnx import export_onnx
    from toolkit.files.paths import ONNX_PRECISIONS

    out = tmp_path_factory.mktemp("exported")
    for precision in ONNX_PRECISIONS:
        export_onnx(checkpoint, precision, out, data_dir=data_dir)
    return out
