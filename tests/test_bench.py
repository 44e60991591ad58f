"""toolkit bench: statistics, the JSON schema, the baseline check, a real quick run, bad input.

No test asserts a speed: only arithmetic on known samples, structure, and behaviour.
"""

import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, assert_one_line_error, run_cli

from toolkit import bench
from toolkit.backends import registry
from toolkit.errors import InputError

# --- statistics on known samples ----------------------------------------------------------------

def test_latency_stats_on_known_samples():
    # 1..101 µs: linear-interpolation percentile q is exactly 1 + q, whatever the order.
    us = np.arange(1, 102, dtype=np.float64)
    np.random.default_rng(0).shuffle(us)
    s = bench.LatencyStats.from_seconds(us * 1e-6)
    n = 101
    assert s.count == n
    assert s.min_us == pytest.approx(1) and s.max_us == pytest.approx(n)
    assert s.mean_us == pytest.approx((n + 1) / 2) and s.median_us == pytest.approx(1 + 50)
    assert (s.p90_us, s.p95_us, s.p99_us) == pytest.approx((1 + 90, 1 + 95, 1 + 99))
    assert s.std_us == pytest.approx(math.sqrt(n * (n + 1) / 12))  # sample variance of 1..n
    from_ns = bench.LatencyStats.from_ns(us * 1e3)
    assert (from_ns.median_us, from_ns.p99_us, from_ns.std_us) == pytest.approx((s.median_us, s.p99_us, s.std_us))


def test_latency_stats_edge_cases():
    one = bench.LatencyStats.from_seconds([2e-6])
    assert one.std_us == 0 and one.min_us == one.median_us == one.p99_us == one.max_us == pytest.approx(2)
    with pytest.raises(ValueError):
        bench.LatencyStats.from_seconds([])


def test_throughput_arithmetic():
    assert bench.images_per_second(32, [0.01] * 10) == pytest.approx(3200)
    samples = [0.001, 0.002, 0.003, 0.006]
    assert bench.images_per_second(8, samples) == pytest.approx(8 * 4 / sum(samples))
    with pytest.raises(ValueError):
        bench.images_per_second(8, [])


def test_scenarios_follow_mlperf_names():
    assert bench.scenario_for(1) == bench.SINGLE_STREAM == "single-stream"
    assert {bench.scenario_for(b) for b in (2, 8, 256)} == {bench.OFFLINE}


def test_stored_samples_keep_time_order_within_the_limit():
    samples = list(range(5000))
    kept, stride = bench.stored_samples(samples, 2000)
    assert len(kept) <= 2000 and stride == math.ceil(5000 / 2000)
    assert kept == samples[::stride]
    assert bench.stored_samples(samples[:10], 2000) == (samples[:10], 1)


# --- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, count, seconds", [("20", 20, 0.0), ("0", 0, 0.0), ("0.2s", 0, 0.2), ("1S", 0, 1.0)])
def test_warmup_parses_calls_or_seconds(text, count, seconds):
    w = bench.Warmup.parse(text)
    assert (w.count, w.seconds) == (count, seconds)


@pytest.mark.parametrize("text", ["abc", "-1", "-0.1s", "nans", "1.5", "s"])
def test_warmup_refuses_nonsense(text):
    with pytest.raises(InputError):
        bench.Warmup.parse(text)


@pytest.mark.parametrize("kwargs", [dict(batch_sizes=(0,)), dict(batch_sizes=(8, -1)), dict(batch_sizes=()), dict(iterations=0),
                                    dict(min_seconds=-1.0), dict(threads=0), dict(min_seconds=float("nan"))])
def test_config_refuses_bad_values(kwargs):
    with pytest.raises(InputError):
        bench.BenchConfig(**kwargs)


def test_quick_config_is_small_but_overridable():
    q = bench.BenchConfig.quick_defaults()
    full = bench.BenchConfig()
    assert q.quick and len(q.batch_sizes) < len(full.batch_sizes) and q.min_seconds < full.min_seconds and not q.torch_compile
    assert bench.BenchConfig.quick_defaults(batch_sizes=(4,), iterations=None).batch_sizes == (4,)


