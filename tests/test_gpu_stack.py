"""The GPU stack as a user installs it, checked on the CPU.

- The gpu-cu12 / gpu-cu13 extras each name one CUDA major, and the checker that reads a pip dry
  run tells one major from a mix (on synthetic reports and on the recorded dry runs).
- A provider onnxruntime lists but cannot start makes its backend *unavailable with the reason*
  (never an error): fake onnxruntime modules stand in for a GPU build whose libraries are missing.
- A failing `import tensorrt` is one line and exit 3 (a fake `tensorrt` package on the path).
- A CUDA torch on a too-old driver says so.
- The TensorRT 11 flag logic, against the real 10.16 and 11.4 bindings (through trt-api-check).
"""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from helpers import REFERENCE, ROOT, assert_one_line_error, run_cli

from toolkit.backends import onnxruntime_gpu, registry, tensorrt_env
from toolkit.env import explain_no_cuda

sys.path.insert(0, str(ROOT / "scripts"))
import check_gpu_stack  # noqa: E402

TRT_API_CHECK = ROOT.parent / "shared" / "tools" / "trt-api-check"
RECORDED = Path(__file__).parent / "data" / "gpu-extras"


# --- the extras and the dry-run checker -------------------------------------------------------------

def _extras() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


@pytest.mark.parametrize("major", [12, 13])
def test_each_gpu_extra_names_one_cuda_stack(major):
    from packaging.requirements import Requirement

    requirements = {Requirement(r).name: Requirement(r) for r in _extras()[f"gpu-cu{major}"]}
    assert set(requirements) == {"torch", "onnxruntime-gpu", f"tensorrt-cu{major}"}
    assert requirements["onnxruntime-gpu"].extras == {"cuda", "cudnn"}  # the CUDA libraries torch does not ship
    for requirement in requirements.values():
        # every range is closed above: the next release may be built for another CUDA major
        assert any(spec.operator == "<" for spec in requirement.specifier), requirement
    # onnxruntime-gpu's TensorRT provider links libnvinfer.so.10 in every release the ranges allow
    assert not requirements[f"tensorrt-cu{major}"].specifier.contains("11.0.0.0")
    assert requirements[f"tensorrt-cu{major}"].specifier.contains("10.16.1.11")
    assert "gpu" not in _extras()  # the old extra resolved to CUDA 13 while the README said 12


def test_the_two_extras_do_not_overlap():
    from packaging.requirements import Requirement

    cu12 = {Requirement(r).name: Requirement(r).specifier for r in _extras()["gpu-cu12"]}
    cu13 = {Requirement(r).name: Requirement(r).specifier for r in _extras()["gpu-cu13"]}
    # the versions checked (docs/gpu-stack.md): which CUDA major each release is built for
    for version in ("2.10.0",):
        assert cu12["torch"].contains(version) and not cu13["torch"].contains(version)
    for version in ("2.11.0", "2.14.1", "2.15.0"):
        assert cu13["torch"].contains(version) and not cu12["torch"].contains(version)
    for version in ("1.22.0", "1.26.0"):
        assert cu12["onnxruntime-gpu"].contains(version) and not cu13["onnxruntime-gpu"].contains(version)
    for version in ("1.28.0", "1.31.1"):
        assert cu13["onnxruntime-gpu"].contains(version) and not cu12["onnxruntime-gpu"].contains(version)
    # 1.27.0 is CUDA 13, but its preload_dlls() looks for the CUDA 12 folder layout: in neither
    assert not cu12["onnxruntime-gpu"].contains("1.27.0") and not cu13["onnxruntime-gpu"].contains("1.27.0")


def _report(*packages) -> dict:
    return {"install": [{"metadata": {"name": n, "version": v, "requires_dist": list(r)}} for n, v, r in packages]}


TORCH_CU12 = ("torch", "2.10.0", ['nvidia-cuda-runtime-cu12==12.8.90; platform_system == "Linux"'])
TORCH_CU13 = ("torch", "2.14.1", ['cuda-toolkit[cudart]==13.0.3; platform_system == "Linux"',
                                  'cuda-bindings<14,>=13.0.3; platform_system == "Linux"'])
ORT_CU12 = ("onnxruntime-gpu", "1.26.0", ['nvidia-cuda-runtime-cu12~=12.0; extra == "cuda"'])
ORT_CU13 = ("onnxruntime-gpu", "1.31.1", ['nvidia-cuda-runtime~=13.0; extra == "cuda"'])


