"""fp32 ONNX of any PyTorch module (a `LoadedModel` from toolkit.model_sources).

Named after the spec's inputs and outputs, with a symbolic batch axis wherever the spec's is -1
(one `batch` dimension shared by every input, as they share one batch size) and a symbolic axis
for every other -1. The exporter specializes an axis it finds used as a constant (`x.view(2, -1)`);
that is caught here after the export, not at the first batch of another size.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings

from toolkit.errors import InputError
from toolkit.spec import DYNAMIC

OPSET = 18
_MAX_BATCH = 1 << 20


def _dynamic_shapes(loaded) -> tuple[dict, ...]:
    import torch

    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    shapes = []
    for i, tensor in enumerate(loaded.spec.inputs):
        axes = {}
        for axis, size in enumerate(tensor.shape):
            if size == DYNAMIC:
                axes[axis] = batch if axis == 0 else torch.export.Dim(f"in{i}_axis{axis}", min=1, max=_MAX_BATCH)
        shapes.append(axes)
    return tuple(shapes)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
DEBUG_ENV = "TOOLKIT_DEBUG"  # the CLI's --debug: the exporter's own output is then shown


@contextlib.contextmanager
def _quiet_fds():
    """torch.export logs guards and prints graphs to the process' stdout/stderr (from C++ too) when it
    fails; a refused export must stay one line, so both descriptors go to a scratch file meanwhile."""
    if os.environ.get(DEBUG_ENV) == "1":
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _failure(exc: BaseException) -> str:
    """The exporter's reason in one line: its wrapper's cause (torch.export's own error), first line."""
    cause = exc.__cause__ or exc
    lines = [ln.strip() for ln in _ANSI.sub("", str(cause)).splitlines() if ln.strip()]
    return f"{type(cause).__name__}: {(lines or [''])[0][:200]}"


def _dims(value) -> list:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value.type.tensor_type.shape.dim]


def export_torch_fp32(loaded, opset: int = OPSET) -> bytes:
    """Serialized ONNX (fp32, as the module computes) of `loaded.module` with the spec's names."""
    import onnx
    import torch

    from toolkit.model_sources import example_inputs

    spec = loaded.spec
    in_names = [t.name for t in spec.inputs]
    out_names = [t.name for t in spec.outputs]
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), _quiet_fds():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                loaded.module, example_inputs(spec), None, input_names=in_names, output_names=out_names,
                dynamic_shapes=_dynamic_shapes(loaded), opset_version=opset, dynamo=True, external_data=False,
                verbose=False, optimize=True,
            )
        model = program.model_proto
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; each is "this module does not export"
        raise InputError(f"model {spec.name} cannot be exported to ONNX ({_failure(exc)})",
                         "make forward traceable by torch.export (no data-dependent Python control flow), or export it yourself and pass the .onnx file") from None
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = [v for v in model.graph.input if v.name not in inits]
    got_in, got_out = [v.name for v in graph_inputs], [v.name for v in model.graph.output]
    if got_in != in_names or got_out != out_names:
        raise InputError(f"the ONNX export of model {spec.name} has inputs {got_in} and outputs {got_out}, expected {in_names} and {out_names}",
                         "use every input in forward, and name the outputs with --output")
    for value, tensor in zip(list(graph_inputs) + list(model.graph.output), spec.inputs + spec.outputs, strict=True):
        dims = _dims(value)
        if len(dims) != len(tensor.shape):
            raise InputError(f"the ONNX export of model {spec.name} gives {value.name} rank {len(dims)}, the spec says {list(tensor.shape)}",
                             "check --input and the model's outputs")
        if tensor.shape[0] == DYNAMIC:
            if not isinstance(dims[0], str) or not dims[0]:
                raise InputError(f"the ONNX export of model {spec.name} fixed the batch axis of {value.name} to {dims[0]} (the model's code treats the batch size as a constant)",
                                 "use x.flatten(1) or x.reshape(x.shape[0], -1) instead of a literal batch size, or give --input a fixed batch")
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise InputError(f"the ONNX export of model {spec.name} fails the ONNX checker ({' '.join(str(exc).split())[:200]})",
                         "export it yourself and pass the .onnx file") from None
    return model.SerializeToString()