# --- timing loop --------------------------------------------------------------------------------

def _config(**kw):
    base = dict(batch_sizes=(1,), warmup=bench.Warmup(count=3), iterations=7, min_seconds=0.0)
    base.update(kw)
    return bench.BenchConfig(**base)


def test_measure_counts_warmup_and_iterations():
    calls = []
    m = bench.measure([calls.append], np.zeros(1), _config())
    assert m[0].warmup_calls == 3 and len(m[0].samples_ns) == 7 and len(calls) == 10
    assert all(s >= 0 for s in m[0].samples_ns)


def test_measure_runs_for_min_seconds_when_that_is_longer():
    m = bench.measure([lambda x: None], np.zeros(1), _config(iterations=1, min_seconds=0.05))
    assert m[0].wall_ns >= 0.05e9 and len(m[0].samples_ns) > 1


def test_measure_alternates_paired_calls_in_blocks():
    order = []
    m = bench.measure([lambda x: order.append("a"), lambda x: order.append("b")], np.zeros(1), _config(iterations=20))
    assert all(len(r.samples_ns) >= 20 for r in m)
    runs = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
    # Warm-ups a, b; then blocks in ABBA order (a b | b a | a b ...): not all a then all b, and
    # each call goes first in half the blocks, so what a block leaves behind lands on both.
    assert runs[:2] == ["a", "b"] and len(runs) >= 2 + bench.PAIRED_BLOCKS
    assert runs[2:] == (["a", "b"] * bench.PAIRED_BLOCKS)[: len(runs) - 2]


def test_device_timing_hook_flags_launch_bound_cells():
    d = bench.device_timing_from_hook({"compute": [10e-6] * 5, "enqueue": [30e-6] * 5, "h2d": [2e-6] * 5})
    assert d.launch_bound and d.compute.median_us == pytest.approx(10) and d.d2h is None
    assert not bench.device_timing_from_hook({"compute": [10e-6] * 5, "enqueue": [3e-6] * 5}).launch_bound
    with pytest.raises(ValueError):
        bench.device_timing_from_hook({"enqueue": [1e-6]})


# --- synthetic reports: JSON round trip, summary, baseline --------------------------------------

def _cell(backend, precision, variant, bs, samples_us, status="ok"):
    if status != "ok":
        return bench.BenchCell(backend, precision, variant, bs, bench.scenario_for(bs), status=status, message="boom")
    seconds = np.asarray(samples_us, dtype=np.float64) * 1e-6
    return bench.BenchCell(
        backend, precision, variant, bs, bench.scenario_for(bs), latency=bench.LatencyStats.from_seconds(seconds),
        images_per_second=bench.images_per_second(bs, seconds), images_per_second_p50=bs / float(np.median(seconds)),
        warmup_calls=3, timed_seconds=float(seconds.sum()),
        samples_ns=[int(round(v * 1e3)) for v in samples_us],
    )


def _report(cells, pairs=None):
    env = bench.Environment("Test CPU", 2, 2, None, "Linux", "3.11", "0.1.0", {"numpy": "2"}, "2026-01-01T00:00:00+00:00",
                            "toolkit bench --quick", [0.5, 0.4, 0.3], [0.6, 0.5, 0.4])
    settings = bench.BenchSettings([1, 256], "0.2 s", 100, 1.0, 2, False, "mnist", "perf_counter_ns", ["note"])
    pairs = pairs or [bench.PairInfo(c.backend, c.precision, c.variant, "ok") for c in cells]
    return bench.BenchReport(environment=env, settings=settings, pairs=pairs, cells=cells)


def _samples(median_us, n=400, seed=0, spread=0.05):
    return median_us * np.random.default_rng(seed).lognormal(0.0, spread, n)


