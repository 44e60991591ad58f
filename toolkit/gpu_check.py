"""`toolkit gpu-check`: everything a GPU machine can verify, in one run and one report.

What runs, in order: which GPU backends are usable here (and, for the others, what is missing);
the GPU-marked tests (pytest -m "gpu or tensorrt", when the repository's tests/ are present);
the ONNX exports and, when TensorRT is usable, the engines they need; the parity gate over every
usable GPU backend; a quick benchmark of the same backends. Each step that cannot run is recorded
as skipped with the reason, so a machine with only a CUDA torch and the CPU onnxruntime runs the
pytorch-cuda rows and says what the other backends lack. The result is a dataclass; the CLI
writes it as JSON and Markdown (toolkit.report.gpu_check).
"""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.backends import registry
from toolkit.errors import CheckFailed, ToolkitError, UnavailableError
from toolkit.files import paths

TEST_MARKERS = "gpu or tensorrt"
TEST_TIMEOUT_SECONDS = 3600


@dataclass
class Step:
    name: str
    status: str  # "ran" | "skipped" | "failed"
    detail: str = ""  # what ran, why it was skipped, or what failed
    seconds: float = 0.0


@dataclass
class TestOutcome:
    test: str  # pytest node id
    outcome: str  # "passed" | "failed" | "error" | "skipped"
    message: str = ""


@dataclass
class GpuCheckResult:
    environment: dict
    backends: list[registry.BackendStatus]  # the GPU backends, usable or not
    steps: list[Step] = field(default_factory=list)
    tests: list[TestOutcome] = field(default_factory=list)
    parity: list[dict] = field(default_factory=list)  # one row per (backend, precision)
    bench: list[dict] = field(default_factory=list)  # one row per benchmark cell

    @property
    def usable(self) -> list[str]:
        return [b.name for b in self.backends if b.available]

    @property
    def missing(self) -> list[str]:
        """What keeps each unusable GPU backend from running, in words."""
        return [f"{b.name}: {b.reason}" for b in self.backends if not b.available]

    @property
    def verdict(self) -> str:
        """"passed", "failed", or "nothing ran" (no GPU backend is usable here)."""
        if any(s.status == "failed" for s in self.steps):
            return "failed"
        return "passed" if self.usable else "nothing ran"


def gpu_backend_statuses() -> list[registry.BackendStatus]:
    return [s for s in registry.all_statuses() if s.device == "cuda"]


def environment_facts() -> dict:
    """Versions and the GPU, from the same sources as `toolkit info`, plus the driver and TensorRT's CUDA."""
    from toolkit.backends.tensorrt_env import tensorrt_cuda
    from toolkit.env import cuda_available, driver_cuda_version, library_versions, tensorrt_package_version
    from toolkit.info import collect_info

    info = collect_info()
    driver = driver_cuda_version()
    return {
        "versions": {**library_versions(), "tensorrt": tensorrt_package_version()},
        "runtimes": info.runtimes,
        "torch_cuda": info.torch_cuda,
        "driver_supports_cuda": None if driver is None else f"{driver // 1000}.{(driver % 1000) // 10}",
        "tensorrt_cuda": tensorrt_cuda(),
        "gpus": [{"name": g.name, "compute_capability": g.compute_capability, "memory_gib": g.memory_gib} for g in info.gpus],
        "gpu_reason": cuda_available()[1],
        "warnings": info.warnings,
    }


# --- the GPU-marked tests -------------------------------------------------------------------------

def parse_junit(path: str | Path) -> list[TestOutcome]:
    """Per-test outcomes from pytest's JUnit XML (skips and failures with their messages)."""
    outcomes = []
    for case in ET.parse(path).getroot().iter("testcase"):
        test = "::".join(x for x in (case.get("classname", "").replace(".", "/") + ".py", case.get("name", "")) if x)
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = " ".join((found.get("message") or found.text or "").split())[:300]
                break
        outcomes.append(TestOutcome(test, outcome, message))
    return outcomes


def run_gpu_tests(out_dir: Path, repo_root: Path) -> tuple[Step, list[TestOutcome]]:
    t0 = time.perf_counter()
    if not (repo_root / "tests").is_dir():
        return Step("tests", "skipped", f"no tests/ folder in {repo_root} (run from a clone of the repository)"), []
    try:
        import pytest  # noqa: F401
    except ImportError:
        return Step("tests", "skipped", "pytest is not installed (the dev extra)"), []
    junit = out_dir / "gpu-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", TEST_MARKERS, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "tests"]
    try:
        proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=TEST_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return Step("tests", "failed", f"pytest -m '{TEST_MARKERS}' ran past {TEST_TIMEOUT_SECONDS} s", time.perf_counter() - t0), []
    seconds = time.perf_counter() - t0
    outcomes = parse_junit(junit) if junit.is_file() else []
    junit.unlink(missing_ok=True)
    counts = {k: sum(o.outcome == k for o in outcomes) for k in ("passed", "failed", "error", "skipped")}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no test collected"
    # pytest exits 5 when the marker selects nothing: that is not a failure of the GPU stack
    failed = proc.returncode not in (0, 5) or counts["failed"] or counts["error"]
    if failed and not outcomes:
        summary = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["pytest failed"]
        summary = summary[0][:300]
    return Step("tests", "failed" if failed else "ran", f"pytest -m '{TEST_MARKERS}': {summary}", seconds), outcomes


# --- exports, the gate and the benchmark ------------------------------------------------------------

