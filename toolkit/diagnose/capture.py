"""Run a model with chosen intermediate tensors exposed, on one runtime, and return their values.

One function per runtime, each importing it lazily. Every runner gets the unmodified ONNX model and
the tensor names to expose, and exposes them its own way: onnxruntime runs an ONNX copy with those
tensors added as graph outputs; OpenVINO adds outputs to its own model (`Model.add_outputs`, by
tensor name); TensorRT marks the network tensors as outputs before the build. Runtime settings
follow the toolkit's backends (threads, graph optimisations, OpenVINO's f32 inference precision), so
what is measured is how the gate runs the model, apart from the exposure itself (which the
diagnosis checks: see `no_lie`).
"""

from __future__ import annotations

import os

import numpy as np

from toolkit.errors import ModelFileError, UnavailableError
from toolkit.model import INPUT_NAME

CHUNK = 256  # images per run: bounds memory (every activation of every image is kept)


def _concat(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def capture_onnxruntime(model, names: list[str], images: np.ndarray, threads: int | None = None,
                        session_options=None, input_name: str = INPUT_NAME) -> dict[str, np.ndarray]:
    """onnxruntime (CPU) with `names` exposed; `session_options` defaults to plain ORT_ENABLE_ALL."""
    import onnxruntime as ort

    from toolkit.diagnose.graph import expose_all

    exposed = expose_all(model, names)
    so = session_options
    if so is None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or os.cpu_count() or 1
        so.log_severity_level = 3
    try:
        session = ort.InferenceSession(exposed.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise ModelFileError(f"onnxruntime cannot load the model with its tensors exposed ({str(exc).splitlines()[0][:160]})") from None
    wanted = [o.name for o in session.get_outputs() if o.name in set(names)]
    chunks = []
    for start in range(0, len(images), CHUNK):
        values = session.run(wanted, {input_name: images[start : start + CHUNK]})
        chunks.append(dict(zip(wanted, values, strict=True)))
    found = _concat(chunks)
    if input_name in names:
        found[input_name] = images
    return found


def capture_openvino(model, names: list[str], images: np.ndarray, threads: int | None = None,
                     input_name: str = INPUT_NAME) -> dict[str, np.ndarray]:
    """OpenVINO (CPU) with `names` added as outputs of its own model, compiled as the toolkit's backend does."""
    import openvino as ov

    core = ov.Core()
    try:
        ov_model = core.read_model(model=model.SerializeToString(), weights=b"")
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
        raise ModelFileError(f"OpenVINO cannot read the model ({str(exc).splitlines()[0][:160]})") from None
    available = {n for op in ov_model.get_ops() for out in op.outputs() for n in out.get_names()}
    present = {n for out in ov_model.outputs for n in out.get_names()}
    extra = [n for n in names if n in available and n not in present and n != input_name]
    if extra:
        ov_model.add_outputs(extra)
    # Hand every output over as f32: OpenVINO computes an fp16 model in f32 on the CPU here (f32
    # inference precision, as the backend sets) and would otherwise convert each exposed tensor to
    # its declared fp16 on the way out, showing overflows that never happen inside.
    ppp = ov.preprocess.PrePostProcessor(ov_model)
    for i in range(len(ov_model.outputs)):
        ppp.output(i).tensor().set_element_type(ov.Type.f32)
    ov_model = ppp.build()
    config = {"INFERENCE_NUM_THREADS": int(threads or os.cpu_count() or 1), "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()
    outputs = [(out, next((n for n in out.get_names() if n in set(names)), None)) for out in compiled.outputs]
    chunks = []
    for start in range(0, len(images), CHUNK):
        request.infer({0: images[start : start + CHUNK]})
        chunks.append({name: request.get_tensor(out).data.copy() for out, name in outputs if name})
    found = _concat(chunks)
    if input_name in names:
        found[input_name] = images
    return found


def capture_tensorrt(model, names: list[str], images: np.ndarray, threads: int | None = None) -> dict[str, np.ndarray]:
    """TensorRT: parse the ONNX, mark every float network tensor in `names` as an output, build a
    strongly typed engine for this batch and run it. Written against the TensorRT 10/11 Python API
    (checked by trt-api-check); never run on the development machines (no GPU)."""
    from toolkit.backends import registry

    ok, why = registry.cuda_available()
    if not ok:
        raise UnavailableError(f"diagnosing tensorrt needs a CUDA GPU: {why}")
    import tensorrt as trt
    import torch

    from toolkit.backends.tensorrt_env import create_with_logger, last_error, trt_logger

    logger = trt_logger()
    builder = create_with_logger(trt.Builder, logger, "builder")
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(f"TensorRT cannot parse the model ({errors[:200]})")
    wanted = set(names)
    float_types = (trt.DataType.FLOAT, trt.DataType.HALF)
    marked = set()
    for i in range(network.num_outputs):
        marked.add(network.get_output(i).name)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            tensor = layer.get_output(j)
            if tensor.name in wanted and tensor.name not in marked and tensor.dtype in float_types:
                network.mark_output(tensor)
                marked.add(tensor.name)
    batch = min(CHUNK, len(images))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    shape = (batch, *images.shape[1:])
    profile.set_shape(INPUT_NAME, (1, *images.shape[1:]), shape, shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelFileError(f"TensorRT could not build the model with its tensors marked as outputs ({last_error(logger, 'no details logged')})")
    runtime = create_with_logger(trt.Runtime, logger, "runtime")
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise ModelFileError("TensorRT could not deserialize the engine it just built")
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()
    torch_dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    output_names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)
                    if engine.get_tensor_mode(engine.get_tensor_name(i)) == trt.TensorIOMode.OUTPUT]
    chunks = []
    for start in range(0, len(images), batch):
        part = images[start : start + batch]
        device_input = torch.from_numpy(np.ascontiguousarray(part)).cuda()
        if not context.set_input_shape(INPUT_NAME, tuple(part.shape)):
            raise ModelFileError(f"TensorRT refused input shape {tuple(part.shape)}")
        if not context.set_tensor_address(INPUT_NAME, device_input.data_ptr()):
            raise ModelFileError("TensorRT refused the input buffer")
        buffers = {}
        for name in output_names:
            dtype = engine.get_tensor_dtype(name)
            if dtype not in torch_dtypes:
                continue
            buffers[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=torch_dtypes[dtype], device="cuda")
            if not context.set_tensor_address(name, buffers[name].data_ptr()):
                raise ModelFileError(f"TensorRT refused the buffer for {name}")
        if not context.execute_async_v3(stream.cuda_stream):
            raise ModelFileError("TensorRT failed to run the engine")
        stream.synchronize()
        chunks.append({name: buf.float().cpu().numpy() for name, buf in buffers.items() if name in wanted})
    found = _concat(chunks)
    if INPUT_NAME in names:
        found[INPUT_NAME] = images
    return found


RUNNERS = {
    "onnxruntime": capture_onnxruntime,
    "openvino": capture_openvino,
    "tensorrt": capture_tensorrt,
}