def test_json_round_trip_keeps_everything():
    cells = [_cell("pytorch", "fp32", "", 1, _samples(250)), _cell("onnxruntime", "fp32", "direct", 256, _samples(9000, seed=1)),
             _cell("openvino", "int8", "", 8, [], status="failed")]
    cells[0].device = bench.device_timing_from_hook({"compute": [1e-4] * 3, "enqueue": [2e-4] * 3})
    report = _report(cells, pairs=[bench.PairInfo("pytorch", "fp32", "", "ok", settings={"threads": 2}),
                                   bench.PairInfo("tensorrt", "fp16", "", "skipped", "no GPU")])
    from toolkit.files.store import json_text
    from toolkit.report.bench import SAMPLE_KEYS

    data = bench.report_to_dict(report, bench.summarize(report))
    text = json_text(data, inline_keys=SAMPLE_KEYS)
    # Same data as plain indented JSON, with each cell's samples on one line.
    assert json.loads(text) == json.loads(json.dumps(data))
    assert sum(1 for line in text.splitlines() if '"samples_ns": [' in line and line.rstrip().endswith(("],", "]"))) == 3
    data = json.loads(text)
    assert data["schema"] == bench.SCHEMA and data["schema_version"] == bench.SCHEMA_VERSION
    assert len(data["cells"]) == 3 and data["summary"]["ratios"] is not None
    back = bench.report_from_dict(data)
    assert back.environment == report.environment and back.settings == report.settings
    assert back.pairs == report.pairs
    assert back.cells == report.cells


def test_schema_document_names_every_field():
    doc = (ROOT / "docs" / "bench-schema.md").read_text(encoding="utf-8")
    for cls in (bench.BenchCell, bench.LatencyStats, bench.PairInfo, bench.Environment, bench.BenchSettings, bench.DeviceTiming,
                bench.CellComparison, bench.Ratio, bench.OverheadRow):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in doc, f"{cls.__name__}.{f.name} is not documented in docs/bench-schema.md"


@pytest.mark.parametrize("data", [{}, [], {"passed": True, "pairs": []}, {"schema": "toolkit-bench", "schema_version": 99, "cells": []},
                                  {"schema": "toolkit-bench", "schema_version": 1, "cells": [{"backend": "x"}]}])
def test_report_from_dict_refuses_what_is_not_a_benchmark(data):
    with pytest.raises(InputError, match="benchmark"):
        bench.report_from_dict(data, "some.json")


def test_summary_ratios_come_from_the_cells():
    eager1, ort1, ov256, eager256, int8_256 = _samples(250), _samples(50, seed=1), _samples(8000, seed=2), _samples(20000, seed=3), _samples(5000, seed=4)
    direct1 = _samples(49, seed=5)
    report = _report([
        _cell("pytorch", "fp32", "", 1, eager1), _cell("pytorch", "fp32", "", 256, eager256),
        _cell("onnxruntime", "fp32", "", 1, ort1), _cell("onnxruntime", "fp32", "direct", 1, direct1),
        _cell("openvino", "fp32", "", 256, ov256), _cell("openvino", "int8", "", 256, int8_256),
    ])
    ratios = {r.what: r for r in bench.summarize(report).ratios}
    b1 = next(r for w, r in ratios.items() if w.startswith("batch 1: PyTorch eager"))
    assert b1.value == pytest.approx(np.median(eager1) / np.median(ort1))
    big = next(r for w, r in ratios.items() if w.startswith("batch 256: best images/s"))
    assert big.value == pytest.approx(np.median(eager256) / np.median(int8_256))  # images/s at median latency
    int8 = next(r for w, r in ratios.items() if "openvino int8 / fp32" in w)
    assert int8.value == pytest.approx(np.median(ov256) / np.median(int8_256))
    overhead = next(r for w, r in ratios.items() if "onnxruntime wrapper overhead" in w)
    assert overhead.value == pytest.approx(np.median(ort1) / np.median(direct1) - 1, rel=1e-3)


def _pair_reports(factor, seed=1):
    base = _report([_cell("onnxruntime", "fp32", "", 1, _samples(50)), _cell("onnxruntime", "fp32", "", 256, _samples(9000, seed=2))])
    cur = _report([_cell("onnxruntime", "fp32", "", 1, _samples(50 * factor, seed=seed)),
                   _cell("onnxruntime", "fp32", "", 256, _samples(9000, seed=seed + 7))])
    return base, cur