def _ensure_exports(usable: list[str], checkpoint: Path, artifacts_dir: Path, data_dir) -> str:
    """The ONNX files (and engines) the usable GPU backends read, made when missing; says which."""
    from toolkit.export.onnx import export_onnx

    made = []
    needs_onnx = any(registry.get_spec(n).reads == "onnx" for n in usable) or "tensorrt" in usable
    if needs_onnx:
        for precision in paths.PRECISIONS:
            if not paths.onnx_path(precision, artifacts_dir).is_file():
                export_onnx(checkpoint, precision, artifacts_dir, data_dir=data_dir)
                made.append(paths.onnx_path(precision, artifacts_dir).name)
    if "tensorrt" in usable:
        from toolkit.export.tensorrt import build_engine

        for precision in paths.PRECISIONS:
            if not paths.engine_path(precision, artifacts_dir).is_file():
                build_engine(paths.onnx_path(precision, artifacts_dir), precision, artifacts_dir)
                made.append(paths.engine_path(precision, artifacts_dir).name)
    return f"made {', '.join(made)}" if made else "every file the usable GPU backends read was there"


def _parity_rows(report) -> list[dict]:
    return [{"backend": p.backend, "precision": p.precision, "status": p.status, "reason": p.reason,
             "accuracy": p.accuracy, "delta_pp": p.delta_pp, "agreement": p.agreement, "max_abs_logit": p.max_abs_logit,
             "seconds": round(p.seconds, 2)} for p in report.pairs]


def _bench_rows(report) -> list[dict]:
    return [{"backend": c.backend, "precision": c.precision, "variant": c.variant, "batch_size": c.batch_size,
             "status": c.status, "message": c.message,
             "p50_us": c.latency.median_us if c.latency else None, "p99_us": c.latency.p99_us if c.latency else None,
             "images_per_second_p50": c.images_per_second_p50} for c in report.cells]


def _run_step(result: GpuCheckResult, name: str, action) -> object | None:
    """Run one step; a toolkit error fails the step with its message and the check goes on."""
    t0 = time.perf_counter()
    try:
        value, detail, failed = action()
    except ToolkitError as exc:
        result.steps.append(Step(name, "failed", str(exc), time.perf_counter() - t0))
        return None
    result.steps.append(Step(name, "failed" if failed else "ran", detail, time.perf_counter() - t0))
    return value


def run_gpu_check(
    checkpoint: str | Path = paths.DEFAULT_CHECKPOINT,
    artifacts_dir: str | Path = paths.ARTIFACTS_DIR,
    out_dir: str | Path = "artifacts/gpu-check",
    data_dir=None,
    run_tests: bool = True,
    repo_root: str | Path = ".",
    statuses: list[registry.BackendStatus] | None = None,
    limit: int | None = None,
) -> GpuCheckResult:
    """See the module docstring. `statuses` replaces the probe of the GPU backends and `limit`
    cuts the gate to the first N test images (both for tests on the CPU)."""
    from toolkit.files.store import check_writable_dir

    out_dir = check_writable_dir(out_dir, create=True)
    artifacts_dir, checkpoint = Path(artifacts_dir), Path(checkpoint)
    result = GpuCheckResult(environment=environment_facts(), backends=statuses if statuses is not None else gpu_backend_statuses())
    if run_tests:
        step, result.tests = run_gpu_tests(out_dir, Path(repo_root))
        result.steps.append(step)
    else:
        result.steps.append(Step("tests", "skipped", "--no-tests"))
    usable = result.usable
    if not usable:
        for name in ("exports", "parity", "bench"):
            result.steps.append(Step(name, "skipped", "no GPU backend is usable here (see the backends' reasons)"))
        return result
    made = _run_step(result, "exports", lambda: (True, _ensure_exports(usable, checkpoint, artifacts_dir, data_dir), False))
    if made is None:
        for name in ("parity", "bench"):
            result.steps.append(Step(name, "skipped", "the exports failed"))
        return result

    def gate():
        from toolkit.parity import run_gate

        report = run_gate(checkpoint=checkpoint, artifacts_dir=artifacts_dir, backends=usable, data_dir=data_dir, limit=limit)
        counts = report.counts()
        result.parity = _parity_rows(report)
        return report, f"{len(report.pairs)} pairs on {report.images} test images: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v), not report.passed

    def bench():
        from toolkit.bench.schema import BenchConfig
        from toolkit.bench.sweep import run_bench

        report = run_bench(BenchConfig.quick_defaults(direct=False), backends=usable, checkpoint=checkpoint,
                           artifacts_dir=artifacts_dir, data_dir=data_dir)
        result.bench = _bench_rows(report)
        failed = [c for c in report.cells if c.status != "ok"]
        return report, f"quick sweep: {len(report.cells)} cells" + (f", {len(failed)} failed" if failed else ""), bool(failed)

    _run_step(result, "parity", gate)
    _run_step(result, "bench", bench)
    return result


def raise_for_verdict(result: GpuCheckResult, report_path: str | Path) -> None:
    """The command's exit: CheckFailed (1) when a step failed, UnavailableError (3) when no GPU
    backend is usable here; nothing when it passed."""
    if result.verdict == "failed":
        failed = [s for s in result.steps if s.status == "failed"]
        raise CheckFailed(f"gpu-check failed: {failed[0].name}: {failed[0].detail}", f"see {report_path}")
    if result.verdict == "nothing ran":
        raise UnavailableError(f"no GPU backend is usable here ({'; '.join(result.missing)[:400]})", f"see {report_path}")
