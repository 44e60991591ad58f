"""The python-backend variant of the Triton repository (`toolkit export --format triton --runtime
python`): what the tritonserver bundled with the serve extra serves directly, since it has no
onnxruntime or OpenVINO backend of its own.

Each model is `backend: "python"` with a `1/model.py` that runs the same `1/model.onnx` in Triton's
stub process through the toolkit's own backend (toolkit.serve.stub_model). The stub does not see
PYTHONPATH, so the config's `toolkit_sys_path` parameter carries where the toolkit and its runtime
are installed (this environment by default): the serving machine needs the toolkit installed there.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

RUNTIMES = ("native", "python")
PYTHON_TARGETS = ("onnxruntime", "openvino")  # the stub runs ONNX on the CPU; TensorRT plans are native only

MODEL_PY = '''"""Triton python-backend model written by the toolkit: runs model.onnx in this stub process.

The toolkit does the work (toolkit.serve.stub_model); the config's `toolkit_sys_path` parameter
says where it and its runtime are installed.
"""

import json
import os
import sys

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"]).get("parameters", {})
        paths = parameters.get("toolkit_sys_path", {}).get("string_value", "")
        for path in reversed([p for p in paths.split(os.pathsep) if p]):
            if path not in sys.path:
                sys.path.insert(0, path)
        from toolkit.serve.stub_model import StubModel

        self.model = StubModel(pb_utils, args)

    def execute(self, requests):
        return self.model.execute(requests)

    def finalize(self):
        self.model.close()
'''


def toolkit_sys_path() -> str:
    """Where this environment imports the toolkit and its runtimes from, for the stub's sys.path."""
    import toolkit

    found = [str(Path(toolkit.__file__).resolve().parent.parent)]
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in found:
            found.append(path)
    return os.pathsep.join(found)


def python_parameters(target: str, threads: int | None, sys_path: str | None) -> dict[str, str]:
    """The config parameters the stub model reads: which toolkit backend runs the file, its threads
    (0: every core), and where the toolkit is installed."""
    return {"toolkit_backend": target, "toolkit_threads": str(threads or 0), "toolkit_sys_path": sys_path or toolkit_sys_path()}
