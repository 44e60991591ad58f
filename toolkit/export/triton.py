"""`toolkit export --format triton`: a model repository for the full Triton Inference Server, and the
Kubernetes manifest that serves it.

Layout (Triton's): one model per exported artifact, named as `toolkit serve` names its models, so a
client's `--model` is the same against the local server and a cluster:

    <out>/mnist_onnxruntime_<precision>/config.pbtxt   platform onnxruntime_onnx
    <out>/mnist_onnxruntime_<precision>/1/model.onnx
    <out>/mnist_openvino_<precision>/config.pbtxt      backend openvino (reads the same ONNX file)
    <out>/mnist_openvino_<precision>/1/model.onnx
    <out>/mnist_tensorrt_<precision>/config.pbtxt      platform tensorrt_plan (from a verified engine only)
    <out>/mnist_tensorrt_<precision>/1/model.plan
    <out>/manifest.json                                every file above, with its source as parent
    <out>.kserve.yaml                                  a KServe InferenceService (protocol v2) for it

Each config is built as a `ModelConfig` protobuf (tritonclient's copy of Triton's schema), written in
text format and parsed back before it is written: a config Triton would reject for its syntax or
fields is never written. Inputs and outputs omit the batch dimension (`dims: [1, 28, 28]`, `[10]`)
since `max_batch_size` > 0; the dynamic batcher is on; `parameters` carry the model file's SHA-256,
the precision and the toolkit version. ONNX files are checked (`files.onnx_file.load_checked`) before
they are copied; an engine is copied only when its sidecar matches its bytes and its ONNX source,
and `max_batch_size` may not exceed the engine profile's max.

With `runtime="python"` (`--runtime python`) the onnxruntime and OpenVINO models are python-backend
models instead (`backend: "python"`, `1/model.py` beside `1/model.onnx`; see export.triton_python):
the same names, dims, batching, instance groups, parameters and manifest, and what the tritonserver
bundled with the serve extra serves (`toolkit serve` writes and serves such a repository).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from toolkit import __version__
from toolkit.backends.triton import model_name
from toolkit.errors import InputError, ModelFileError, UnavailableError
from toolkit.export.triton_python import MODEL_PY, PYTHON_TARGETS, RUNTIMES, python_parameters
from toolkit.files import paths, store
from toolkit.model import IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME

DEFAULT_OUT = paths.ARTIFACTS_DIR / "triton"
DEFAULT_MAX_BATCH = 1024
DEFAULT_QUEUE_DELAY_US = 100
# What each Triton backend of the repository reads, and the precisions it gets.
ONNX_TARGETS = {
    "onnxruntime": ("fp32", "fp16", "int8", "int8-cpu"),
    "openvino": ("fp32", "fp16", "int8", "int8-cpu"),
}
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("onnxruntime", "openvino", "tensorrt")
KSERVE_SUFFIX = ".kserve.yaml"


@dataclass(frozen=True)
class RepositoryModel:
    name: str
    target: str  # onnxruntime | openvino | tensorrt
    precision: str
    config: Path
    model: Path
    source: Path
    sha256: str
    max_batch: int
    runtime: str = "native"  # native (Triton's own backends) | python (a python-backend model running the ONNX file)


@dataclass
class RepositoryResult:
    directory: Path
    models: list[RepositoryModel] = field(default_factory=list)
    kubernetes: Path | None = None
    skipped: list[str] = field(default_factory=list)  # what was not written, and why


def _model_config(name: str, target: str, precision: str, sha256: str, max_batch: int, instances: int,
                  queue_delay_us: int, source_name: str, python: dict[str, str] | None = None):
    """The ModelConfig message for one model of the repository; `python`: the python-backend
    model's parameters (export.triton_python), None for Triton's native backends."""
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=name, max_batch_size=max_batch)
    if python is not None:
        config.backend = "python"  # 1/model.py, which runs 1/model.onnx
    elif target == "onnxruntime":
        config.platform = "onnxruntime_onnx"
        config.default_model_filename = "model.onnx"
    elif target == "openvino":
        config.backend = "openvino"
        config.default_model_filename = "model.onnx"  # the OpenVINO backend reads ONNX directly
    else:
        config.platform = "tensorrt_plan"
        config.default_model_filename = "model.plan"
    config.input.add(name=INPUT_NAME, data_type=mc.TYPE_FP32, dims=list(IMAGE_SHAPE))
    config.output.add(name=OUTPUT_NAME, data_type=mc.TYPE_FP32, dims=[NUM_CLASSES])
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    kind = mc.ModelInstanceGroup.KIND_GPU if target == "tensorrt" else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=instances, kind=kind)
    for key, value in (("model_sha256", sha256), ("toolkit_precision", precision), ("toolkit_version", __version__),
                       ("toolkit_source", source_name), *(python or {}).items()):
        config.parameters[key].string_value = value
    return config


def config_text(config) -> str:
    """Text format of a ModelConfig, checked by parsing it back into a ModelConfig (equal message)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    text = text_format.MessageToString(config)
    parsed = text_format.Parse(text, mc.ModelConfig())
    if parsed != config:
        raise ModelFileError(f"the config of {config.name} does not survive a text round trip", "please report this")
    return text


