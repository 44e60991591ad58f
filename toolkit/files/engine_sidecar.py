"""The sidecar record next to each TensorRT engine, and the check that runs before an engine is loaded.

An engine file is executable content, and it only runs on the TensorRT version and GPU that built
it. TensorRT's own checks fail late (inside deserialisation) and are not tamper detection, so every
engine carries `<engine>.json`: who built it, from which ONNX, for which GPU, and its SHA-256.
`verify_engine_file` compares all of it with this machine and the files on disk, and hands back
the engine bytes only when everything matches; nothing here imports TensorRT.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from toolkit.errors import InputError, ModelFileError
from toolkit.files import paths
from toolkit.files.store import sha256_bytes, sha256_file
from toolkit.model import IMAGE_SHAPE

SIDECAR_FORMAT = "toolkit-tensorrt-engine"
SIDECAR_VERSION = 1
MAX_ENGINE_BYTES = 256 * 1024 * 1024  # this CNN's engines are a few MB; refuse to read giant files
DEFAULT_PROFILE = paths.DEFAULT_ENGINE_PROFILE
T = TypeVar("T")


@dataclass(frozen=True)
class EngineOptions:
    min_batch: int = DEFAULT_PROFILE[0]
    opt_batch: int = DEFAULT_PROFILE[1]  # the batch the kernels are tuned for
    max_batch: int = DEFAULT_PROFILE[2]
    workspace_mb: int = 1024
    strict_fp32: bool = False  # clear TF32: fp32 layers compute in true fp32

    def __post_init__(self):
        for name in ("min_batch", "opt_batch", "max_batch", "workspace_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}", "pass e.g. --min-batch 1 --opt-batch 64 --max-batch 1024")
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise InputError(
                f"the batch profile needs min <= opt <= max, got {self.min_batch}/{self.opt_batch}/{self.max_batch}",
                "pass e.g. --min-batch 1 --opt-batch 64 --max-batch 1024",
            )

    @property
    def profile(self) -> tuple[int, int, int]:
        return self.min_batch, self.opt_batch, self.max_batch

    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes of the input for the optimization profile."""
        return tuple((batch, *IMAGE_SHAPE) for batch in self.profile)


def profile_shapes(profile: tuple[int, int, int], spec=None) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Every input's (min, opt, max) shapes for an optimization profile: an input whose batch axis
    is dynamic takes the profile's batches, one with a fixed batch keeps its shape (min = opt = max).
    `spec`: another model's ModelSpec; None for the built-in CNN's one input."""
    if spec is None or spec.source == "mnist-cnn":
        from toolkit.model import INPUT_NAME

        return {INPUT_NAME: tuple((batch, *IMAGE_SHAPE) for batch in profile)}
    return {t.name: tuple((batch, *t.item_shape) for batch in profile) if t.batch_dynamic else (tuple(t.shape),) * 3
            for t in spec.inputs}


@dataclass(frozen=True)
class EngineEnvironment:
    """What an engine is tied to: the TensorRT release and the GPU that built (or will run) it."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.9"


@dataclass(frozen=True)
class VerifiedEngine:
    data: bytes  # exactly the bytes whose SHA-256 matched the record: deserialize these, not the file
    record: dict


def rebuild_command(precision: str, out_dir: str | os.PathLike, strict_fp32: bool = False, profile: tuple[int, int, int] = DEFAULT_PROFILE) -> str:
    """The command that rebuilds an engine with the same settings (non-default ones spelled out)."""
    parts = ["toolkit export --format tensorrt", f"--precision {precision}", f"--out {out_dir}"]
    for flag, value, default in zip(("--min-batch", "--opt-batch", "--max-batch"), profile, DEFAULT_PROFILE, strict=True):
        if value != default:
            parts.append(f"{flag} {value}")
    if strict_fp32:
        parts.append("--strict-fp32")
    return "rebuild it with `" + " ".join(parts) + "`"


def _settings_from_name(engine_path: Path) -> tuple[str, bool]:
    """(precision, strict) from a name like mnist_cnn.fp32-strict.engine; used when no record helps."""
    stem = engine_path.name.removesuffix(".engine")
    tag = stem.rsplit(".", 1)[-1]
    strict = tag.endswith("-strict")
    precision = tag.removesuffix("-strict")
    return (precision if precision in paths.PRECISIONS else "fp32"), strict


def _relative_or_absolute(path: Path, base: Path) -> str:
    return path.name if path.resolve().parent == base.resolve() else str(path.resolve())


def build_record(
    *,
    engine_path: Path,
    engine_bytes: bytes,
    onnx_path: Path,
    onnx_sha256: str,
    precision: str,
    strict_fp32: bool,
    tf32: bool,
    profile: tuple[int, int, int],
    workspace_mb: int,
    io: list[dict],
    environment: EngineEnvironment,
    build_seconds: float,
    extra: dict | None = None,
) -> dict:
    """The sidecar's content for an engine just built (a plain dict, written as JSON)."""
    import toolkit

    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "engine": {"file": engine_path.name, "sha256": sha256_bytes(engine_bytes), "size": len(engine_bytes)},
        "onnx": {"file": _relative_or_absolute(onnx_path, engine_path.parent), "sha256": onnx_sha256},
        "precision": precision,
        "strict_fp32": strict_fp32,
        "tf32": tf32,
        "profile": {"min": profile[0], "opt": profile[1], "max": profile[2]},
        "workspace_mb": workspace_mb,
        "io": io,
        "tensorrt_version": environment.tensorrt_version,
        "gpu": {"name": environment.gpu_name, "compute_capability": environment.compute_capability},
        "toolkit_version": toolkit.__version__,
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(build_seconds, 3),
        **(extra or {}),
    }


