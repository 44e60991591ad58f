"""Where data comes from: `--data` and `--calibration-data`, read in batches, never whole.

    mnist                      today's verified IDX files (toolkit.data), split test or train
    imagefolder:DIR            class subfolders of PNG/JPEG; labels from the sorted folder names
    npz:FILE                   arrays keyed by input name, optional `labels`
    script:FILE.py[:function]  a function (default `load_data`) yielding feed dicts or (feed, label)

Every batch is checked with `ModelSpec.validate_feeds` and its labels against the class range
before a caller sees it. An ImageFolder keeps only the file list in memory; images are decoded
one batch at a time. Uncompressed .npz members are memory-mapped. A script is the user's own code
and runs in this process, by design (Polygraphy's `load_data()` convention).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np

from toolkit.datasets.arrays import NpzData, ScriptData
from toolkit.datasets.base import Batch, DataSource, DataSourceInfo, Feeds
from toolkit.datasets.images import ImageFolderData, MnistData, resolve_preprocessing
from toolkit.errors import InputError
from toolkit.spec import ModelSpec, Preprocessing

KINDS = ("mnist", "imagefolder", "npz", "script")
__all__ = ["Batch", "DataSource", "DataSourceInfo", "Feeds", "ImageFolderData", "KINDS", "MnistData", "NpzData", "ScriptData",
           "count_overlap", "open_data", "resolve_preprocessing"]


def open_data(source: str, spec: ModelSpec, preprocessing: Preprocessing | None = None,
              split: str = "test", data_dir=None) -> DataSource:
    """`mnist` | `imagefolder:DIR` | `npz:FILE` | `script:FILE.py[:function]` as a DataSource for `spec`."""
    kind, sep, rest = source.partition(":")
    if kind == "mnist" and not sep:
        return MnistData(spec, preprocessing, split, data_dir)
    if sep and rest:
        if kind == "imagefolder":
            return ImageFolderData(spec, rest, preprocessing)
        if kind == "npz":
            return NpzData(spec, rest)
        if kind == "script":
            return ScriptData(spec, rest)
    raise InputError(f"data source {source!r} is not one of mnist, imagefolder:DIR, npz:FILE, script:FILE.py[:function]",
                     "pass --data in one of those forms")


def _sample_hashes(source: DataSource, limit: int | None) -> Iterator[bytes]:
    for feeds, _ in source.batches(256, limit):
        names = sorted(feeds)
        for i in range(next(iter(feeds.values())).shape[0]):
            digest = hashlib.blake2b(digest_size=16)
            for name in names:
                digest.update(name.encode() + b"\0")
                digest.update(np.ascontiguousarray(feeds[name][i]).tobytes())
            yield digest.digest()


def count_overlap(calibration: DataSource, evaluation: DataSource, limit: int | None = None) -> int:
    """How many calibration samples also occur in the evaluation set (identical input bytes after
    preprocessing); callers warn when it is not 0. Holds 16 bytes per evaluation sample."""
    seen = set(_sample_hashes(evaluation, limit))
    return sum(1 for h in _sample_hashes(calibration, limit) if h in seen)