def parse_config(path: str | os.PathLike):
    """Read a config.pbtxt into a ModelConfig (the check Triton's own parser applies to syntax and fields)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    try:
        return text_format.Parse(Path(path).read_text(encoding="utf-8"), mc.ModelConfig())
    except (OSError, text_format.ParseError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not a Triton model configuration ({' '.join(str(exc).split())[:200]})",
                             "re-export the repository with `toolkit export --format triton`") from None


def kserve_manifest(name: str, models: list[RepositoryModel]) -> str:
    """A KServe InferenceService serving the repository with Triton, KServe protocol v2."""
    gpu = any(m.target == "tensorrt" for m in models)
    served = ", ".join(m.name for m in models)
    limits = '        nvidia.com/gpu: "1"\n' if gpu else ""
    python = ("# Python-backend models: the serving image needs the toolkit and its runtimes installed where each\n"
              "# config's toolkit_sys_path parameter says (re-export with --runtime native for Triton's own backends).\n"
              if any(m.runtime == "python" for m in models) else "")
    return f"""# KServe InferenceService for the Triton model repository written by `toolkit export --format triton`.
# Models: {served}
# Before applying: copy the repository directory (with every model folder) to object storage and
# replace STORAGE_URI below (s3://, gs://, pvc://...); TensorRT plans only load on the GPU model
# and TensorRT release they were built for (see each plan's sidecar in the toolkit's artifacts).
# Check after deploying: toolkit eval --backend triton --url http://<ingress-host>:80 --model <name>
{python}apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 4
    model:
      modelFormat:
        name: triton
      protocolVersion: v2
      runtime: kserve-tritonserver
      storageUri: STORAGE_URI
      args:
        - --strict-readiness=true
        - --exit-timeout-secs=30
      resources:
        requests:
          cpu: "2"
          memory: 2Gi
        limits:
          cpu: "2"
          memory: 2Gi
{limits}"""


def _check_options(max_batch: int, instances: int, queue_delay_us: int, targets: list[str], runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise InputError(f"unknown Triton runtime {runtime!r}", f"choose from {', '.join(RUNTIMES)}")
    if not 1 <= max_batch <= 65536:
        raise InputError(f"--max-batch must be 1..65536, got {max_batch}", "pass e.g. --max-batch 1024")
    if not 1 <= instances <= 64:
        raise InputError(f"--instances must be 1..64, got {instances}", "pass e.g. --instances 1")
    if not 0 <= queue_delay_us <= 10_000_000:
        raise InputError(f"--max-queue-delay-us must be 0..10,000,000, got {queue_delay_us}", "pass e.g. 100")
    for t in targets:
        if t not in TARGETS:
            raise InputError(f"unknown Triton target {t!r}", f"choose from {', '.join(TARGETS)}")


def _verified_engine(engine: Path, precision: str, max_batch: int) -> bytes:
    """The bytes of an engine whose sidecar matches them and their ONNX source (ModelFileError
    otherwise), and whose profile admits `max_batch`. The GPU and TensorRT release it is tied to are
    the builder's, recorded in the sidecar and copied into the config: the serving machine must
    match them (Triton refuses a plan from another TensorRT release)."""
    from toolkit.files import engine_sidecar

    record = engine_sidecar.read_record(engine)
    gpu = record["gpu"]
    builder = engine_sidecar.EngineEnvironment(record["tensorrt_version"], str(gpu.get("name")), str(gpu.get("compute_capability")))
    verified = engine_sidecar.verify_engine_file(engine, builder, precision)
    profile_max = engine_sidecar.profile_of(verified.record)[2]
    if max_batch > profile_max:
        raise InputError(f"--max-batch {max_batch} exceeds the engine {engine.name}'s profile max {profile_max}",
                         f"pass --max-batch {profile_max} or rebuild the engine with --max-batch {max_batch}")
    return verified.data


def export_triton(
    precisions: list[str],
    artifacts_dir: str | os.PathLike = paths.ARTIFACTS_DIR,
    out_dir: str | os.PathLike | None = None,
    targets: list[str] | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    instances: int = 1,
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
    runtime: str = "native",
    threads: int | None = None,
    sys_path: str | None = None,
    write_kubernetes: bool = True,
) -> RepositoryResult:
    """Write the repository from the exports already in `artifacts_dir`; see the module docstring.

    ONNX targets need `toolkit export --format onnx` first (a missing file is bad input, named with
    the command that makes it); the tensorrt target is skipped, with the reason, when no engine is
    there, and refused when an engine is there but fails its sidecar check. `runtime="python"`
    writes python-backend models (onnxruntime and openvino targets; `threads` per instance, 0/None:
    every core; `sys_path`: where the stub imports the toolkit, default this environment)."""
    import importlib.util

    from toolkit.files.onnx_file import load_checked

    if importlib.util.find_spec("tritonclient") is None:
        raise UnavailableError("the Python package 'tritonclient' is not installed, and the repository's configs are checked with its schema",
                               "pip install 'toolkit[serve]'")
    targets = list(targets or ("onnxruntime", "openvino", "tensorrt"))
    _check_options(max_batch, instances, queue_delay_us, targets, runtime)
    if threads is not None and threads < 0:
        raise InputError(f"--threads must be at least 1, got {threads}", "omit it to use every core")
    artifacts = Path(artifacts_dir)
    out = Path(out_dir) if out_dir is not None else artifacts / "triton"
    plan: list[tuple[str, str, Path, bytes | None]] = []  # target, precision, source file, bytes
    skipped = []
    for target in targets:
        for precision in precisions:
            if runtime == "python" and target not in PYTHON_TARGETS:
                if target == "tensorrt" and precision in ENGINE_PRECISIONS:
                    skipped.append(f"tensorrt/{precision}: the python runtime serves ONNX on the CPU (TensorRT plans: --runtime native)")
                continue
            if target == "tensorrt":
                if precision not in ENGINE_PRECISIONS:
                    continue
                engine = paths.engine_path(precision, artifacts)
                if not engine.is_file():
                    skipped.append(f"tensorrt/{precision}: no engine {engine} (build one on the serving GPU with "
                                   f"`toolkit export --format tensorrt --precision {precision}`)")
                    continue
                plan.append((target, precision, engine, _verified_engine(engine, precision, max_batch)))
                continue
            if precision not in ONNX_TARGETS[target]:
                continue
            source = paths.onnx_path(precision, artifacts)
            if not source.is_file():
                raise ModelFileError(f"ONNX export {source} for the {target}/{precision} model is missing",
                                     f"export it with `toolkit export --format onnx --precision {precision}` or pass --artifacts")
            load_checked(source)  # unsafe or foreign files never enter a repository
            plan.append((target, precision, source, source.read_bytes()))
    if not plan:
        raise InputError(f"nothing to put in the repository for precisions {precisions} and targets {targets}",
                         "; ".join(skipped) or "choose other --precision values")

    store.check_writable_dir(out, create=True)
    result = RepositoryResult(directory=out, skipped=skipped)
    for target, precision, source, data in plan:
        name = model_name(target, precision)
        filename = "model.plan" if target == "tensorrt" else "model.onnx"
        model_file = out / name / "1" / filename
        config_file = out / name / "config.pbtxt"
        sha = store.sha256_bytes(data)  # of the bytes checked above, which are the bytes written
        python = python_parameters(target, threads, sys_path) if runtime == "python" else None
        text = config_text(_model_config(name, target, precision, sha, max_batch, instances, queue_delay_us, source.name, python))
        for d in (model_file.parent, config_file.parent):
            d.mkdir(parents=True, exist_ok=True)
        store.write_artifact(model_file, lambda tmp, data=data: tmp.write_bytes(data), kind=f"triton-model-{target}",
                             parents=[source], manifest_dir=out)
        config_parents = [model_file]
        if python is not None:
            code_file = model_file.parent / "model.py"
            store.write_artifact(code_file, lambda tmp: tmp.write_text(MODEL_PY, encoding="utf-8"), kind="triton-python-model",
                                 manifest_dir=out)
            config_parents.append(code_file)
        store.write_artifact(config_file, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"), kind="triton-config",
                             parents=config_parents, manifest_dir=out)
        result.models.append(RepositoryModel(name, target, precision, config_file, model_file, source, sha, max_batch, runtime))
    if not write_kubernetes:
        return result
    kube = out.parent / f"{out.name}{KSERVE_SUFFIX}"
    manifest = kserve_manifest(_k8s_name(out.name), result.models)
    store.write_artifact(kube, lambda tmp: tmp.write_text(manifest, encoding="utf-8"), kind="kserve-inferenceservice",
                         parents=[m.config for m in result.models])
    result.kubernetes = kube
    return result


def _k8s_name(text: str) -> str:
    """A DNS-1035 label (what Kubernetes names must be) from a directory name."""
    import re

    name = re.sub(r"[^a-z0-9-]+", "-", f"mnist-{text}".lower()).strip("-")[:63].rstrip("-")
    return name or "mnist-triton"