def profile_of(record: dict) -> tuple[int, int, int]:
    p = record["profile"]
    return int(p["min"]), int(p["opt"]), int(p["max"])


def _rebuild_fix(engine_path: Path, record: dict | None = None) -> str:
    precision, strict = _settings_from_name(engine_path)
    profile = DEFAULT_PROFILE
    if record is not None:
        try:
            precision, strict, profile = record["precision"], bool(record["strict_fp32"]), profile_of(record)
        except (KeyError, TypeError, ValueError):
            pass
    return rebuild_command(precision, engine_path.parent, strict, profile)


_REQUIRED = {
    "engine": dict, "onnx": dict, "precision": str, "strict_fp32": bool, "profile": dict,
    "tensorrt_version": str, "gpu": dict,
}


def read_record(engine_path: str | os.PathLike) -> dict:
    """The engine's sidecar, parsed and shape-checked; ModelFileError naming the rebuild otherwise."""
    engine_path = Path(engine_path)
    side = paths.sidecar_path(engine_path)
    fix = _rebuild_fix(engine_path)
    if not side.is_file():
        raise ModelFileError(f"engine {engine_path} has no sidecar record {side.name}; refusing an engine of unknown origin", fix)
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"sidecar {side} is unreadable ({type(exc).__name__}); refusing engine {engine_path.name}", fix) from None
    if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
        raise ModelFileError(f"{side} is not a toolkit engine record; refusing engine {engine_path.name}", fix)
    if record.get("format_version") != SIDECAR_VERSION:
        raise ModelFileError(f"sidecar {side} has format version {record.get('format_version')!r}, this toolkit reads {SIDECAR_VERSION}", fix)
    bad = [k for k, kind in _REQUIRED.items() if not isinstance(record.get(k), kind)]
    if bad:
        raise ModelFileError(f"sidecar {side} lacks or mangles {', '.join(bad)}; refusing engine {engine_path.name}", fix)
    return record


def _check_environment(engine_path: Path, record: dict, expected: EngineEnvironment, fix: str) -> None:
    built_trt = record["tensorrt_version"]
    if built_trt != expected.tensorrt_version:
        raise ModelFileError(f"engine {engine_path.name} was built with TensorRT {built_trt}, this machine has TensorRT {expected.tensorrt_version} (engines only run on the release that built them)", fix)
    gpu = record["gpu"]
    built_on = (gpu.get("name"), str(gpu.get("compute_capability")))
    here = (expected.gpu_name, expected.compute_capability)
    if built_on != here:
        raise ModelFileError(
            f"engine {engine_path.name} was built for {built_on[0]} (compute capability {built_on[1]}), this GPU is "
            f"{here[0]} (compute capability {here[1]}); engines are tuned for the GPU that built them", fix,
        )


def _read_engine_bytes(engine_path: Path, record: dict, fix: str) -> bytes:
    size = engine_path.stat().st_size
    if size > MAX_ENGINE_BYTES:
        raise ModelFileError(f"engine {engine_path} is {size} bytes, over the {MAX_ENGINE_BYTES} byte limit", fix)
    data = engine_path.read_bytes()
    recorded = record["engine"]
    if len(data) != recorded.get("size") or sha256_bytes(data) != recorded.get("sha256"):
        raise ModelFileError(
            f"engine {engine_path} is not the file its sidecar records ({len(data)} bytes, SHA-256 differs): "
            "truncated, corrupted or replaced; refusing to load it", fix,
        )
    return data


def _check_onnx(engine_path: Path, record: dict, fix: str) -> None:
    onnx_file = Path(record["onnx"].get("file") or "")
    onnx_path = onnx_file if onnx_file.is_absolute() else engine_path.parent / onnx_file
    if not onnx_path.is_file():
        raise ModelFileError(f"the ONNX that engine {engine_path.name} was built from ({onnx_path}) is missing, so the engine cannot be tied to the current model", fix)
    if sha256_file(onnx_path) != record["onnx"].get("sha256"):
        raise ModelFileError(f"{onnx_path} changed since engine {engine_path.name} was built from it; the engine is stale", fix)


def verify_engine_file(engine_path: str | os.PathLike, expected: EngineEnvironment, precision: str | None = None) -> VerifiedEngine:
    """Check an engine against its sidecar, this machine and its ONNX; return its verified bytes.

    Raises ModelFileError (one line, with the rebuild command) on a missing engine or sidecar, a
    sidecar for another file or precision, another TensorRT release or GPU, changed engine bytes,
    or a changed or missing source ONNX.
    """
    engine_path = Path(engine_path)
    if problem := paths.not_a_file(engine_path):
        raise ModelFileError(f"TensorRT engine {engine_path} {problem}", _rebuild_fix(engine_path).replace("rebuild it", "build it", 1))
    record = read_record(engine_path)
    fix = _rebuild_fix(engine_path, record)
    if record["engine"].get("file") != engine_path.name:
        raise ModelFileError(f"sidecar of {engine_path.name} describes {record['engine'].get('file')!r}: the files were renamed or mixed up", fix)
    if precision is not None and record["precision"] != precision:
        raise ModelFileError(f"engine {engine_path.name} was built for {record['precision']}, not {precision}", fix)
    _check_environment(engine_path, record, expected, fix)
    data = _read_engine_bytes(engine_path, record, fix)
    _check_onnx(engine_path, record, fix)
    return VerifiedEngine(data, record)


def load_verified_engine(
    engine_path: str | os.PathLike,
    expected: EngineEnvironment,
    deserialize: Callable[[bytes], T],
    precision: str | None = None,
) -> tuple[T, dict]:
    """`deserialize` the engine's verified bytes; it is never called when a check fails."""
    verified = verify_engine_file(engine_path, expected, precision)
    return deserialize(verified.data), verified.record
