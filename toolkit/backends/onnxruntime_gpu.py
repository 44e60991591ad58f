"""ONNX Runtime on NVIDIA GPUs: the CUDA execution provider, and the TensorRT one with its caches.

Precision comes from the file, as for the TensorRT backend: the fp16 and Q/DQ int8 exports are fed
as they are, and the TensorRT provider's trt_fp16_enable/trt_int8_enable are never set (they map
to builder flags TensorRT 11 removed). The provider options are built by pure functions so they
are tested without a GPU. onnxruntime falls back to the CPU silently when a provider fails to
load; the backends refuse that instead.

`ort.get_available_providers()` lists what the wheel was built with, not what can load here, so a
provider counts as usable only when a tiny session on it starts and runs (`probe_provider`, once
per process). Before any session, `prepare_provider_libraries` makes the libraries the provider
links findable: onnxruntime.preload_dlls() for CUDA/cuDNN from the nvidia-* wheels, and
`import tensorrt` for the TensorRT provider (pip's TensorRT wheels load libnvinfer into the
process on import; the provider's dlopen of libnvinfer.so.10 finds nothing on its own).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from toolkit.backends.onnxruntime import OrtCpuBackend
from toolkit.env import GPU_INSTALL
from toolkit.errors import UnavailableError
from toolkit.files.engine_sidecar import EngineOptions
from toolkit.model import IMAGE_SHAPE, INPUT_NAME

CACHE_DIR_NAME = "ort-tensorrt-cache"


def profile_shape(batch: int, name: str = INPUT_NAME) -> str:
    """The TensorRT provider's shape syntax: `input:64x1x28x28`."""
    return f"{name}:" + "x".join(str(d) for d in (batch, *IMAGE_SHAPE))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def tensorrt_cache_dir(artifacts_dir: str | Path, model_sha256: str, ort_version: str, trt_version: str, compute_capability: str) -> Path:
    """Where the TensorRT provider keeps engines and timing for one model on one stack.

    A cached engine is stale once the model, onnxruntime, TensorRT or the GPU changes, and the
    provider would load it anyway; keying the directory on all four means it never finds one.
    """
    key = f"{model_sha256[:16]}-ort{_safe(ort_version)}-trt{_safe(trt_version)}-sm{_safe(compute_capability).replace('.', '')}"
    return Path(artifacts_dir) / CACHE_DIR_NAME / key


def tensorrt_provider_options(cache_dir: str | Path, profile: tuple[int, int, int], workspace_mb: int, cuda_graph: bool = False, device_id: int = 0,
                              spec=None) -> dict[str, str]:
    """Options for TensorrtExecutionProvider: caches under `cache_dir`, the batch profile (every
    input's shapes from `spec`, another model's ModelSpec; the built-in's input without), the workspace."""
    from toolkit.files.engine_sidecar import profile_shapes

    shapes = profile_shapes(profile, spec)
    low, opt, high = (",".join(f"{name}:" + "x".join(str(d) for d in s[i]) for name, s in shapes.items()) for i in range(3))
    cache = str(Path(cache_dir).resolve())
    return {
        "device_id": str(device_id),
        "trt_max_workspace_size": str(workspace_mb << 20),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache,
        "trt_profile_min_shapes": low,
        "trt_profile_opt_shapes": opt,
        "trt_profile_max_shapes": high,
        "trt_cuda_graph_enable": "True" if cuda_graph else "False",
    }


def cuda_provider_options(device_id: int = 0, strict_fp32: bool = False) -> dict[str, str]:
    """Options for CUDAExecutionProvider; `strict_fp32` turns off its TF32 math (on by default)."""
    options = {"device_id": str(device_id), "cudnn_conv_algo_search": "EXHAUSTIVE"}
    if strict_fp32:
        options["use_tf32"] = "0"
    return options


# --- is a provider usable here? --------------------------------------------------------------------

