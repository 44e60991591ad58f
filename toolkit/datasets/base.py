"""The data source's shape: DataSourceInfo for reports, DataSource's checked batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from toolkit.errors import DataError, InputError
from toolkit.spec import ModelSpec

Feeds = dict[str, np.ndarray]
Batch = tuple[Feeds, "np.ndarray | None"]


@dataclass(frozen=True)
class DataSourceInfo:
    kind: str  # "mnist" | "imagefolder" | "npz" | "script"
    location: str  # the DIR / FILE / "mnist" (with its split)
    samples: int | None  # None when a script cannot tell without reading it all
    has_labels: bool
    preprocessing: dict | None  # the resolved preprocessing (Preprocessing as a dict), for reports
    class_names: tuple[str, ...] | None = None  # imagefolder: the sorted folder names


class DataSource:
    """Batches of feeds keyed by the spec's input names, checked, with int64 labels or None."""

    info: DataSourceInfo

    def __init__(self, spec: ModelSpec, info: DataSourceInfo):
        self.spec = spec
        self.info = info

    def _raw_batches(self, batch_size: int, limit: int | None) -> Iterator[tuple[object, object]]:
        raise NotImplementedError

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        """Feeds keyed by the spec's input names, each checked with spec.validate_feeds; labels int64 (N,) or None."""
        if batch_size < 1:
            raise InputError(f"batch size {batch_size} is not positive", "pass a batch size of 1 or more")
        if limit is not None and limit < 0:
            raise InputError(f"limit {limit} is negative", "pass 0 or more samples")
        seen = 0
        for feeds, labels in self._raw_batches(batch_size, limit):
            checked = self.spec.validate_feeds(feeds)
            n = next(iter(checked.values())).shape[0]
            if limit is not None and seen + n > limit:
                keep = limit - seen
                checked = {k: v[:keep] for k, v in checked.items()}
                labels = None if labels is None else labels[:keep]
                n = keep
            if n == 0:
                break
            yield checked, self._check_labels(labels, n)
            seen += n
            if limit is not None and seen >= limit:
                break

    def load_all(self, limit: int | None = None) -> Batch:
        """Every sample at once (concatenated batches): for small sets and tests."""
        parts, labels = [], []
        for feeds, batch_labels in self.batches(1024, limit):
            parts.append(feeds)
            labels.append(batch_labels)
        if not parts:
            raise DataError(f"{self.info.kind} data {self.info.location} has no samples", "point --data at data with samples")
        feeds = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        return feeds, None if labels[0] is None else np.concatenate(labels)

    def _check_labels(self, labels, n: int) -> np.ndarray | None:
        if labels is None:
            return None
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise DataError(f"{self._where()} has labels of dtype {labels.dtype}", "give integer class indices")
        labels = labels.reshape(-1).astype(np.int64)
        if labels.shape[0] != n:
            raise DataError(f"{self._where()} has {labels.shape[0]} labels for {n} samples", "give one label per sample")
        task = self.spec.task
        if task.kind == "classification" and labels.size:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= task.num_classes:
                raise InputError(f"{self._where()} has label {lo if lo < 0 else hi}, outside the class range 0..{task.num_classes - 1} of model {self.spec.name}",
                                 "give labels that are class indices of this model, or pass the right --num-classes")
        return labels

    def _where(self) -> str:
        return f"{self.info.kind} data {self.info.location}"