@pytest.mark.parametrize("packages, verdict", [
    ([TORCH_CU12, ORT_CU12, ("tensorrt_cu12_bindings", "10.16.1.11", []), ("nvidia-cudnn-cu12", "9.10.2.21", [])], 0),
    ([TORCH_CU13, ORT_CU13, ("tensorrt-cu13-libs", "10.16.1.11", []), ("nvidia-cuda-runtime", "13.0.96", [])], 0),
    ([TORCH_CU13, ORT_CU12, ("nvidia-cudnn-cu12", "9.10.2.21", [])], 1),  # today's mix: CUDA 13 torch, CUDA 12 ORT
    ([TORCH_CU12, ORT_CU12, ("tensorrt-cu13-libs", "11.4.0.106", [])], 1),  # the `tensorrt` meta-package's pick
    ([("torch", "2.13.0+cpu", []), ORT_CU13], 1),  # a CPU torch inside the range
    ([("numpy", "2.3.0", [])], 1),  # nothing CUDA at all
])
def test_checker_tells_one_cuda_major_from_a_mix(tmp_path, capsys, packages, verdict):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(_report(*packages)))
    assert check_gpu_stack.main([str(report)]) == verdict
    assert ("OK: one CUDA major" in capsys.readouterr().out) == (verdict == 0)


def test_checker_does_not_read_an_upper_bound_as_a_major():
    assert check_gpu_stack.required_majors(['cuda-bindings<14,>=13.0.3']) == {13}
    assert check_gpu_stack.required_majors(['nvidia-cufft~=12.0; extra == "cuda"', "numpy>=2"]) == set()


@pytest.mark.parametrize("major", [12, 13])
def test_recorded_dry_run_resolves_to_one_cuda_major(major, capsys):
    """The dry run recorded on 2026-11-30 (scripts/dry-run-gpu-extras, PyPI only, TensorRT libs as
    stand-ins; docs/gpu-stack.md): re-judged by today's checker."""
    assert check_gpu_stack.main([str(RECORDED / f"gpu-cu{major}.json"), "--expect", str(major)]) == 0
    out = capsys.readouterr().out
    assert f"tensorrt-cu{major}-libs" in out and "onnxruntime-gpu" in out and "torch" in out


def test_standin_wheels_carry_the_cuda_runtime_requirement(tmp_path):
    import zipfile

    wheels = check_gpu_stack.write_standins(tmp_path)
    assert len(wheels) == 4
    with zipfile.ZipFile(next(w for w in wheels if "cu13" in w.name)) as archive:
        meta = next(archive.read(n).decode() for n in archive.namelist() if n.endswith("METADATA"))
    assert "Requires-Dist: cuda-toolkit[cudart]<14,>=13" in meta


# --- drivers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("torch_cuda, driver, needles", [
    (None, None, ["CPU-only build", "gpu-cu12"]),
    ("13.0", None, ["no NVIDIA driver", "libcuda.so.1"]),
    ("13.0", 12020, ["driver too old for CUDA 13", "supports CUDA 12.2", "r580+", "gpu-cu12"]),
    ("12.8", 11080, ["driver too old for CUDA 12", "r525+"]),
    ("12.8", 12020, ["no CUDA GPU is visible", "CUDA_VISIBLE_DEVICES"]),  # minor-version compatibility: 12.2 runs 12.8
])
def test_why_torch_sees_no_gpu(torch_cuda, driver, needles):
    reason = explain_no_cuda(torch_cuda, driver)
    assert "\n" not in reason
    for needle in needles:
        assert needle in reason, reason


# --- onnxruntime providers that are listed but cannot start ------------------------------------------

class FakeSession:
    """What onnxruntime-gpu's InferenceSession does when a provider's libraries are missing: the
    provider bridge writes the loader's error to stderr (fd 2) and, with fallback, the session
    quietly runs on the CPU; without fallback it raises."""

    behaviour = "fallback"
    created: list = []

    def __init__(self, model, sess_options=None, providers=None, enable_fallback=1, **_):
        import os

        type(self).created.append(providers)
        self._providers = [p[0] if isinstance(p, tuple) else p for p in providers]
        if self.behaviour == "works":
            return
        message = self.behaviour
        os.write(2, f"[E:onnxruntime:Default, provider_bridge_ort.cc:2167 TryGetProviderInfo] {message}\n".encode())
        if enable_fallback:
            self._providers = ["CPUExecutionProvider"]
        else:
            raise RuntimeError(message)

    def get_providers(self):
        return self._providers

    def run(self, outputs, feeds):
        return [feeds["x"] + feeds["x"]]