PROVIDER_OF_BACKEND = {"onnxruntime-cuda": "CUDAExecutionProvider", "onnxruntime-trt": "TensorrtExecutionProvider"}
# What each missing library means, for the reason a provider is unusable (longest prefix first).
_LIBRARY_HINTS = (
    ("libnvinfer", "TensorRT {major}: onnxruntime-gpu's TensorRT provider links libnvinfer.so.{major}; "
                   "the gpu-cu12/gpu-cu13 extra installs the matching tensorrt-cuNN 10.x"),
    ("libnvonnxparser", "TensorRT {major}'s ONNX parser (the tensorrt-cuNN libs wheel)"),
    ("libcudnn", "cuDNN {major}: install onnxruntime-gpu with its [cudnn] extra (the gpu-cu12/gpu-cu13 extra does)"),
    ("libcuda.so", "the NVIDIA driver library: install or repair the NVIDIA driver"),
    ("libcu", "the CUDA {major} libraries onnxruntime-gpu was built for: install onnxruntime-gpu with its [cuda] extra "
              "(the gpu-cu12/gpu-cu13 extra does), and a torch for the same CUDA major"),
    ("libnvrtc", "the CUDA runtime compiler (nvrtc) of CUDA {major}: onnxruntime-gpu's [cuda] extra"),
)
_MISSING_LIBRARY = re.compile(r"(lib[A-Za-z0-9_+-]+\.so(?:\.(\d+))?[.\d]*): cannot open shared object file")
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"EP Error|Failed to load|\[E:onnxruntime|error", re.I)


@dataclass(frozen=True)
class ProviderProbe:
    provider: str
    usable: bool
    reason: str  # why not, in one line; "" when usable


def explain_provider_failure(provider: str, text: str) -> str:
    """One line from what onnxruntime (or the dynamic loader) said when `provider` did not start:
    the missing library and what provides it, else onnxruntime's first error line."""
    text = _ANSI_COLOUR.sub("", text)  # onnxruntime colours its log lines on a terminal
    missing = _MISSING_LIBRARY.search(text)
    if missing:
        library, major = missing.group(1), missing.group(2) or "?"
        for prefix, hint in _LIBRARY_HINTS:
            if library.startswith(prefix):
                return f"{provider} did not load: {library} was not found ({hint.format(major=major)})"
        return f"{provider} did not load: {library} was not found"
    for line in text.splitlines():
        if _ERROR_LINE.search(line):
            return f"{provider} did not start: {' '.join(line.split())[:240]}"
    last = [line for line in text.splitlines() if line.strip()]
    return f"{provider} did not start: {' '.join(last[-1].split())[:240] if last else 'onnxruntime said nothing'}"


@contextlib.contextmanager
def _collected_output():
    """What native code and print() write to stdout and stderr while the block runs, collected
    into a list of lines instead of the terminal: onnxruntime's provider errors and
    preload_dlls() print there, and the toolkit's own messages must stay one line."""
    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    python_text = io.StringIO()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stdout(python_text), contextlib.redirect_stderr(python_text):
                yield lines
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())
            lines.extend(python_text.getvalue().splitlines())


@functools.cache
def prepare_provider_libraries(provider: str) -> tuple[str, ...]:
    """Make the libraries `provider` links findable before a session asks for them (once per
    process); returns what failed, in words (empty when nothing did)."""
    problems = []
    if provider == "TensorrtExecutionProvider":
        from toolkit.backends.tensorrt_env import tensorrt_import_problem

        if tensorrt_import_problem():
            problems.append(tensorrt_import_problem())
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)  # onnxruntime 1.21 and later
    if preload is not None:
        with _collected_output() as said:
            try:
                preload()
            except Exception as exc:  # noqa: BLE001 - a helper that only loads libraries; its failure is a reason, not a crash
                said.append(f"preload_dlls failed: {exc}")
        problems.extend(line.strip() for line in said if line.strip().lower().startswith(("failed", "preload_dlls failed")))
    return tuple(problems)


def _which_onnxruntime() -> str:
    """Which distribution owns the `onnxruntime` module, in words (they share one folder)."""
    from toolkit.env import package_version

    cpu, gpu = package_version("onnxruntime"), package_version("onnxruntime-gpu")
    if cpu and gpu:
        return (f"'onnxruntime' {cpu} and 'onnxruntime-gpu' {gpu} are both installed and overwrite each other's files; "
                "uninstall both, then reinstall onnxruntime-gpu alone")
    if gpu:
        return f"'onnxruntime-gpu' {gpu} was built without it"
    return "the CPU package 'onnxruntime' is installed, not 'onnxruntime-gpu'"


