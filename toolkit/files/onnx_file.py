"""Checks an ONNX file before any runtime sees it: size, parse, no external data, the CNN's signature.

Runtimes have crashed on crafted models, and external-data paths have escaped the model's
directory; the toolkit's model is tiny, so the rule is simple: refuse any external data, any
custom op domain, any EPContext node, and any signature other than input (N,1,28,28) float32 ->
logits (N,10) float32.
"""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.errors import ModelFileError
from toolkit.files.paths import not_a_file
from toolkit.model import IMAGE_SHAPE, MNIST_CNN_SPEC, NUM_CLASSES

MAX_ONNX_BYTES = 16 * 1024 * 1024  # fp32 model is ~120 KB
# Another model's file (`--model path/model.onnx`, or its exports): protobuf's own 2 GiB limit, less
# a margin; larger models need external data, which is refused anyway.
MAX_MODEL_ONNX_BYTES = (2 << 30) - (64 << 20)
ALLOWED_DOMAINS = {"", "ai.onnx"}


def _fix(path: Path) -> str:
    return f"re-export it with `toolkit export --format onnx` (or pass the right file instead of {path})"


def load_checked(path: str | os.PathLike, spec=MNIST_CNN_SPEC):
    """Return the parsed onnx.ModelProto, or raise ModelFileError saying what is wrong. `spec`: the
    model the file must be (its inputs and outputs); None for a file handed to us as the model,
    whose signature becomes the spec."""
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if problem := not_a_file(p):
        raise ModelFileError(f"ONNX file {p} {problem}", "export it with `toolkit export --format onnx`")
    size = p.stat().st_size
    if size == 0:
        raise ModelFileError(f"ONNX file {p} is empty", _fix(p))
    limit = MAX_ONNX_BYTES if spec is MNIST_CNN_SPEC else MAX_MODEL_ONNX_BYTES
    if size > limit:
        raise ModelFileError(f"ONNX file {p} is {size} bytes, over the {limit} byte limit for this model", _fix(p))
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, UnicodeDecodeError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise ModelFileError(f"{p} is not a valid ONNX file ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})", _fix(p)) from None
    check_model(model, p, spec)
    return model


def _external_tensors(model):
    import onnx

    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor


def check_model(model, p: Path, spec=MNIST_CNN_SPEC) -> None:
    import onnx

    if not model.graph.node:
        raise ModelFileError(f"{p} has an empty graph (not a valid ONNX model of this CNN)", _fix(p))
    external = [t.name for t in _external_tensors(model)]
    if external:
        raise ModelFileError(f"{p} references external data ({', '.join(external[:3])}); refusing it", "use a self-contained ONNX file (this model needs no external data)")
    domains = {n.domain for n in model.graph.node}
    custom = sorted(d for d in domains if d not in ALLOWED_DOMAINS)
    if custom:
        raise ModelFileError(f"{p} uses custom operator domains {custom}; refusing it", _fix(p))
    if any(n.op_type == "EPContext" for n in model.graph.node):
        raise ModelFileError(f"{p} embeds an EPContext node (native code blob); refusing it", _fix(p))
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - the checker raises several types
        raise ModelFileError(f"{p} fails the ONNX checker ({str(exc).splitlines()[0][:160]})", _fix(p)) from None
    if spec is MNIST_CNN_SPEC:
        check_signature(model, p)
    elif spec is not None:
        check_spec_signature(model, p, spec)


def _dims(value_info) -> tuple:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim)


def check_signature(model, p: Path) -> None:
    import onnx

    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelFileError(f"{p} has {len(inputs)} inputs and {len(outputs)} outputs, expected 1 and 1", _fix(p))
    inp, out = inputs[0], outputs[0]
    problems = []
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        problems.append(f"input dtype {onnx.TensorProto.DataType.Name(inp.type.tensor_type.elem_type)} (expected FLOAT)")
    in_dims = _dims(inp)
    if len(in_dims) != 4 or tuple(in_dims[1:]) != IMAGE_SHAPE:
        problems.append(f"input shape {in_dims} (expected (N, 1, 28, 28))")
    if out.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        problems.append(f"output dtype {onnx.TensorProto.DataType.Name(out.type.tensor_type.elem_type)} (expected FLOAT)")
    out_dims = _dims(out)
    if len(out_dims) != 2 or out_dims[1] != NUM_CLASSES:
        problems.append(f"output shape {out_dims} (expected (N, {NUM_CLASSES}))")
    if problems:
        raise ModelFileError(f"{p} is not this model's signature: {'; '.join(problems)}", _fix(p))


def check_spec_signature(model, p: Path, spec) -> None:
    """The file's inputs and outputs are the spec's: names, element types, ranks and fixed sizes
    (a dynamic axis in the spec may be anything in the file; a fixed one must match)."""
    import onnx

    inits = {i.name for i in model.graph.initializer}
    graph = {"input": [i for i in model.graph.input if i.name not in inits], "output": list(model.graph.output)}
    problems = []
    for kind, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        found = {v.name: v for v in graph[kind]}
        if sorted(found) != sorted(t.name for t in tensors):
            problems.append(f"{kind}s {sorted(found)} (expected {sorted(t.name for t in tensors)})")
            continue
        for t in tensors:
            value = found[t.name]
            elem = value.type.tensor_type.elem_type
            if onnx.helper.tensor_dtype_to_np_dtype(elem).name != t.dtype if elem else True:
                problems.append(f"{kind} {t.name!r} dtype {onnx.TensorProto.DataType.Name(elem)} (expected {t.dtype})")
            dims = _dims(value)
            if len(dims) != len(t.shape) or any(want != -1 and got != want for want, got in zip(t.shape, dims, strict=False)):
                problems.append(f"{kind} {t.name!r} shape {dims} (expected {tuple('N' if d == -1 else d for d in t.shape)})")
    if problems:
        raise ModelFileError(f"{p} is not model {spec.name}'s signature: {'; '.join(problems)}",
                             f"export it again with `toolkit export` (or pass the right file instead of {p})")


def metadata(model) -> dict:
    return {p.key: p.value for p in model.metadata_props}


def check_record(path: str | os.PathLike, precision: str, sha256: str | None = None, spec=MNIST_CNN_SPEC):
    """A checked file that is what it is served as: the precision its metadata records is
    `precision`, and its bytes are the ones a manifest or config recorded (`sha256`, when given).
    Returns the parsed model; ModelFileError otherwise."""
    from toolkit.files.store import sha256_file

    p = Path(path)
    model = load_checked(p, spec)
    recorded = metadata(model).get("precision")
    if recorded != precision:
        raise ModelFileError(f"{p} records precision {recorded or 'none'}, and is served as {precision}",
                             f"serve it as {recorded}, or export {precision} with `toolkit export --format onnx --precision {precision}`"
                             if recorded else _fix(p))
    if sha256 is not None and sha256_file(p) != sha256:
        raise ModelFileError(f"{p} differs from the SHA-256 recorded for it ({sha256[:12]}...)",
                             "check it with `toolkit verify`, then re-export it")
    return model