def _fake_onnxruntime(calls: list) -> types.ModuleType:
    module = types.ModuleType("onnxruntime")
    module.__spec__ = importlib.machinery.ModuleSpec("onnxruntime", None)
    module.__version__ = "1.26.0"
    module.get_available_providers = lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    module.preload_dlls = lambda: calls.append("preload_dlls") or print("Failed to load libcudnn.so.9: not found")
    module.SessionOptions = lambda: types.SimpleNamespace(log_severity_level=2)
    module.InferenceSession = FakeSession
    return module


@pytest.fixture
def fake_gpu_onnxruntime(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "onnxruntime", _fake_onnxruntime(calls))
    monkeypatch.setattr(registry, "cuda_available", lambda: (True, ""))
    FakeSession.created = []
    caches = (onnxruntime_gpu.probe_provider, onnxruntime_gpu.prepare_provider_libraries, tensorrt_env.tensorrt_import_problem)
    for cached in caches:
        cached.cache_clear()
    yield calls
    for cached in caches:  # no fake's verdict outlives the test
        cached.cache_clear()


MISSING_CUBLAS = ("Failed to load library libonnxruntime_providers_cuda.so with error: "
                  "libcublasLt.so.12: cannot open shared object file: No such file or directory")
MISSING_NVINFER = ("Failed to load library libonnxruntime_providers_tensorrt.so with error: "
                   "libnvinfer.so.10: cannot open shared object file: No such file or directory")


@pytest.mark.parametrize("behaviour", [MISSING_CUBLAS, "CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version"])
def test_a_cuda_provider_that_cannot_start_is_skipped_with_the_reason(fake_gpu_onnxruntime, capfd, monkeypatch, behaviour):
    monkeypatch.setattr(FakeSession, "behaviour", behaviour)
    status = registry.status("onnxruntime-cuda")
    assert not status.available
    if "libcublasLt" in behaviour:
        assert "libcublasLt.so.12 was not found" in status.reason and "[cuda] extra" in status.reason
    else:
        assert "CUDA driver version is insufficient" in status.reason
    assert "\n" not in status.reason
    # the probe asked for the provider alone, with onnxruntime's silent CPU fallback off
    assert FakeSession.created == [[("CUDAExecutionProvider", {"device_id": "0"})]]
    assert fake_gpu_onnxruntime == ["preload_dlls"]
    out, err = capfd.readouterr()
    assert out == "" and err == "", "the provider's native messages must not reach the terminal"
    # asked again: the cached probe, no second session
    assert registry.status("onnxruntime-cuda") == status and len(FakeSession.created) == 1


def test_the_tensorrt_provider_imports_tensorrt_first_and_names_the_missing_tensorrt(fake_gpu_onnxruntime, monkeypatch):
    order = []
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # importable: find_spec sees it
    sys.modules["tensorrt"].__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    monkeypatch.setattr(tensorrt_env, "tensorrt_import_problem", lambda: order.append("import tensorrt") or "")
    monkeypatch.setattr(FakeSession, "behaviour", MISSING_NVINFER)
    original = FakeSession.__init__
    monkeypatch.setattr(FakeSession, "__init__", lambda self, *a, **k: order.append("session") or original(self, *a, **k))
    status = registry.status("onnxruntime-trt")
    assert not status.available
    assert "libnvinfer.so.10 was not found" in status.reason and "TensorRT 10" in status.reason
    assert order.index("import tensorrt") < order.index("session")


def test_a_provider_that_starts_and_computes_is_usable(fake_gpu_onnxruntime, monkeypatch):
    monkeypatch.setattr(FakeSession, "behaviour", "works")
    assert registry.status("onnxruntime-cuda").available
    # preload_dlls printed a failure, yet the provider ran: usable (torch had loaded cuDNN, say)


def test_the_gate_plans_an_unstartable_provider_as_skipped_not_as_an_error(fake_gpu_onnxruntime, monkeypatch, tmp_path):
    monkeypatch.setattr(FakeSession, "behaviour", MISSING_CUBLAS)
    for name in ("mnist_cnn.pt", "mnist_cnn.fp16.onnx"):  # planning checks the files: real ones
        shutil.copy(REFERENCE / name, tmp_path / name)
    planned = registry.plan_pairs(None, ["fp16"], tmp_path / "mnist_cnn.pt", tmp_path)
    cuda = [p for p in planned if p.backend == "onnxruntime-cuda"]
    assert cuda and not cuda[0].available and "libcublasLt.so.12" in cuda[0].reason


