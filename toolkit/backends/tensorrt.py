"""TensorRT engines, run through the tensor I/O API with torch CUDA tensors as device buffers.

PyTorch initialises CUDA and TensorRT shares its primary context, so no other CUDA binding is
needed. An engine is loaded only after its sidecar check passes (toolkit.files.engine_sidecar), and
never with host code allowed. One execution context, one non-default stream; optionally one
CUDA graph, captured for the batch size in use. Written against the documented API and checked
with trt-api-check; docs/gpu-tensorrt.md says what has run on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from toolkit.backends.base import Backend
from toolkit.errors import InputError, ModelFileError, ToolkitError
from toolkit.files import paths
from toolkit.files.engine_sidecar import load_verified_engine, rebuild_command
from toolkit.model import IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME

if TYPE_CHECKING:
    import tensorrt as trt


@dataclass
class _CapturedGraph:
    batch: int
    graph: object  # torch.cuda.CUDAGraph
    input: object  # static device tensors the graph reads and writes
    output: object


def check_engine_file(engine_path, precision: str) -> None:
    """What loading checks before TensorRT sees the engine (sidecar, hashes, this TensorRT release and
    GPU, the source ONNX), without deserializing it: registry.plan_pairs runs it before any work."""
    from toolkit.backends.tensorrt_env import require_tensorrt
    from toolkit.files.engine_sidecar import verify_engine_file

    verify_engine_file(engine_path, require_tensorrt("the tensorrt backend"), precision=precision)


def _torch_dtype(dtype):
    import tensorrt as trt
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT8: torch.int8,
             trt.DataType.INT32: torch.int32, trt.DataType.BOOL: torch.bool}
    if dtype not in table:
        raise ModelFileError(f"engine I/O dtype {dtype} is not one this toolkit handles", "rebuild the engine from the toolkit's ONNX")
    return table[dtype]


def _profile_batch_range(engine: trt.ICudaEngine) -> tuple[int, int, int]:
    """(min, opt, max) batch of the engine's first optimization profile for the input."""
    if engine.num_optimization_profiles < 1:
        raise ModelFileError("engine has no optimization profile", "rebuild it with `toolkit export --format tensorrt`")
    low, opt, high = engine.get_tensor_profile_shape(INPUT_NAME, 0)
    return low[0], opt[0], high[0]


def _io_dtypes(engine: trt.ICudaEngine) -> dict:
    """{name: torch dtype} of the I/O tensors, refusing an engine that is not this model's signature."""
    import tensorrt as trt

    modes = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        modes[name] = engine.get_tensor_mode(name)
    expected = {INPUT_NAME: trt.TensorIOMode.INPUT, OUTPUT_NAME: trt.TensorIOMode.OUTPUT}
    if modes != expected:
        raise ModelFileError(f"engine I/O is {sorted(modes)}, expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}", "rebuild it from the toolkit's ONNX")
    shape = tuple(engine.get_tensor_shape(INPUT_NAME))
    if len(shape) != 4 or shape[1:] != IMAGE_SHAPE:
        raise ModelFileError(f"engine input shape {shape} is not (N, 1, 28, 28)", "rebuild it from the toolkit's ONNX")
    return {name: _torch_dtype(engine.get_tensor_dtype(name)) for name in modes}


