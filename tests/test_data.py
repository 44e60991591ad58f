import gzip
import hashlib
import shutil

import numpy as np
import pytest

from toolkit import data
from toolkit.errors import DataError


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parse_idx_good_images_and_labels():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    parsed = data.parse_idx(idx_bytes(images), expected_ndim=3)
    assert parsed.shape == (2, 28, 28)
    assert np.array_equal(parsed, images)
    labels = np.array([3, 7, 9], dtype=np.uint8)
    assert np.array_equal(data.parse_idx(idx_bytes(labels), expected_ndim=1), labels)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "truncated"),
        (b"\x00\x00", "truncated"),
        (b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc", "magic"),
        (b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc", "magic"),
        (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"), "header"),
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc", "truncated"),
        (b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"abc", "longer"),
        (b"\x00\x00\x08\x00", "dimensions"),
    ],
)
def test_parse_idx_rejects_malformed(raw, message):
    with pytest.raises(DataError, match=message):
        data.parse_idx(raw)


def test_parse_idx_wrong_rank():
    with pytest.raises(DataError, match="dimensions"):
        data.parse_idx(idx_bytes(np.zeros((4,), np.uint8)), expected_ndim=3)


def test_parse_idx_refuses_huge_declared_payload():
    raw = b"\x00\x00\x08\x03" + (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big")
    with pytest.raises(DataError, match="too large"):
        data.parse_idx(raw)


def test_real_files_verify_and_load(data_dir):
    status = data.ensure_mnist(data_dir)
    assert set(status.files) == set(data.SHA256)
    x, y = data.load_split("test", data_dir)
    assert tuple(x.shape) == (10_000, 1, 28, 28) and str(x.dtype) == "torch.float32"
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert tuple(y.shape) == (10_000,) and int(y.max()) == 9
    images, labels = data.load_split_uint8("train", data_dir)
    assert images.shape == (60_000, 28, 28) and labels.shape == (60_000,)
    for name, digest in data.SHA256.items():
        assert hashlib.sha256(data._read_raw(data._find(data_dir, name))).hexdigest() == digest


def test_gzip_files_are_accepted(tmp_path, data_dir):
    for name in data.SHA256:
        src = data._find(data_dir, name)
        with gzip.open(tmp_path / f"{name}.gz", "wb") as fh:
            fh.write(data._read_raw(src))
    status = data.ensure_mnist(tmp_path)
    assert all(v == "found" for v in status.files.values())
    x, _ = data.load_split("test", tmp_path)
    assert x.shape[0] == 10_000


def test_checksum_mismatch_names_file_and_both_digests(tmp_path, data_dir):
    for name in data.SHA256:
        shutil.copy(data._find(data_dir, name), tmp_path / name)
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(bad.read_bytes())
    raw[100] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError) as exc:
        data.ensure_mnist(tmp_path)
    msg = str(exc.value)
    assert "t10k-labels-idx1-ubyte" in msg
    assert data.SHA256["t10k-labels-idx1-ubyte"] in msg
    assert hashlib.sha256(bytes(raw)).hexdigest() in msg


def test_no_source_reachable_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(data, "MIRRORS", ("http://127.0.0.1:9/",))
    with pytest.raises(DataError, match="by hand"):
        data.ensure_mnist(tmp_path / "empty")
    assert not any((tmp_path / "empty").glob("*-ubyte*"))
