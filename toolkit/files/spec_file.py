"""The model's spec on disk: `<artifacts>/model.json` beside the artifacts, the `model_spec` key of
every exported ONNX file's metadata, and the spec read off a graph handed to us (an ONNX file as the
model).

Artifacts without a model.json (every run before specs existed) are the built-in CNN's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from toolkit.errors import InputError, ModelFileError
from toolkit.files import paths
from toolkit.model import MNIST_CNN_SPEC
from toolkit.spec import DYNAMIC, ModelSpec, Task, TensorSpec

METADATA_KEY = "model_spec"  # the spec's JSON in an exported ONNX file's metadata_props
MAX_SPEC_BYTES = 1 << 20


def is_builtin(spec: ModelSpec) -> bool:
    return spec == MNIST_CNN_SPEC


def refuse_another_model(artifacts_dir: str | os.PathLike, command: str, fix: str = "") -> None:
    """One line (exit 2) for a command that serves the built-in CNN only so far, given another model's artifacts."""
    spec = read_spec(artifacts_dir)
    if not is_builtin(spec):
        raise InputError(f"{command} runs the built-in CNN only so far; {artifacts_dir} holds model {spec.name}",
                         fix or "pass --artifacts of the built-in CNN's exports; see docs/your-own-model.md")


def is_onnx_model(spec: ModelSpec) -> bool:
    """The model came as an ONNX file: no PyTorch module exists, the reference is ONNX Runtime fp32."""
    return spec.source.endswith(".onnx")


def read_spec(artifacts_dir: str | os.PathLike = paths.ARTIFACTS_DIR) -> ModelSpec:
    """The spec written beside the artifacts; the built-in CNN's where there is none."""
    path = paths.spec_path(artifacts_dir)
    if not path.is_file():
        return MNIST_CNN_SPEC
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise InputError(f"{path} is larger than {MAX_SPEC_BYTES} bytes", "export the model again with `toolkit export`")
    spec = ModelSpec.from_json(path.read_text(encoding="utf-8"), where=str(path))
    return MNIST_CNN_SPEC if spec == MNIST_CNN_SPEC else spec


def write_spec(spec: ModelSpec, artifacts_dir: str | os.PathLike, parents: list[Path] | None = None) -> Path:
    """Write `<artifacts>/model.json` (atomically, in the manifest with its parents). Another model's
    spec already there is refused: two models live in two directories (their files would share the
    spec)."""
    from toolkit.files.store import write_artifact

    path = paths.spec_path(artifacts_dir)
    if path.is_file():
        existing = read_spec(artifacts_dir)
        if existing.name != spec.name:
            raise InputError(f"{artifacts_dir} already holds model {existing.name!r}; this is {spec.name!r}",
                             "pass another --out (one model per artifacts directory)")
    text = spec.to_json()
    return write_artifact(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), kind="model-spec",
                          parents=[p for p in parents or [] if Path(p).is_file()])


def spec_from_metadata(model) -> ModelSpec | None:
    """The spec an exported file recorded in its metadata (None when it has none)."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelSpec.from_json(prop.value, where="the ONNX file's model_spec metadata")
    return None


def safe_name(text: str) -> str:
    """A model name usable in file names, from a file's stem."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".") or "model"
    return name


def graph_io(model) -> tuple[list, list]:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits], list(model.graph.output)


def _tensor(value, where: str, is_input: bool) -> TensorSpec:
    import onnx

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ModelFileError(f"{where} {value.name!r} is a {kind}, not a tensor", "only tensor inputs and outputs are supported")
    elem = value.type.tensor_type.elem_type
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem).name
    except (KeyError, ValueError, TypeError):
        raise ModelFileError(f"{where} {value.name!r} has element type {elem}, which numpy cannot hold", "use a float or integer tensor") from None
    if not value.type.tensor_type.HasField("shape"):
        raise ModelFileError(f"{where} {value.name!r} has no shape (unknown rank)", "export the model with its input and output shapes")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else DYNAMIC for d in value.type.tensor_type.shape.dim]
    if not dims:
        raise ModelFileError(f"{where} {value.name!r} is a scalar (no batch axis)", "export the model with a batch axis first")
    if is_input and DYNAMIC in dims[1:]:
        raise InputError(f"input {value.name!r} has dynamic axes beyond the batch {dims}: dynamic spatial shapes are not supported yet",
                         "export the model with fixed sizes for every axis but the first")
    return TensorSpec(value.name, dtype, tuple(dims))


def spec_from_onnx(model, source: str, name: str | None = None, num_classes: int | None = None,
                   task: str | None = None) -> ModelSpec:
    """The spec of an ONNX graph handed to us: inputs and outputs as the graph declares them. The
    task is classification when asked (`num_classes`) or when the graph has one 2-D float output of
    at least 2 classes; a 4-D (N, C, 1, 1) classifier output is refused (never reshaped silently)."""
    inputs, outputs = graph_io(model)
    ins = tuple(_tensor(v, "input", True) for v in inputs)
    outs = tuple(_tensor(v, "output", False) for v in outputs)
    first = outs[0] if outs else None
    if task is None:
        task = "classification" if num_classes is not None or (
            len(outs) == 1 and len(first.shape) == 2 and first.shape[1] >= 2 and first.np_dtype.kind == "f") else "generic"
    if task == "classification":
        if first is not None and len(first.shape) == 4 and first.shape[2:] == (1, 1):
            raise InputError(f"output {first.name!r} has shape (N, {first.shape[1]}, 1, 1); the class scores must be (N, classes)",
                             "add a Flatten at the end of the graph (e.g. with onnx.helper), or pass --task generic to compare it elementwise")
        if first is not None and len(first.shape) != 2:
            raise InputError(f"output {first.name!r} has shape {list(first.shape)}; classification needs (N, classes)",
                             "pass --task generic to compare the outputs elementwise")
        classes = num_classes if num_classes is not None else first.shape[1]
        task_spec = Task("classification", num_classes=classes)
    else:
        task_spec = Task("generic")
    return ModelSpec(name=name or safe_name(Path(source).stem), inputs=ins, outputs=outs, task=task_spec, source=source)


def describe(spec: ModelSpec) -> str:
    """One line for reports: the model's name, its inputs and outputs."""
    def dims(t):
        return "x".join("N" if d == DYNAMIC else str(d) for d in t.shape)

    ins = ", ".join(f"{t.name} {t.dtype} ({dims(t)})" for t in spec.inputs)
    outs = ", ".join(f"{t.name} {t.dtype} ({dims(t)})" for t in spec.outputs)
    return f"{spec.name} [{spec.source or 'unknown source'}]: {ins} -> {outs}; task {spec.task.kind}"


def spec_json_compact(spec: ModelSpec) -> str:
    return json.dumps(spec.to_dict(), separators=(",", ":"))
