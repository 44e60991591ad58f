"""Another model's saved outputs in the gate: `toolkit eval --save-outputs DIR` writes each pair
that ran (toolkit.files.model_outputs), `--load-outputs DIR` judges them on this machine against
the reference run here on the same data, with the same verdict as a direct run."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from toolkit import env
from toolkit.errors import InputError
from toolkit.files import model_outputs, outputs, paths
from toolkit.files.spec_file import is_onnx_model
from toolkit.files.store import sha256_file
from toolkit.parity import CapturedPair, _check_pair_names
from toolkit.spec import ModelSpec


def reference_path(spec: ModelSpec, artifacts_dir) -> Path:
    """The file the reference runs from (Reference in toolkit.parity_spec): the outputs are tied to it."""
    return paths.onnx_path("fp32", artifacts_dir, spec.name) if is_onnx_model(spec) else paths.checkpoint_path(artifacts_dir, spec.name)


def _digest(path: Path) -> str:
    return sha256_file(path) if Path(path).is_file() else ""


def saver(directory, spec: ModelSpec, data, limit: int | None, key: bytes | None):
    """A run_model_gate `on_captured` that writes each pair's outputs to `directory`."""
    names = [o.name for o in spec.outputs]

    def save(captured: CapturedPair, outs: dict, samples: int, labelled: bool, ref_path: Path) -> None:
        prov = {"device": captured.device, "runtime": captured.runtime, "model_path": captured.model_path,
                "model_sha256": _digest(Path(captured.model_path)) if captured.model_path else "",
                "model": spec.name, "reference_sha256": _digest(ref_path), "data": data.info.location, "samples": samples,
                "limit": limit, "labelled": labelled, "seconds": {str(k): v for k, v in captured.seconds.items()},
                "versions": env.library_versions(), "cpu": env.cpu_model(), "gpu": env.gpu_description(),
                "captured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "command": env.command_line()}
        parents = [p for p in (ref_path,) if Path(p).is_file()]
        model_outputs.save_model_outputs(directory, model_outputs.SavedModelOutputs(captured.backend, captured.precision, outs, prov),
                                         names, parents=parents, key=key)
    return save


def loaded_pairs(directory, spec: ModelSpec, artifacts_dir, data, limit: int | None, backends: list[str] | None,
                 precisions: list[str] | None, key: bytes | None) -> list[tuple[CapturedPair, dict]]:
    """The saved pairs in `directory`, refusing any not captured from this model's reference on this
    data (or, with `key`, not signed with it)."""
    fix = "gate them with the --artifacts, --data and --limit they were captured with, or capture them again"
    expected = _digest(reference_path(spec, artifacts_dir))
    pairs = []
    for path in outputs.list_output_files(directory):
        outputs.check_manifest(path)
        loaded = model_outputs.load_model_outputs(path, [o.name for o in spec.outputs], key)
        device = _check_pair_names(loaded, path)
        if (backends and loaded.backend not in backends) or (precisions and loaded.precision not in precisions):
            continue
        prov = loaded.provenance
        if prov["model"] != spec.name or prov["reference_sha256"] != expected:
            raise InputError(f"saved outputs {path} come from model {prov['model']} (reference {prov['reference_sha256'][:12]}…), "
                             f"not {spec.name} ({expected[:12]}…)", fix)
        if prov.get("data") != data.info.location or prov.get("limit") != limit:
            raise InputError(f"saved outputs {path} were captured on {prov.get('data')} (limit {prov.get('limit')}), "
                             f"this gate reads {data.info.location} (limit {limit})", fix)
        signed = ", signature verified" if key else ""
        pairs.append((CapturedPair(loaded.backend, loaded.precision, "ok", device=device, model_path=str(prov.get("model_path", "")),
                                   runtime=f"{prov.get('runtime', '')} (saved outputs, {path.name}{signed})",
                                   seconds={int(k): float(v) for k, v in (prov.get("seconds") or {}).items()}, provenance=prov),
                      loaded.outputs))
    if not pairs:
        raise InputError(f"no saved outputs in {directory} match backends {backends or 'all'} and precisions {precisions or 'all'}",
                         "drop --backend/--precision or pass another directory")
    return pairs