def test_baseline_flags_a_real_regression():
    base, cur = _pair_reports(1.5)
    cmp = bench.compare_to_baseline(cur, base, threshold=0.10)
    verdicts = {c.batch_size: c.verdict for c in cmp.cells}
    assert verdicts == {1: "regressed", 256: "unchanged"} and not cmp.passed
    row = cmp.regressions[0]
    assert row.ratio == pytest.approx(cur.cells[0].latency.median_us / base.cells[0].latency.median_us)
    assert 1 < row.ci_low <= row.ratio <= row.ci_high


def test_baseline_passes_an_identical_run_and_noise():
    base, _ = _pair_reports(1.0)
    same = bench.compare_to_baseline(base, base)
    assert same.passed and {c.verdict for c in same.cells} == {"unchanged"}
    assert all(c.ratio == 1 for c in same.cells)
    _, noisy = _pair_reports(1.0, seed=11)  # same distribution, other draws
    assert bench.compare_to_baseline(noisy, base).passed


def test_baseline_needs_both_size_and_confidence():
    base, cur = _pair_reports(1.05)  # a real but small slowdown stays under a 10% threshold
    assert bench.compare_to_baseline(cur, base, threshold=0.10).passed
    few_base = _report([_cell("onnxruntime", "fp32", "", 1, [50, 80, 40])])
    few_cur = _report([_cell("onnxruntime", "fp32", "", 1, [60, 100, 45])])  # +20% on 3 noisy calls: not proven
    assert bench.compare_to_baseline(few_cur, few_base, threshold=0.10).passed
    improved = bench.compare_to_baseline(_pair_reports(0.5)[1], base)
    assert improved.passed and improved.cells[0].verdict == "improved"


def test_baseline_skips_cells_it_cannot_compare():
    base = _report([_cell("onnxruntime", "fp32", "", 1, _samples(50)), _cell("openvino", "fp32", "", 1, [], status="failed")])
    cur = _report([_cell("onnxruntime", "fp32", "", 8, _samples(50)), _cell("openvino", "fp32", "", 1, _samples(50))])
    cmp = bench.compare_to_baseline(cur, base)
    assert {c.verdict for c in cmp.cells} == {"not compared"} and cmp.passed
    with pytest.raises(InputError):
        bench.compare_to_baseline(cur, base, threshold=-0.1)


# --- real runs ----------------------------------------------------------------------------------

def _cpu_backends() -> list[str]:
    return [n for n in ("pytorch", "onnxruntime", "openvino") if registry.status(n).available]


QUICK = ["--quick", "--batch-sizes", "1,4", "--iterations", "5", "--min-seconds", "0.02", "--warmup", "2", "--quiet"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, exported_dir, checkpoint):
    out = tmp_path_factory.mktemp("bench")
    proc = run_cli("bench", *QUICK, "--backend", ",".join(_cpu_backends()), "--precision", "fp32",
                   "--artifacts", exported_dir, "--checkpoint", checkpoint, "--out", out)
    return proc, out