class TensorrtBackend(Backend):
    name = "tensorrt"
    device = "cuda"
    OPTIONS = None  # cuda_graph and the engine options are not searched here (no GPU to tune on)

    _runtime = None
    _engine = None
    _context = None
    _stream = None
    _graph: _CapturedGraph | None = None
    _record: dict | None = None

    # -- life cycle -----------------------------------------------------------------------------
    def _load(self) -> None:
        from toolkit.backends.tensorrt_env import require_tensorrt, trt_logger

        environment = require_tensorrt("the tensorrt backend")
        import torch

        torch.cuda.init()  # PyTorch owns the CUDA primary context; TensorRT runs inside it
        self._torch = torch
        try:
            self._logger = trt_logger()
            self._logger.take_errors()
            import tensorrt as trt

            from toolkit.backends.tensorrt_env import create_with_logger

            self._runtime: trt.Runtime = create_with_logger(trt.Runtime, self._logger, "runtime")
            # Version-compatible plans embed host code; an engine must never bring its own code.
            self._runtime.engine_host_code_allowed = False
            engine, self._record = load_verified_engine(
                self.model_path, environment, self._runtime.deserialize_cuda_engine, precision=self.precision,
            )
            if engine is None:
                raise ModelFileError(f"TensorRT could not deserialize {self.model_path} ({self._last_error('no details logged')})", self._rebuild())
            self._engine: trt.ICudaEngine = engine
            self._dtypes = _io_dtypes(self._engine)
            self._profile = _profile_batch_range(self._engine)
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise ToolkitError(f"TensorRT could not create an execution context ({self._last_error('GPU memory?')})", "free GPU memory and retry")
            self._stream = torch.cuda.Stream()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()  # nothing may still run on buffers about to be freed
        self._graph = None
        self._context = None  # the context before the engine it came from, the engine before the runtime
        self._engine = None
        self._runtime = None
        self._stream = None
        super().close()

    # -- inference ------------------------------------------------------------------------------
    def _run(self, batch: np.ndarray) -> np.ndarray:
        self._check_batch(batch.shape[0])
        torch = self._torch
        x = None
        with torch.cuda.stream(self._stream):
            if self.options.get("cuda_graph"):
                logits = self._replay(batch)
            else:
                x = torch.from_numpy(batch).to("cuda").to(self._dtypes[INPUT_NAME])
                logits = self._enqueue(x)
            host = logits.float().cpu()
        self._stream.synchronize()  # the device buffers (x, logits) stay referenced until here
        del x, logits
        return host.numpy()

    def _check_batch(self, n: int) -> None:
        low, _, high = self._profile
        if not low <= n <= high:
            wider = (min(low, n), self._profile[1], max(high, n))
            raise InputError(
                f"a batch of {n} is outside the engine's profile ({low} to {high} images)",
                f"split the batch, or {rebuild_command(self.precision, self.model_path.parent, self._strict(), wider)}",
            )

    def _bind(self, x, out) -> None:
        for name, tensor in ((INPUT_NAME, x), (OUTPUT_NAME, out)):
            if not self._context.set_tensor_address(name, tensor.data_ptr()):
                raise ToolkitError(f"TensorRT refused the device address of {name!r} ({self._last_error('no details logged')})", "re-run with --debug for TensorRT's log")

    def _output_for(self, x):
        """An output tensor of the shape the context infers for `x`'s shape."""
        context = self._context
        if not context.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise InputError(f"TensorRT refused input shape {tuple(x.shape)} ({self._last_error('outside the profile')})", self._rebuild())
        shape = tuple(context.get_tensor_shape(OUTPUT_NAME))
        if shape != (x.shape[0], NUM_CLASSES):
            raise ModelFileError(f"engine output shape is {shape} for a batch of {x.shape[0]}, expected ({x.shape[0]}, {NUM_CLASSES})", self._rebuild())
        return self._torch.empty(shape, dtype=self._dtypes[OUTPUT_NAME], device="cuda")

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise ToolkitError(f"TensorRT failed to enqueue inference ({self._last_error('no details logged')})", "re-run with --debug for TensorRT's log")

    def _enqueue(self, x):
        out = self._output_for(x)
        self._bind(x, out)
        self._execute()
        return out

    def _replay(self, batch: np.ndarray):
        if self._graph is None or self._graph.batch != batch.shape[0]:
            self._graph = None  # one capture at a time: the context's shape belongs to the last one
            self._graph = self._capture(batch.shape[0])
        self._graph.input.copy_(self._torch.from_numpy(batch))
        self._graph.graph.replay()
        return self._graph.output

    def _capture(self, n: int) -> _CapturedGraph:
        torch = self._torch
        x = torch.zeros((n, *IMAGE_SHAPE), dtype=self._dtypes[INPUT_NAME], device="cuda")
        out = self._enqueue(x)  # TensorRT needs one enqueue after a shape change before capture
        self._stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self._stream):
                self._execute()
        except RuntimeError as exc:
            raise ToolkitError(f"CUDA graph capture of the engine failed ({str(exc).splitlines()[0][:160]})", "run without cuda_graph=True") from None
        return _CapturedGraph(n, graph, x, out)

    # -- benchmark hook (see toolkit.bench) --------------------------------------------------------
    def device_timings(self, batch: np.ndarray, iterations: int, warmup: int = 10) -> dict[str, list[float]]:
        """Per-iteration seconds, as trtexec splits them: host-to-device copy, execution and
        device-to-host copy from CUDA events on the backend's stream (pinned host buffers), and the
        host time to enqueue the execution. Cheaper than a user's call: labelled so by the benchmark."""
        import time

        self._check_batch(batch.shape[0])
        torch = self._torch
        if self.options.get("cuda_graph"):
            if self._graph is None or self._graph.batch != batch.shape[0]:
                self._graph = None
                self._graph = self._capture(batch.shape[0])
            x, out, launch = self._graph.input, self._graph.output, self._graph.graph.replay
        else:
            x = torch.empty(batch.shape, dtype=self._dtypes[INPUT_NAME], device="cuda")
            out = self._output_for(x)
            self._bind(x, out)
            launch = self._execute
        host_in = torch.from_numpy(batch).pin_memory()
        host_out = torch.empty(tuple(out.shape), dtype=out.dtype).pin_memory()
        times: dict[str, list[float]] = {"h2d": [], "compute": [], "d2h": [], "enqueue": []}
        with torch.cuda.stream(self._stream):
            for i in range(warmup + iterations):
                marks = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
                marks[0].record(self._stream)
                x.copy_(host_in, non_blocking=True)
                marks[1].record(self._stream)
                t0 = time.perf_counter()
                launch()
                enqueue = time.perf_counter() - t0
                marks[2].record(self._stream)
                host_out.copy_(out, non_blocking=True)
                marks[3].record(self._stream)
                self._stream.synchronize()
                if i >= warmup:
                    for key, start, end in (("h2d", 0, 1), ("compute", 1, 2), ("d2h", 2, 3)):
                        times[key].append(marks[start].elapsed_time(marks[end]) / 1e3)  # elapsed_time: ms
                    times["enqueue"].append(enqueue)
        return times

    # -- description ----------------------------------------------------------------------------
    def _strict(self) -> bool:
        return bool(self._record and self._record.get("strict_fp32"))

    def _rebuild(self) -> str:
        profile = self._profile if getattr(self, "_profile", None) else paths.DEFAULT_ENGINE_PROFILE
        return rebuild_command(self.precision, self.model_path.parent, self._strict(), profile)

    def _last_error(self, fallback: str) -> str:
        from toolkit.backends.tensorrt_env import last_error

        return last_error(self._logger, fallback)

    def runtime_version(self) -> str:
        from toolkit.env import tensorrt_package_version

        return f"tensorrt {tensorrt_package_version() or 'unknown'}"

    def details(self) -> dict:
        out = {"cuda_graph": bool(self.options.get("cuda_graph"))}
        if self._record:
            out.update(tf32=self._record.get("tf32"), strict_fp32=self._record.get("strict_fp32"),
                       profile=self._record.get("profile"), gpu=self._record.get("gpu", {}).get("name"))
        return out
