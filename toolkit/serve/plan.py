"""What `toolkit serve` serves: the (backend, precision) pairs and their files, checked before the
server starts, or the models of a repository given as it is."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from toolkit.backends import registry
from toolkit.errors import CheckFailed, InputError, UnavailableError

REMOTE_BACKENDS = ("triton",)  # served pairs are in-process backends only
SERVED_BACKENDS = ("onnxruntime", "openvino")  # what the python-backend stub runs (ONNX on the CPU)


@dataclass(frozen=True)
class ServedModel:
    name: str
    backend: str
    precision: str
    model_path: str
    runtime: str



def plan(config) -> list[registry.PlannedPair]:
    for backend, _ in config.pairs:
        if backend in REMOTE_BACKENDS:
            raise InputError(f"`toolkit serve` serves in-process backends, not {backend}", "pass e.g. --backend onnxruntime")
        if backend in registry.BY_NAME and backend not in SERVED_BACKENDS:
            raise InputError(f"`toolkit serve` runs ONNX files on the CPU ({', '.join(SERVED_BACKENDS)}), not {backend}",
                             "pass --backend onnxruntime or openvino")
    backends = sorted({b for b, _ in config.pairs})
    precisions = sorted({p for _, p in config.pairs})
    planned = {(p.backend, p.precision): p for p in registry.plan_pairs(backends, precisions, config.checkpoint, config.artifacts_dir)}
    out = []
    for pair in config.pairs:
        if pair not in planned:
            raise InputError(f"backend {pair[0]} does not run {pair[1]}", "see `toolkit info` for which backend runs which precision")
        if not planned[pair].available:
            raise UnavailableError(f"backend {pair[0]} is unavailable: {planned[pair].reason}")
        check_served_file(Path(planned[pair].model_path), pair[1], Path(config.artifacts_dir))
        out.append(planned[pair])
    return out


def check_served_file(path: Path, precision: str, artifacts_dir: Path) -> None:
    """The file is what it is served as: its recorded precision, and its bytes as the artifacts'
    manifest recorded them (when it has an entry for the file)."""
    from toolkit.files.onnx_file import check_record
    from toolkit.files.store import _manifest_key, read_manifest

    entry = read_manifest(artifacts_dir)["artifacts"].get(_manifest_key(path, artifacts_dir))
    check_record(path, precision, entry["sha256"] if entry else None)


def repository_models(repository: Path) -> tuple[ServedModel, ...]:
    """The models of a python-backend repository written by `toolkit export --format triton
    --runtime python`, after `toolkit verify`'s check of its manifest (a changed or stale file is
    not served)."""
    from toolkit.export.triton import parse_config
    from toolkit.files.store import MANIFEST_NAME
    from toolkit.files.verify import verify_directory

    if not repository.is_dir():
        raise InputError(f"{repository} is not a directory", "pass a repository written by `toolkit export --format triton --runtime python`")
    if (repository / MANIFEST_NAME).is_file():
        problems = verify_directory(repository).problems
        if problems:
            raise CheckFailed(f"{repository}: {problems[0].name} {problems[0].status}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                              f"check it with `toolkit verify {repository}`, then re-export it")
    models = []
    for config_file in sorted(repository.glob("*/config.pbtxt")):
        config = parse_config(config_file)
        if config.backend != "python":
            raise InputError(f"{config_file} is a {config.platform or config.backend} model, which this tritonserver cannot run",
                             "re-export with `toolkit export --format triton --runtime python`")
        params = {k: v.string_value for k, v in config.parameters.items()}
        backend = params.get("toolkit_backend", "python")
        models.append(ServedModel(config.name or config_file.parent.name, backend, params.get("toolkit_precision", ""),
                                  str(config_file.parent), runtime_version(backend)))
    if not models:
        raise InputError(f"{repository} has no model (no */config.pbtxt)", "pass a repository written by `toolkit export --format triton --runtime python`")
    return tuple(models)


def runtime_version(backend: str) -> str:
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        return f"{backend} {metadata.version(backend)}"
    return backend