def test_the_reason_is_read_from_onnxruntimes_own_log_lines():
    # as onnxruntime-gpu 1.31.1 printed them on this machine (no CUDA libraries), colours included
    said = ("\x1b[1;31m2026-11-30 05:35:39.652577264 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] "
            "[ONNXRuntimeError] : 1 : FAIL : Failed to load library .../libonnxruntime_providers_cuda.so with error: "
            "libcublasLt.so.13: cannot open shared object file: No such file or directory\x1b[m\n"
            "\x1b[0;93m[W:onnxruntime:Default, onnxruntime_pybind_state.cc:1295] Failed to create CUDAExecutionProvider. "
            "Require cuDNN 9.* and CUDA 13.*.\x1b[m")
    reason = onnxruntime_gpu.explain_provider_failure("CUDAExecutionProvider", said)
    assert reason.startswith("CUDAExecutionProvider did not load: libcublasLt.so.13 was not found (the CUDA 13 libraries")
    no_library = onnxruntime_gpu.explain_provider_failure("CUDAExecutionProvider", said.split("\n")[1])
    assert "Failed to create CUDAExecutionProvider" in no_library and "\x1b" not in no_library
    missing_trt = onnxruntime_gpu.explain_provider_failure("TensorrtExecutionProvider", MISSING_NVINFER)
    assert "libnvinfer.so.10 was not found (TensorRT 10:" in missing_trt


def test_cpu_onnxruntime_is_named_as_the_reason():
    onnxruntime_gpu.probe_provider.cache_clear()
    probe = onnxruntime_gpu.probe_provider("CUDAExecutionProvider")  # the real, CPU-only onnxruntime here
    assert not probe.usable
    assert "lacks CUDAExecutionProvider" in probe.reason and "'onnxruntime'" in probe.reason


def test_the_probe_runs_a_real_session_on_a_provider_that_exists(capfd):
    onnxruntime_gpu.probe_provider.cache_clear()
    assert onnxruntime_gpu.probe_provider("CPUExecutionProvider").usable
    assert capfd.readouterr() == ("", "")


# --- import tensorrt that fails ----------------------------------------------------------------------

def _fake_tensorrt(site: Path, error: str) -> Path:
    """A `tensorrt` package whose import fails as a broken or mismatched install does."""
    (site / "tensorrt").mkdir(parents=True)
    (site / "tensorrt" / "__init__.py").write_text(f"raise {error}\n")
    return site


def test_a_failing_import_tensorrt_is_one_line_and_exit_3(tmp_path):
    site = _fake_tensorrt(tmp_path / "site", "OSError('libnvinfer.so.10: cannot open shared object file: No such file or directory')")
    env = {"PYTHONPATH": f"{site}:{ROOT}"}
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("export", "--format", "tensorrt", "--precision", "fp32", "--out", out, env=env)
    line = assert_one_line_error(proc, "`import tensorrt` failed", "OSError: libnvinfer.so.10: cannot open shared object file", code=3)
    assert "make gpu-install" in line
    assert list(out.iterdir()) == []
    info = run_cli("info", env=env)
    assert info.returncode == 0, info.stderr
    assert "`import tensorrt` failed (OSError: libnvinfer.so.10" in info.stdout and info.stderr == ""


def test_an_import_error_from_tensorrt_makes_both_tensorrt_backends_unavailable(tmp_path, monkeypatch):
    site = _fake_tensorrt(tmp_path / "site", "ImportError('libcudart.so.13: cannot open shared object file')")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    tensorrt_env.tensorrt_import_problem.cache_clear()
    try:
        for name in ("tensorrt", "onnxruntime-trt"):
            status = registry.status(name)
            assert not status.available
            assert "`import tensorrt` failed (ImportError: libcudart.so.13" in status.reason
        assert any("`import tensorrt` failed" in m for m in tensorrt_env.missing_for_tensorrt())
    finally:
        tensorrt_env.tensorrt_import_problem.cache_clear()