def _probe_model() -> bytes:
    """A one-node model (y = x + x on a 1x4 float32 tensor): enough for a provider to start and run."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()


@functools.cache
def probe_provider(provider: str) -> ProviderProbe:
    """Whether `provider` starts and runs here: a tiny session on it alone, with onnxruntime's
    silent CPU fallback off. Cached per process; nothing is written to disk."""
    import numpy as np
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        return ProviderProbe(provider, False, f"onnxruntime {ort.__version__} lacks {provider}: {_which_onnxruntime()}")
    problems = prepare_provider_libraries(provider)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: they are collected for the reason
    failure = None
    with _collected_output() as said:
        try:
            session = ort.InferenceSession(_probe_model(), sess_options=options, providers=[(provider, {"device_id": "0"})],
                                           enable_fallback=0)
            active = session.get_providers()
            if not active or active[0] != provider:
                failure = f"onnxruntime fell back to {', '.join(active) or 'no provider'}"
            else:
                x = np.arange(4, dtype=np.float32).reshape(1, 4)
                y = session.run(None, {"x": x})[0]
                if not np.array_equal(y, x + x):
                    failure = f"it computed {y.tolist()} for x + x = {(x + x).tolist()}"
        except Exception as exc:  # noqa: BLE001 - any failure to start means "unusable", with onnxruntime's words
            failure = f"EP Error: {exc}"
    if failure is None:
        return ProviderProbe(provider, True, "")
    # The loader's words (a missing library) explain a failure best, wherever they were printed.
    return ProviderProbe(provider, False, explain_provider_failure(provider, "\n".join([*said, *problems, failure])))


class OrtCudaBackend(OrtCpuBackend):
    name = "onnxruntime-cuda"
    device = "cuda"
    OPTIONS = None  # provider options (strict_fp32, cuda_graph, engine profile) are not searched here
    provider = "CUDAExecutionProvider"

    def providers(self) -> list:
        return [(self.provider, cuda_provider_options(strict_fp32=bool(self.options.get("strict_fp32"))))]

    def _load(self) -> None:
        import torch

        # Initialise CUDA through PyTorch first: onnxruntime-gpu then shares its primary context.
        torch.cuda.init()
        prepare_provider_libraries(self.provider)
        super()._load()
        active = self.session.get_providers()
        if not active or active[0] != self.provider:
            self.close()
            raise UnavailableError(
                f"onnxruntime could not enable {self.provider} (active: {', '.join(active) or 'none'}); "
                "its CUDA, cuDNN or TensorRT libraries did not load",
                f"check `toolkit info`; {GPU_INSTALL}",
            )

    def details(self) -> dict:
        out = super().details()
        if self._loaded:
            out["provider_options"] = dict(self.providers()[0][1])
        return out


class OrtTensorrtBackend(OrtCudaBackend):
    name = "onnxruntime-trt"
    provider = "TensorrtExecutionProvider"

    def _engine_options(self):
        keys = ("min_batch", "opt_batch", "max_batch", "workspace_mb")
        return EngineOptions(**{k: self.options[k] for k in keys if k in self.options})

    def cache_dir(self) -> Path:
        import onnxruntime as ort
        import torch

        from toolkit.env import tensorrt_package_version
        from toolkit.files.store import sha256_file

        major, minor = torch.cuda.get_device_capability()
        return tensorrt_cache_dir(self.model_path.parent, sha256_file(self.model_path), ort.__version__, tensorrt_package_version() or "unknown", f"{major}.{minor}")

    def providers(self) -> list:
        if getattr(self, "_trt_options", None) is None:
            engine = self._engine_options()
            cache = self.cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            self._trt_options = tensorrt_provider_options(cache, engine.profile, engine.workspace_mb, bool(self.options.get("cuda_graph")),
                                                          spec=self.spec)
        # CUDA takes whatever TensorRT cannot; onnxruntime adds the CPU provider last by itself.
        return [(self.provider, self._trt_options), ("CUDAExecutionProvider", cuda_provider_options())]
