"""Data sources for any model, read in batches (interim: `mnist` and `npz:FILE` only).

This module implements the interface agreed for issue 16 (DataSourceInfo, DataSource.batches,
open_data, count_overlap) with the two sources the pipeline's own tests need; the full module
(imagefolder, script, preprocessing) replaces it when it lands.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import InputError
from toolkit.spec import ModelSpec, Preprocessing


@dataclass(frozen=True)
class DataSourceInfo:
    kind: str
    location: str
    samples: int | None
    has_labels: bool
    preprocessing: dict | None
    class_names: tuple[str, ...] | None = None


class DataSource:
    info: DataSourceInfo

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
        raise NotImplementedError

    def load_all(self, limit: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        feeds, labels = {}, []
        for f, y in self.batches(1024, limit):
            for k, v in f.items():
                feeds.setdefault(k, []).append(v)
            if y is not None:
                labels.append(y)
        return {k: np.concatenate(v) for k, v in feeds.items()}, (np.concatenate(labels) if labels else None)


def _check_labels(labels: np.ndarray, spec: ModelSpec, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise InputError(f"{where}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}", "store class indices")
    if spec.task.kind == "classification" and labels.size and (labels.min() < 0 or labels.max() >= spec.task.num_classes):
        raise InputError(f"{where}: labels span [{labels.min()}, {labels.max()}], outside the model's {spec.task.num_classes} classes",
                         f"use class indices 0..{spec.task.num_classes - 1}")
    return labels.astype(np.int64)


class _Npz(DataSource):
    def __init__(self, path: str, spec: ModelSpec):
        p = Path(path)
        if not p.is_file():
            raise InputError(f"npz file {p} does not exist", "pass --data npz:FILE with arrays keyed by input name")
        try:
            with np.load(p, allow_pickle=False) as npz:
                self.arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"{p} is not a readable .npz file ({' '.join(str(exc).split())[:120]})", "write it with numpy.savez") from None
        missing = [t.name for t in spec.inputs if t.name not in self.arrays]
        if missing:
            raise InputError(f"{p} lacks the model's inputs {missing} (it holds {sorted(self.arrays)})",
                             f"store one array per input: {', '.join(t.name for t in spec.inputs)}")
        self.spec = spec
        counts = {len(self.arrays[t.name]) for t in spec.inputs}
        if len(counts) != 1:
            raise InputError(f"{p}: the inputs hold different sample counts {sorted(counts)}", "store the same number of samples for every input")
        labels = self.arrays.get("labels")
        self.labels = None if labels is None else _check_labels(labels, spec, str(p))
        n = counts.pop()
        if self.labels is not None and len(self.labels) != n:
            raise InputError(f"{p}: {len(self.labels)} labels for {n} samples", "store one label per sample")
        self.info = DataSourceInfo("npz", str(p), n, self.labels is not None, None)

    def batches(self, batch_size, limit=None):
        n = self.info.samples if limit is None else min(limit, self.info.samples)
        for i in range(0, n, batch_size):
            j = min(n, i + batch_size)
            feeds = self.spec.validate_feeds({t.name: self.arrays[t.name][i:j] for t in self.spec.inputs})
            yield feeds, None if self.labels is None else self.labels[i:j]


class _Mnist(DataSource):
    def __init__(self, spec: ModelSpec, split: str, data_dir):
        from toolkit.data import load_split_uint8

        self.images, self.labels = load_split_uint8(split, data_dir)
        self.spec = spec
        self.info = DataSourceInfo("mnist", "mnist", len(self.images), True, asdict(Preprocessing(size=(28, 28), channels=1)),
                                   tuple(str(d) for d in range(10)))

    def batches(self, batch_size, limit=None):
        from toolkit.data import to_model_input

        n = len(self.images) if limit is None else min(limit, len(self.images))
        for i in range(0, n, batch_size):
            j = min(n, i + batch_size)
            yield self.spec.validate_feeds(to_model_input(self.images[i:j])), _check_labels(self.labels[i:j], self.spec, "mnist")


def open_data(source: str, spec: ModelSpec, preprocessing: Preprocessing | None = None, split: str = "test",
              data_dir=None) -> DataSource:
    kind, _, rest = source.partition(":")
    if source == "mnist":
        return _Mnist(spec, split, data_dir)
    if kind == "npz" and rest:
        return _Npz(rest, spec)
    raise InputError(f"unknown data source {source!r}", "pass mnist or npz:FILE")


def _digests(source: DataSource, limit: int | None) -> set[str]:
    out = set()
    for feeds, _ in source.batches(256, limit):
        names = sorted(feeds)
        for i in range(len(feeds[names[0]])):
            h = hashlib.sha256()
            for name in names:
                h.update(feeds[name][i].tobytes())
            out.add(h.hexdigest())
    return out


def count_overlap(calibration: DataSource, evaluation: DataSource, limit: int | None = None) -> int:
    return len(_digests(calibration, limit) & _digests(evaluation, limit))