def test_tensorrt_cuda_comes_from_tensorrts_own_wheels():
    def dist(name, version):
        return types.SimpleNamespace(metadata={"Name": name}, version=version)

    found = tensorrt_env.tensorrt_cuda([dist("torch", "2.14.1"), dist("tensorrt_cu12_bindings", "10.16.1.11"),
                                        dist("tensorrt-cu12-libs", "10.16.1.11"), dist("nvidia-cuda-runtime", "13.0.96")])
    assert found["cuda_major"] == 12 and found["packages"] == ["tensorrt-cu12-bindings 10.16.1.11"]
    mixed = tensorrt_env.tensorrt_cuda([dist("tensorrt-cu12-libs", "10.16.1.11"), dist("tensorrt-cu13-bindings", "10.16.1.11")])
    assert mixed["cuda_major"] is None and len(mixed["packages"]) == 2
    assert tensorrt_env.tensorrt_cuda([])["cuda_major"] is None


# --- TensorRT 11: the strongly-typed flag, against the real bindings ---------------------------------

FLAG_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorrt as trt
    from toolkit.errors import InputError
    from toolkit.export import tensorrt as export
    from toolkit.export.tensorrt import EngineOptions

    class Network:  # get_flag as a network of this release would answer it
        def __init__(self, value):
            self.value = value
        def get_flag(self, flag):
            assert flag == trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED
            return self.value

    class Profile:  # what the binding does when TensorRT rejects the shapes
        def set_shape(self, *args):
            raise RuntimeError("Shape provided for min is inconsistent with other shapes.")

    class Builder:
        def create_optimization_profile(self):
            return Profile()

    class Config:
        def set_memory_pool_limit(self, *args):
            pass

    try:
        export._configure(Builder(), Config(), EngineOptions())
        profile_error = None
    except InputError as exc:
        profile_error = str(exc)
    print(json.dumps({
        "version": trt.__version__,
        "flags": export.network_flags(trt),
        "enum": int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED),
        "accepts_flag_false": export.is_strongly_typed(Network(False), trt),
        "accepts_flag_true": export.is_strongly_typed(Network(True), trt),
        "profile_error": profile_error,
    }))