def test_quick_bench_writes_every_output(quick_run):
    from toolkit.report import BENCH_FILES

    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr
    for name in BENCH_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    manifest = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert set(BENCH_FILES) <= set(manifest)
    for name in ("latency.png", "throughput.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = bench.load_report(out / "bench.json")
    rows = {(c.backend, c.variant) for c in report.cells}
    expected = {(b, "") for b in _cpu_backends()} | {(b, "direct") for b in _cpu_backends() if b in bench.DIRECT_RUNTIMES}
    assert rows == expected
    assert {c.batch_size for c in report.cells} == {1, 4} and all(c.status == "ok" for c in report.cells)
    for c in report.cells:
        assert c.latency.count >= 5 and len(c.samples_ns) == c.latency.count
        assert c.latency.min_us <= c.latency.median_us <= c.latency.p99_us <= c.latency.max_us
        assert c.images_per_second == pytest.approx(bench.images_per_second(c.batch_size, np.array(c.samples_ns) * 1e-9))
        assert c.images_per_second_p50 == pytest.approx(c.batch_size / (c.latency.median_us * 1e-6))
    env = report.environment
    assert env.cpu_model and env.usable_cores >= 1 and "bench" in env.command and env.versions.get("numpy")
    md = (out / "bench.md").read_text()
    for needle in (env.cpu_model, "single-stream", "offline", "--quick", "end-to-end"):
        assert needle in md
    assert all(c.label in proc.stdout for c in report.cells)


def test_baseline_from_cli_passes_and_fails(quick_run, tmp_path, exported_dir, checkpoint):
    proc, out = quick_run
    data = json.loads((out / "bench.json").read_text())
    # A baseline 100x slower than this run cannot flag a regression; one 100x faster must, whatever the noise.
    for scale, code in ((100.0, 0), (0.01, 1)):
        scaled = json.loads(json.dumps(data))
        for c in scaled["cells"]:
            c["samples_ns"] = [max(1, int(s * scale)) for s in c["samples_ns"]]
            c["latency"] = dataclasses.asdict(bench.LatencyStats.from_ns(c["samples_ns"]))
        base = tmp_path / f"base-{scale}.json"
        base.write_text(json.dumps(scaled))
        run = run_cli("bench", *QUICK, "--backend", "onnxruntime", "--precision", "fp32", "--artifacts", exported_dir,
                      "--checkpoint", checkpoint, "--out", tmp_path / f"out-{scale}", "--baseline", base)
        if code == 0:
            assert run.returncode == 0, run.stderr
            assert "baseline check PASSED" in run.stdout
        else:
            assert_one_line_error(run, "regressed", code=1)
            assert "baseline check FAILED" in run.stdout
        saved = json.loads((tmp_path / f"out-{scale}" / "bench.json").read_text())
        assert saved["baseline"]["threshold"] == pytest.approx(0.10)


def _fails_when_run() -> bytes:
    """This model's signature and a valid file (every check passes), but its Reshape cannot hold a
    batch's 784 values per image: the runtime fails on the first call."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.zeros((783, 10), np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 783], dtype=np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "fails", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], [weights, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_a_failing_pair_is_reported_while_the_others_run(tmp_path, exported_dir, checkpoint):
    shutil.copy(exported_dir / "mnist_cnn.fp32.onnx", tmp_path / "mnist_cnn.fp32.onnx")
    (tmp_path / "mnist_cnn.fp16.onnx").write_bytes(_fails_when_run())
    out = tmp_path / "out"
    proc = run_cli("bench", *QUICK, "--backend", "onnxruntime", "--precision", "fp32,fp16", "--no-direct",
                   "--artifacts", tmp_path, "--checkpoint", checkpoint, "--out", out)
    line = assert_one_line_error(proc, "failed", "onnxruntime/fp16", code=1)
    assert "reshape" in line.lower()
    report = bench.load_report(out / "bench.json")
    status = {(c.precision, c.batch_size): c.status for c in report.cells}
    assert status == {("fp32", 1): "ok", ("fp32", 4): "ok", ("fp16", 1): "failed", ("fp16", 4): "failed"}
    assert re.search(r"onnxruntime/fp16\s+1\s+single-stream\s+FAILED", proc.stdout)


def test_a_cell_failing_mid_run_leaves_the_other_cells(monkeypatch, exported_dir, checkpoint, data_dir):
    real_create = registry.create_backend

    def create(name, precision, model_path=None, threads=None, **options):
        backend = real_create(name, precision, model_path, threads=threads, **options)
        if name == "onnxruntime":
            inner = backend._run

            def run(batch):
                if batch.shape[0] == 4:
                    raise RuntimeError("injected failure at batch 4")
                return inner(batch)

            backend._run = run
        else:
            backend.device_timings = lambda batch, iterations: {"compute": [1e-5] * iterations, "enqueue": [2e-5] * iterations}
        return backend

    monkeypatch.setattr(registry, "create_backend", create)
    config = bench.BenchConfig(batch_sizes=(1, 4), warmup=bench.Warmup(count=1), iterations=3, min_seconds=0.0, torch_compile=False)
    report = bench.run_bench(config, ["pytorch", "onnxruntime"], ["fp32"], checkpoint=checkpoint, artifacts_dir=exported_dir, data_dir=data_dir)
    by_key = {c.key: c for c in report.cells}
    failed = by_key[("onnxruntime", "fp32", "", 4)]
    assert failed.status == "failed" and "injected failure" in failed.message and failed.latency is None
    assert by_key[("onnxruntime", "fp32", "", 1)].status == "ok"
    assert by_key[("onnxruntime", "fp32", "direct", 4)].status == "ok"  # the runtime itself still runs batch 4
    assert all(by_key[("pytorch", "fp32", "", b)].status == "ok" for b in (1, 4))
    assert by_key[("pytorch", "fp32", "", 1)].device.launch_bound
    from toolkit.report import format_bench

    text = format_bench(report, bench.summarize(report))
    assert "injected failure" in text and "LAUNCH-BOUND" in text


# --- bad input: one line, non-zero exit, no traceback -------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["--backend", "nosuch"], ["unknown backend", "nosuch"]),
    (["--precision", "fp64"], ["unknown precision", "fp64"]),
    (["--batch-sizes", "0"], ["batch-sizes", "positive"]),
    (["--batch-sizes", "8,-1"], ["batch-sizes", "positive"]),
    (["--batch-sizes", "1,a"], ["batch-sizes", "integers"]),
    (["--warmup", "soon"], ["warmup"]),
    (["--iterations", "0"], ["iterations"]),
    (["--threads", "0"], ["threads"]),
    (["--threshold", "-1"], ["threshold"]),
    (["--threshold", "inf"], ["threshold"]),
])
def test_bad_options_are_one_line_errors(args, needles, tmp_path):
    proc = run_cli("bench", "--quick", *args, "--out", tmp_path / "out")
    assert_one_line_error(proc, *needles, code=2)


@pytest.mark.parametrize("mode", [[], ["--concurrency", "1"], ["--tune"]])
def test_a_batch_size_that_cannot_fit_in_memory_is_refused_before_any_work(mode, tmp_path):
    proc = run_cli("bench", "--batch-sizes", "1,100000000", *mode, "--out", tmp_path / "out")
    assert_one_line_error(proc, "batch size 100000000 needs about", "GiB", "available", "--batch-sizes", code=2)
    assert not (tmp_path / "out").exists()


def test_batch_memory_check_against_a_known_amount():
    from toolkit.bench.schema import BYTES_PER_IMAGE, check_batch_memory

    check_batch_memory((1, 1000), available=1000 * BYTES_PER_IMAGE)
    with pytest.raises(InputError, match="batch size 1001 needs about"):
        check_batch_memory((1001, 1), available=1000 * BYTES_PER_IMAGE)


def test_a_baseline_that_is_not_a_benchmark_is_refused(tmp_path):
    not_bench = tmp_path / "parity.json"
    not_bench.write_text(json.dumps({"passed": True, "pairs": []}))
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x00\xffnot json")
    for path in (not_bench, garbage, tmp_path / "missing.json"):
        proc = run_cli("bench", "--quick", "--baseline", path, "--out", tmp_path / "out")
        assert_one_line_error(proc, path.name, code=2)
    assert not (tmp_path / "out" / "bench.json").exists()


@pytest.mark.parametrize("damage", ["null-latency", "zero-median", "text-samples"])
def test_a_damaged_baseline_is_refused_before_timing(quick_run, tmp_path, damage):
    data = json.loads((quick_run[1] / "bench.json").read_text())
    cell = next(c for c in data["cells"] if c["status"] == "ok")
    if damage == "null-latency":
        cell["latency"] = None
    elif damage == "zero-median":
        cell["latency"]["median_us"] = 0
    else:
        cell["samples_ns"] = ["x"]
    bad = tmp_path / "bench.json"
    bad.write_text(json.dumps(data))
    proc = run_cli("bench", "--quick", "--baseline", bad, "--out", tmp_path / "out")
    assert_one_line_error(proc, "bench.json", code=2)
    assert not (tmp_path / "out" / "bench.json").exists()


def test_a_corrupt_model_file_is_refused_before_timing(tmp_path, exported_dir, checkpoint):
    # the same rule as `toolkit eval`: a file the checks refuse is bad input, before any work
    shutil.copy(exported_dir / "mnist_cnn.fp32.onnx", tmp_path / "mnist_cnn.fp32.onnx")
    (tmp_path / "mnist_cnn.fp16.onnx").write_bytes(b"not an onnx file")
    proc = run_cli("bench", *QUICK, "--backend", "onnxruntime", "--precision", "fp32,fp16", "--no-direct",
                   "--artifacts", tmp_path, "--checkpoint", checkpoint, "--out", tmp_path / "out")
    assert_one_line_error(proc, str(tmp_path / "mnist_cnn.fp16.onnx"), "not a valid ONNX file", code=2)
    assert not (tmp_path / "out" / "bench.json").exists()
    bad_checkpoint = tmp_path / "bad.pt"
    bad_checkpoint.write_bytes(b"PK\x03\x04 not a checkpoint")
    proc = run_cli("bench", *QUICK, "--backend", "pytorch", "--checkpoint", bad_checkpoint, "--out", tmp_path / "out")
    assert_one_line_error(proc, "bad.pt", code=2)


def test_a_missing_model_file_is_a_one_line_error(tmp_path, checkpoint):
    proc = run_cli("bench", "--quick", "--backend", "onnxruntime", "--precision", "int8", "--artifacts", tmp_path,
                   "--checkpoint", checkpoint, "--out", tmp_path / "out")
    assert_one_line_error(proc, "mnist_cnn.int8.onnx", "missing", "toolkit export", code=2)
    proc = run_cli("bench", "--quick", "--backend", "pytorch", "--checkpoint", tmp_path / "none.pt", "--out", tmp_path / "out")
    assert_one_line_error(proc, "none.pt", "missing", code=2)


def test_backend_without_the_precision_is_a_one_line_error(tmp_path):
    proc = run_cli("bench", "--quick", "--backend", "pytorch", "--precision", "int8", "--out", tmp_path / "out")
    assert_one_line_error(proc, "no (backend, precision) pair", code=2)


def test_bench_module_imports_no_runtime():
    import subprocess
    import sys

    code = "import sys, toolkit.bench, toolkit.report; print(sorted(m for m in ('torch','onnxruntime','openvino','matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(ROOT), check=True).stdout.strip()
    assert out == "[]"


# --- the CPU int8 variant -----------------------------------------------------------------------

def test_int8_cpu_variant_is_u8s8_with_a_float_first_conv(exported_dir):
    import onnx
    from onnx import numpy_helper

    from toolkit.files import paths

    model = onnx.load(str(paths.onnx_path("int8-cpu", exported_dir)))
    inits = {i.name: i for i in model.graph.initializer}
    first = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[0] == model.graph.input[0].name)
    assert first.input[1] in inits and inits[first.input[1]].data_type == onnx.TensorProto.FLOAT  # weights stay fp32
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in inits]
    assert zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in zero_points)  # uint8 activations
    weights = [inits[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
               and inits[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert weights and all(np.abs(numpy_helper.to_array(w)).max() > 0 for w in weights)
    # The TensorRT-ready int8 file is untouched: symmetric int8 everywhere.
    from toolkit.export.quantize import check_qdq_layout

    assert check_qdq_layout(onnx.load(str(paths.onnx_path("int8", exported_dir)))) == []
    assert check_qdq_layout(model)  # and int8-cpu is not TensorRT's layout


def test_int8_cpu_runs_on_cpu_backends_only(exported_dir, test_images):
    from toolkit.files import paths

    assert "int8-cpu" in paths.ONNX_PRECISIONS and "int8-cpu" not in paths.PRECISIONS
    for name in ("onnxruntime", "openvino"):
        assert "int8-cpu" in registry.get_spec(name).precisions
    for name in ("tensorrt", "onnxruntime-trt", "onnxruntime-cuda", "pytorch"):
        assert "int8-cpu" not in registry.get_spec(name).precisions
    images, labels = test_images
    with registry.create_backend("onnxruntime", "int8-cpu", paths.onnx_path("int8-cpu", exported_dir)) as b:
        options = b.session_options()
        assert options.get_session_config_entry("optimization.disable_specified_optimizers") == "QDQPropagationTransformer"
        accuracy = (b.run(images[:2000]).argmax(1) == labels[:2000]).mean()
    assert accuracy >= 0.98
