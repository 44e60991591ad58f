"""Saved outputs of a model other than the built-in CNN (`toolkit eval --save-outputs DIR` with
another model's --artifacts): every output of one (backend, precision) pair, keyed by output name.

Format: `<backend>-<precision>.npz`, read with `allow_pickle=False`:
- `b<batch size>_o<i>`: output number i (the provenance's `outputs` lists the names in order), one
  array per batch size the pair ran, any numeric dtype;
- `provenance`: a JSON string (backend, precision, device, runtime, model name, the reference's
  SHA-256, the data's location, samples and limit, labelled or not, the SHA-256 of every array);
- `signature` (only when saved with a key): HMAC-SHA256 over the provenance JSON exactly as stored.
The digests, signature and manifest check mean what they mean for the built-in's saved outputs
(toolkit.files.outputs, whose key, signing and manifest helpers this module shares).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import InputError
from toolkit.files.outputs import SIGNATURE, file_name, read_signed, sign
from toolkit.files.paths import ONNX_PRECISIONS
from toolkit.files.store import write_artifact

FORMAT = "toolkit-model-outputs"
FORMAT_VERSION = 1
_KEY = re.compile(r"^b([1-9][0-9]{0,6})_o([0-9]{1,4})$")


@dataclass
class SavedModelOutputs:
    backend: str
    precision: str
    outputs: dict[int, dict[str, np.ndarray]]  # batch size -> output name -> (N, ...) array
    provenance: dict = field(default_factory=dict)


def array_digest(array: np.ndarray) -> str:
    """Over dtype, shape and bytes: a relabelled dtype or reshaped array changes it too."""
    a = np.ascontiguousarray(array)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


def save_model_outputs(directory: str | os.PathLike, saved: SavedModelOutputs, names: list[str],
                       parents: list[Path] | None = None, key: bytes | None = None) -> Path:
    """Write one pair's outputs atomically with a manifest entry; with `key`, signed."""
    arrays = {f"b{bs}_o{i}": np.ascontiguousarray(outs[name]) for bs, outs in saved.outputs.items() for i, name in enumerate(names)}
    provenance = dict(saved.provenance, format=FORMAT, format_version=FORMAT_VERSION, backend=saved.backend,
                      precision=saved.precision, outputs=list(names),
                      sha256={k: array_digest(a) for k, a in arrays.items()})
    provenance_json = json.dumps(provenance, sort_keys=True)
    arrays["provenance"] = np.array(provenance_json)
    if key is not None:
        arrays[SIGNATURE] = np.array(sign(provenance_json, key))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    return write_artifact(Path(directory) / file_name(saved.backend, saved.precision), lambda tmp: tmp.write_bytes(data),
                          kind="saved-outputs", parents=parents)


def _refuse(path: Path, problem: str) -> InputError:
    return InputError(f"saved outputs {path} {problem}", "capture them again with `toolkit eval --save-outputs DIR`")


def load_model_outputs(path: str | os.PathLike, names: list[str], key: bytes | None = None) -> SavedModelOutputs:
    """Read and check one file against the model's output `names`; anything not exactly as written
    is refused, and with `key` so is a file not signed with it."""
    p = Path(path)
    arrays, provenance = read_signed(p, key, contents="outputs")
    if not isinstance(provenance, dict) or provenance.get("format") != FORMAT:
        found = provenance.get("format") if isinstance(provenance, dict) else None
        raise _refuse(p, f"is not another model's outputs file (format {found!r}; the built-in CNN's are gated without a model.json)")
    if provenance.get("format_version") != FORMAT_VERSION:
        raise _refuse(p, f"has format version {provenance.get('format_version')!r}; this toolkit reads {FORMAT_VERSION}")
    if provenance.get("outputs") != list(names):
        raise _refuse(p, f"holds outputs {provenance.get('outputs')}, this model has {list(names)}")
    digests = provenance.get("sha256")
    if not isinstance(digests, dict) or set(digests) != set(arrays):
        raise _refuse(p, "has arrays that its provenance does not list")
    outputs: dict[int, dict[str, np.ndarray]] = {}
    for k, array in arrays.items():
        match = _KEY.match(k)
        if not match or int(match.group(2)) >= len(names):
            raise _refuse(p, f"holds an unexpected array {k!r}")
        if array.dtype.kind not in "fiub" or array.ndim < 1:
            raise _refuse(p, f"array {k} is {array.dtype} {array.shape}, not a numeric batch")
        if digests[k] != array_digest(array):
            raise _refuse(p, f"has array {k} that differs from its recorded SHA-256 (changed after it was written)")
        outputs.setdefault(int(match.group(1)), {})[names[int(match.group(2))]] = array
    if not outputs or any(set(o) != set(names) for o in outputs.values()):
        raise _refuse(p, "does not hold every output at every batch size")
    if len({a.shape[0] for o in outputs.values() for a in o.values()}) != 1:
        raise _refuse(p, "has outputs with different sample counts")
    for name in ("backend", "precision", "model", "reference_sha256"):
        if not isinstance(provenance.get(name), str):
            raise _refuse(p, f"provenance lacks {name!r}")
    if provenance["precision"] not in ONNX_PRECISIONS:
        raise _refuse(p, f"names an unknown precision {provenance['precision']!r} (known: {', '.join(ONNX_PRECISIONS)})")
    if p.name != file_name(provenance["backend"], provenance["precision"]):
        raise _refuse(p, f"is named for another pair than the {provenance['backend']}/{provenance['precision']} it holds")
    return SavedModelOutputs(provenance["backend"], provenance["precision"], dict(sorted(outputs.items())), provenance)
