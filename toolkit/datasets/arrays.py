"""Array data: .npz files (memory-mapped where stored uncompressed) and data scripts (the user's
own code, run in this process by design: Polygraphy's `load_data()` convention)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
import sys
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from toolkit.datasets.base import DataSource, DataSourceInfo, Feeds
from toolkit.errors import DataError, InputError
from toolkit.spec import ModelSpec

LABELS_KEY = "labels"


def _npz_member(path: Path, archive: zipfile.ZipFile, key: str):
    """A stored (uncompressed) .npy member memory-mapped in place; a compressed one read whole."""
    info = archive.getinfo(key + ".npy")
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] == b"PK\x03\x04":
                start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
                fh.seek(start)
                version = np.lib.format.read_magic(fh)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(fh)
                data_bytes = math.prod(shape) * dtype.itemsize
                # Only when the member holds exactly the header and the data: anything else is read the usual way.
                if not dtype.hasobject and dtype.kind != "V" and fh.tell() - start + data_bytes == info.file_size and data_bytes:
                    return np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order="F" if fortran else "C")
    return None


class NpzData(DataSource):
    def __init__(self, spec: ModelSpec, file: str):
        path = Path(file)
        if not path.is_file():
            raise InputError(f"npz file {path} does not exist", "pass npz:FILE with arrays keyed by input name")
        try:
            archive = np.load(path, allow_pickle=False)
            keys = list(archive.files)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"cannot read npz file {path} ({' '.join(str(exc).split())[:120]})", "write it with numpy.savez") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path} is a single .npy array, not an .npz archive", "write it with numpy.savez(FILE, <input name>=array, labels=...)")
        missing = [t.name for t in spec.inputs if t.name not in keys]
        if missing:
            raise InputError(f"npz file {path} lacks input {missing[0]!r} of model {spec.name} (it has {', '.join(keys) or 'no arrays'})",
                             f"save one array per input, keyed {', '.join(t.name for t in spec.inputs)}")
        self.arrays = {}
        with zipfile.ZipFile(path) as zf:
            for key in [t.name for t in spec.inputs] + ([LABELS_KEY] if LABELS_KEY in keys else []):
                try:
                    array = _npz_member(path, zf, key)
                    self.arrays[key] = array if array is not None else archive[key]
                except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
                    raise DataError(f"cannot read array {key!r} of {path} ({' '.join(str(exc).split())[:120]})", "write it with numpy.savez") from None
        counts = {k: (a.shape[0] if a.ndim else 0) for k, a in self.arrays.items()}
        if len(set(counts.values())) != 1:
            raise DataError(f"npz file {path} has arrays of different lengths {counts}", "give every input and the labels one row per sample")
        super().__init__(spec, DataSourceInfo("npz", str(path), next(iter(counts.values())), LABELS_KEY in self.arrays, None))

    def _raw_batches(self, batch_size, limit):
        n = self.info.samples if limit is None else min(limit, self.info.samples)
        labels = self.arrays.get(LABELS_KEY)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            yield ({t.name: np.asarray(self.arrays[t.name][start:stop]) for t in self.spec.inputs},
                   None if labels is None else np.asarray(labels[start:stop]))


# --- script -------------------------------------------------------------------------------------

def _split_script(text: str) -> tuple[Path, str]:
    file, sep, function = text.rpartition(":")
    if not sep or not function.isidentifier() or not file.endswith(".py"):
        file, function = text, "load_data"
    return Path(file), function


class ScriptData(DataSource):
    def __init__(self, spec: ModelSpec, text: str):
        self.file, self.function = _split_script(text)
        if not self.file.is_file() or self.file.suffix != ".py":
            raise InputError(f"data script {self.file} does not exist or is not a .py file", "pass script:FILE.py[:function]")
        self._loader = None
        super().__init__(spec, DataSourceInfo("script", f"{self.file}:{self.function}", None, False, None))
        # Whether it has labels is known from its first item; reports need it before the first batch.
        first = next(iter(self._items()), None)
        if first is None:
            raise DataError(f"{self.function}() in {self.file} yields nothing", "yield feed dicts or (feed_dict, label)")
        self.info = dataclasses.replace(self.info, has_labels=_split_item(first)[1] is not None)

    def _load(self):
        """Runs the user's script (their own code, by design) once; returns its data function."""
        if self._loader is None:
            folder = str(self.file.resolve().parent)
            if folder not in sys.path:
                sys.path.append(folder)  # modules beside the script import as under `python FILE.py`
            name = f"_toolkit_data_script_{hashlib.sha256(str(self.file.resolve()).encode()).hexdigest()[:12]}"
            module_spec = importlib.util.spec_from_file_location(name, self.file)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - the user's script: any failure is bad input
                sys.modules.pop(name, None)
                raise DataError(f"data script {self.file} raised {type(exc).__name__}: {' '.join(str(exc).split())[:160]}", "fix the script") from None
            function = getattr(module, self.function, None)
            if not callable(function):
                raise InputError(f"data script {self.file} has no function {self.function!r}", "define it, or name it: script:FILE.py:function")
            self._loader = function
        return self._loader

    def _items(self) -> Iterator:
        try:
            produced = self._load()()
            if not isinstance(produced, Iterable):
                raise DataError(f"{self.function}() in {self.file} returned {type(produced).__name__}, not an iterable", "yield feed dicts or (feed_dict, label)")
            yield from produced
        except (DataError, InputError):
            raise
        except Exception as exc:  # noqa: BLE001 - the user's generator failing mid-way
            raise DataError(f"data script {self.file} raised {type(exc).__name__}: {' '.join(str(exc).split())[:160]}", "fix the script") from None

    def _raw_batches(self, batch_size, limit):
        # Items may hold any batch size; they are re-cut to batch_size without holding more than one batch and one item.
        pending: list[tuple[Feeds, np.ndarray | None]] = []
        pending_n, labelled, total = 0, None, 0
        for item in self._items():
            feeds, labels = _split_item(item)
            feeds = self.spec.validate_feeds(feeds)
            n = next(iter(feeds.values())).shape[0]
            if labelled is None:
                labelled = labels is not None
            elif labelled != (labels is not None):
                raise DataError(f"data script {self.file} yields some items with labels and some without", "label every item or none")
            if labels is not None:
                labels = np.asarray(labels).reshape(-1)
            pending.append((feeds, labels))
            pending_n += n
            total += n
            while pending_n >= batch_size:
                batch, pending, pending_n = _cut(pending, batch_size)
                yield batch
            if limit is not None and total >= limit:
                break
        while pending_n > 0:
            batch, pending, pending_n = _cut(pending, min(batch_size, pending_n))
            yield batch


def _split_item(item):
    return item if isinstance(item, tuple) and len(item) == 2 else (item, None)


def _cut(pending, size):
    feeds = {name: np.concatenate([f[name] for f, _ in pending]) for name in pending[0][0]}
    labels = None if pending[0][1] is None else np.concatenate([lab for _, lab in pending])
    total = next(iter(feeds.values())).shape[0]
    head = ({k: v[:size] for k, v in feeds.items()}, None if labels is None else labels[:size])
    rest_n = total - size
    rest = [({k: v[size:] for k, v in feeds.items()}, None if labels is None else labels[size:])] if rest_n else []
    return head, rest, rest_n