""")


@pytest.mark.skipif(not TRT_API_CHECK.exists(), reason=f"{TRT_API_CHECK} is absent (it lives outside this repository)")
@pytest.mark.parametrize("version, flags, accepts_false", [("10.16.1.11", 1 << 1, False), ("11.4.0.106", 0, True)])
def test_strongly_typed_logic_against_the_real_bindings(tmp_path, version, flags, accepts_false):
    script = tmp_path / "flags.py"
    script.write_text(FLAG_SCRIPT)
    proc = subprocess.run([sys.executable, str(TRT_API_CHECK), "--versions", version, "--python", str(script)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["version"] == version
    # 10.x: STRONGLY_TYPED is bit 1 and must read back as set; 11.x: bit 0, deprecated and ignored,
    # so nothing is passed and a False get_flag is not a refusal.
    assert found["flags"] == flags
    assert found["accepts_flag_false"] is accepts_false and found["accepts_flag_true"] is True
    assert found["profile_error"] and "TensorRT rejected the batch profile" in found["profile_error"]
    assert "inconsistent" in found["profile_error"]


# --- toolkit gpu-check ----------------------------------------------------------------------------------

def test_gpu_check_without_a_gpu_writes_the_report_and_exits_3(tmp_path):
    proc = run_cli("gpu-check", "--no-tests", "--out", tmp_path / "gc", "--artifacts", tmp_path / "none")
    assert_one_line_error(proc, "no GPU backend is usable here", "pytorch-cuda", code=3)
    data = json.loads((tmp_path / "gc" / "gpu-check.json").read_text())
    assert data["verdict"] == "nothing ran" and data["usable"] == []
    assert [b["name"] for b in data["backends"]] == ["pytorch-cuda", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt"]
    assert len(data["missing"]) == 4 and all(": " in m for m in data["missing"])
    assert {s["name"]: s["status"] for s in data["steps"]} == {"tests": "skipped", "exports": "skipped", "parity": "skipped", "bench": "skipped"}
    markdown = (tmp_path / "gc" / "gpu-check.md").read_text()
    assert "What is missing for the rest" in markdown and "Verdict: nothing ran" in markdown
    assert not (tmp_path / "none").exists()  # nothing exported when nothing can use it


def test_gpu_check_runs_the_usable_rows_and_says_what_the_rest_lack(tmp_path, data_dir, checkpoint):
    """The pytorch-cuda-only machine (a CUDA torch, the CPU onnxruntime, no TensorRT), with the CPU
    `pytorch` backend standing in for `pytorch-cuda`: the gate and the quick benchmark run for real
    on it, the other backends are reported with their reasons."""
    from toolkit.backends.registry import BackendStatus
    from toolkit.gpu_check import run_gpu_check
    from toolkit.report.gpu_check import gpu_check_markdown, write_gpu_check_reports

    statuses = [
        BackendStatus("pytorch", True, "", "cpu", ("fp32",)),
        BackendStatus("onnxruntime-cuda", False, "onnxruntime 1.32.0 lacks CUDAExecutionProvider: the CPU package", "cuda", ("fp32",)),
        BackendStatus("tensorrt", False, "Python package 'tensorrt' is not installed", "cuda", ("fp32",)),
    ]
    result = run_gpu_check(checkpoint=checkpoint, artifacts_dir=tmp_path / "artifacts", out_dir=tmp_path / "gc",
                           data_dir=data_dir, run_tests=False, statuses=statuses, limit=512)
    assert result.verdict == "passed", result.steps
    assert [(r["backend"], r["precision"], r["status"]) for r in result.parity] == [("pytorch", "fp32", "pass")]
    assert result.parity[0]["accuracy"] > 98.0  # 512 images
    cells = [r for r in result.bench if r["backend"] == "pytorch" and r["status"] == "ok"]
    assert {r["batch_size"] for r in cells} == {1, 32, 256} and all(r["p50_us"] > 0 for r in cells)
    assert result.missing == ["onnxruntime-cuda: onnxruntime 1.32.0 lacks CUDAExecutionProvider: the CPU package",
                              "tensorrt: Python package 'tensorrt' is not installed"]
    markdown = gpu_check_markdown(result)
    assert "| pytorch/fp32 | pass |" in markdown and "Quick benchmark" in markdown
    json_path, md_path = write_gpu_check_reports(result, tmp_path / "gc")
    assert json.loads(json_path.read_text())["verdict"] == "passed" and md_path.read_text() == markdown


def test_junit_outcomes_keep_the_skip_and_failure_messages(tmp_path):
    from toolkit.gpu_check import parse_junit

    xml = tmp_path / "junit.xml"
    xml.write_text(textwrap.dedent("""\
        <testsuites><testsuite>
          <testcase classname="tests.test_tensorrt" name="test_a"/>
          <testcase classname="tests.test_tensorrt" name="test_b[fp32]"><skipped message="needs a CUDA GPU"/></testcase>
          <testcase classname="tests.test_battery" name="test_c"><failure message="assert 1e-3 &lt;= 1e-4">trace</failure></testcase>
        </testsuite></testsuites>"""))
    outcomes = [(o.test, o.outcome, o.message) for o in parse_junit(xml)]
    assert outcomes == [("tests/test_tensorrt.py::test_a", "passed", ""),
                        ("tests/test_tensorrt.py::test_b[fp32]", "skipped", "needs a CUDA GPU"),
                        ("tests/test_battery.py::test_c", "failed", "assert 1e-3 <= 1e-4")]


def test_a_failed_step_is_exit_1_and_names_the_step():
    from toolkit.backends.registry import BackendStatus
    from toolkit.errors import EXIT_CHECK_FAILED, EXIT_UNAVAILABLE, CheckFailed, UnavailableError
    from toolkit.gpu_check import GpuCheckResult, Step, raise_for_verdict

    usable = [BackendStatus("pytorch-cuda", True, "", "cuda", ("fp32",))]
    failed = GpuCheckResult({}, usable, steps=[Step("tests", "ran"), Step("parity", "failed", "pytorch-cuda/fp32 fail: max |Δlogit| 0.2")])
    with pytest.raises(CheckFailed, match="gpu-check failed: parity: pytorch-cuda/fp32 fail") as err:
        raise_for_verdict(failed, "report.md")
    assert err.value.exit_code == EXIT_CHECK_FAILED
    raise_for_verdict(GpuCheckResult({}, usable, steps=[Step("parity", "ran")]), "report.md")  # passed: no error
    nothing = GpuCheckResult({}, [BackendStatus("tensorrt", False, "not installed", "cuda", ("fp32",))])
    with pytest.raises(UnavailableError, match="tensorrt: not installed") as err:
        raise_for_verdict(nothing, "report.md")
    assert err.value.exit_code == EXIT_UNAVAILABLE
