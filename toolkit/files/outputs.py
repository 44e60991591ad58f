"""Saved outputs: one pair's logits with their provenance, so a gate on another machine can judge
them (`toolkit eval --save-outputs DIR` here, `--load-outputs DIR` there).

Format: `<backend>-<precision>.npz`, read with `allow_pickle=False` (arrays only, no code):
- `logits_b<batch size>`: float32 (N, 10), one array per batch size the pair ran;
- `provenance`: a JSON string (backend, precision, device, runtime, versions, machine, model and
  checkpoint SHA-256, the test images used, the SHA-256 of every logits array).
- `signature` (only when saved with a key): HMAC-SHA256, hex, over the provenance JSON exactly as
  stored, which lists every logits digest; so it covers the logits too.
What the digests protect: a file changed by accident (a bad copy, a truncated transfer) or edited by
someone who forgot the digest; the checkpoint digest ties the outputs to the weights they came from.
What they do not: a deliberate edit. Anyone can rewrite the provenance (say, CPU logits relabelled
`tensorrt/int8`) and recompute the digests and the directory's manifest. Only the signature, made
with a key the editor does not hold, authenticates the provenance: with `key` given, a file without
a signature or with a wrong one is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import InputError
from toolkit.files.paths import ONNX_PRECISIONS, not_a_file
from toolkit.files.store import directory_lock, read_manifest, sha256_file, write_artifact
from toolkit.model import NUM_CLASSES

FORMAT = "toolkit-outputs"
FORMAT_VERSION = 1
MAX_OUTPUT_BYTES = 64 * 1024 * 1024  # 10,000 x 10 float32 is 400 KB per batch size
_KEY = re.compile(r"^logits_b([1-9][0-9]{0,6})$")
SIGNATURE = "signature"
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 4096


@dataclass
class SavedOutputs:
    backend: str
    precision: str
    logits: dict[int, np.ndarray]  # batch size -> (N, 10) float32
    provenance: dict = field(default_factory=dict)


def file_name(backend: str, precision: str) -> str:
    return f"{backend}-{precision}.npz"


def logits_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def read_key(path: str | os.PathLike) -> bytes:
    """A signing key: the bytes of a small regular file (a trailing newline is not part of it)."""
    p = Path(path)
    fix = "write one with `head -c 32 /dev/urandom > KEYFILE` and pass the same file at save and at load"
    if problem := not_a_file(p):
        raise InputError(f"signing key {p} {problem}", fix)
    if p.stat().st_size > MAX_KEY_BYTES:
        raise InputError(f"signing key {p} is larger than {MAX_KEY_BYTES} bytes: not a key file", fix)
    try:
        key = p.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise InputError(f"cannot read signing key {p} ({exc.strerror})", fix) from None
    if len(key) < MIN_KEY_BYTES:
        raise InputError(f"signing key {p} has {len(key)} bytes, fewer than {MIN_KEY_BYTES}", fix)
    return key


def sign(provenance_json: str, key: bytes) -> str:
    """HMAC-SHA256 of the provenance exactly as stored (it lists every logits digest)."""
    return hmac.new(key, provenance_json.encode("utf-8"), hashlib.sha256).hexdigest()


def save_outputs(directory: str | os.PathLike, outputs: SavedOutputs, parents: list[Path] | None = None,
                 key: bytes | None = None) -> Path:
    """Write one pair's outputs atomically, with a manifest entry (parents: the checkpoint, the model);
    with `key`, signed (see the module docstring)."""
    provenance = dict(outputs.provenance, format=FORMAT, format_version=FORMAT_VERSION, backend=outputs.backend,
                      precision=outputs.precision,
                      logits_sha256={str(bs): logits_digest(x) for bs, x in outputs.logits.items()})
    arrays = {f"logits_b{bs}": np.ascontiguousarray(x, dtype=np.float32) for bs, x in outputs.logits.items()}
    provenance_json = json.dumps(provenance, sort_keys=True)
    arrays["provenance"] = np.array(provenance_json)
    if key is not None:
        arrays[SIGNATURE] = np.array(sign(provenance_json, key))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    return write_artifact(Path(directory) / file_name(outputs.backend, outputs.precision), lambda tmp: tmp.write_bytes(data),
                          kind="saved-outputs", parents=parents)


def _refuse(path: Path, problem: str) -> InputError:
    return InputError(f"saved outputs {path} {problem}", "capture them again with `toolkit eval --save-outputs DIR`")


def read_signed(path: Path, key: bytes | None, contents: str = "logits") -> tuple[dict[str, np.ndarray], object]:
    """The arrays and the parsed provenance record of a saved-outputs file (the built-in's or another
    model's): its size, readability and, with `key`, its signature checked; the record's format is
    for the caller to judge."""
    try:
        if path.stat().st_size > MAX_OUTPUT_BYTES:
            raise _refuse(path, f"is larger than {MAX_OUTPUT_BYTES // (1024 * 1024)} MiB")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _refuse(path, f"is not a readable .npz file ({' '.join(str(exc).split())[:120]})") from None
    raw = arrays.pop("provenance", None)
    if raw is None or raw.dtype.kind != "U" or raw.shape != ():
        raise _refuse(path, "has no provenance record")
    signature = arrays.pop(SIGNATURE, None)
    if key is not None:
        if signature is None:
            raise InputError(f"saved outputs {path} is not signed, and a signing key was given",
                             "capture them again with `toolkit eval --save-outputs DIR --sign-key KEYFILE`")
        if signature.dtype.kind != "U" or signature.shape != () or not hmac.compare_digest(str(signature), sign(str(raw), key)):
            raise InputError(f"saved outputs {path} has a signature that this key did not make (their provenance or {contents} "
                             "were changed, or another key signed them)", "gate only outputs signed with this key; capture them again")
    try:
        return arrays, json.loads(str(raw))
    except ValueError:
        raise _refuse(path, "has a provenance record that is not JSON") from None


def load_outputs(path: str | os.PathLike, key: bytes | None = None) -> SavedOutputs:
    """Read and check one saved-outputs file; anything not exactly as written is refused. With
    `key`, so is a file whose signature is missing or was not made with that key."""
    p = Path(path)
    arrays, provenance = read_signed(p, key)
    if not isinstance(provenance, dict) or provenance.get("format") != FORMAT:
        raise _refuse(p, f"is not a toolkit outputs file (format {provenance.get('format') if isinstance(provenance, dict) else None!r})")
    if provenance.get("format_version") != FORMAT_VERSION:
        raise _refuse(p, f"has format version {provenance.get('format_version')!r}; this toolkit reads {FORMAT_VERSION}")
    logits: dict[int, np.ndarray] = {}
    for key, array in arrays.items():
        match = _KEY.match(key)
        if not match:
            raise _refuse(p, f"holds an unexpected array {key!r}")
        if array.dtype != np.float32 or array.ndim != 2 or array.shape[1] != NUM_CLASSES:
            raise _refuse(p, f"array {key} is {array.dtype} {array.shape}, expected float32 (N, {NUM_CLASSES})")
        logits[int(match.group(1))] = array
    if not logits:
        raise _refuse(p, "holds no logits")
    if len({a.shape[0] for a in logits.values()}) != 1:
        raise _refuse(p, "has batch sizes with different image counts")
    digests = provenance.get("logits_sha256")
    if not isinstance(digests, dict) or set(digests) != {str(bs) for bs in logits}:
        raise _refuse(p, "has logits that its provenance does not list")
    for bs, array in logits.items():
        if digests[str(bs)] != logits_digest(array):
            raise _refuse(p, f"has logits at batch {bs} that differ from their recorded SHA-256 (changed after it was written)")
    for name in ("backend", "precision", "checkpoint_sha256"):
        if not isinstance(provenance.get(name), str):
            raise _refuse(p, f"provenance lacks {name!r}")
    if provenance["precision"] not in ONNX_PRECISIONS:
        raise _refuse(p, f"names an unknown precision {provenance['precision']!r} (known: {', '.join(ONNX_PRECISIONS)})")
    if p.name != file_name(provenance["backend"], provenance["precision"]):
        raise _refuse(p, f"is named for another pair than the {provenance['backend']}/{provenance['precision']} it holds")
    return SavedOutputs(provenance["backend"], provenance["precision"], logits, provenance)


def check_manifest(path: Path) -> None:
    """When the directory has a manifest, the file must be in it with the same size and SHA-256.
    (A consistency check against accidents, like the digests: anyone can rewrite the manifest.)"""
    directory = path.parent
    if not (directory / "manifest.json").exists():
        return
    fix = "copy the directory as `toolkit eval --save-outputs` wrote it, or capture the outputs again"
    with directory_lock(directory, shared=True):
        try:
            entry = read_manifest(directory)["artifacts"].get(path.name)
        except Exception as exc:  # noqa: BLE001 - an unreadable manifest: said in one line
            raise InputError(f"the manifest beside saved outputs {path} is unreadable ({' '.join(str(exc).split())[:160]})", fix) from None
        if entry is None:
            raise InputError(f"saved outputs {path} is not listed in {directory / 'manifest.json'}", fix)
        size, digest = path.stat().st_size, sha256_file(path)
    if size != entry["size"] or digest != entry["sha256"]:
        raise InputError(f"saved outputs {path} differ from their entry in {directory / 'manifest.json'} "
                         f"(sha256 {digest[:12]}… != recorded {entry['sha256'][:12]}…)", fix)


def list_output_files(directory: str | os.PathLike) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"outputs directory {d} does not exist", "pass the DIR given to `toolkit eval --save-outputs DIR`")
    files = sorted(d.glob("*.npz"))
    if not files:
        raise InputError(f"outputs directory {d} holds no saved outputs (*.npz)", "pass the DIR given to `toolkit eval --save-outputs DIR`")
    return files


def check_checkpoint(outputs: SavedOutputs, checkpoint: str | os.PathLike, path: Path) -> None:
    """Refuse outputs captured from other weights than the checkpoint being gated."""
    expected = sha256_file(checkpoint)
    if outputs.provenance["checkpoint_sha256"] != expected:
        raise InputError(
            f"saved outputs {path} come from checkpoint {outputs.provenance['checkpoint_sha256'][:12]}…, "
            f"not {checkpoint} ({expected[:12]}…)",
            "gate them with the checkpoint they were captured from (--checkpoint), or capture them again",
        )
