"""The roofline pieces (toolkit.bench.peak): the model's operation count from the ONNX graph
against a hand count, the peak probes' plumbing, each cell's share of the peak, and the JSON
round trip. No assertion is about how fast the machine is."""

import dataclasses
from pathlib import Path

import pytest

from toolkit import bench
from toolkit.bench import peak as pk
from toolkit.files.paths import ONNX_PRECISIONS

ROOT = Path(__file__).resolve().parents[1]

# By hand from toolkit/model.py, multiply-accumulates per image:
CONV1_MACS = 28 * 28 * 16 * (1 * 5 * 5)  # 16 maps of 28x28 (padding 2), each output 1 channel x 5x5
CONV2_MACS = 14 * 14 * 32 * (16 * 5 * 5)  # 32 maps of 14x14, each output 16 channels x 5x5
FC_MACS = 7 * 7 * 32 * 10
HAND_OPS = 2 * (CONV1_MACS + CONV2_MACS + FC_MACS)


@pytest.mark.parametrize("precision", ONNX_PRECISIONS)
def test_operation_count_from_the_graph_equals_the_hand_count(exported_dir, precision):
    ops = pk.count_model_ops(exported_dir / f"mnist_cnn.{precision}.onnx")
    assert ops.ops_per_image == HAND_OPS
    assert sorted(layer.macs for layer in ops.layers) == sorted([CONV1_MACS, CONV2_MACS, FC_MACS])


def test_peak_probes_run_and_say_which_path(monkeypatch):
    # Tiny matrices and windows: this checks the plumbing (every path runs or says why not), not the speed.
    peaks = pk.measure_peaks(threads=1, dtypes=("fp32", "int8"), n=64, seconds=0.01)
    assert [p.dtype for p in peaks] == ["fp32", "int8"]
    for p in peaks:
        assert p.ops_per_second > 0 and p.path in [r.path for r in p.paths]
        assert p.ops_per_second == max(r.ops_per_second for r in p.paths if r.ops_per_second)
        for r in p.paths:
            assert (r.ops_per_second and r.calls >= pk.PEAK_MIN_CALLS and r.median_ops_per_second <= r.ops_per_second) or r.message
    assert peaks[1].isa  # which VNNI flavour, or that there is none


def test_peak_skips_bf16_without_bf16_instructions(monkeypatch):
    monkeypatch.setattr(pk, "cpu_flags", lambda: {"avx2"})
    assert pk.measure_peaks(threads=1, dtypes=("bf16",), n=32, seconds=0.01) == []
    monkeypatch.setattr(pk, "cpu_flags", lambda: {"avx2", "fma"})
    (int8,) = pk.measure_peaks(threads=1, dtypes=("int8",), n=32, seconds=0.01)
    assert int8.isa.startswith("no VNNI")


def _peak_report(model_ops=HAND_OPS):
    paths = [pk.PathRate("fp32", "a", 100e9, 90e9, 5)]
    return pk.PeakReport(threads=2, model=pk.ModelOps("m.onnx", model_ops, []), peaks=[
        pk.Peak("fp32", 100e9, "a", paths), pk.Peak("int8", 1000e9, "b", [pk.PathRate("int8", "b", 1000e9, 900e9, 5)], "avx512_vnni"),
        pk.Peak("bf16", 400e9, "c", [pk.PathRate("bf16", "c", 400e9, 300e9, 5)], "avx512_bf16"),
    ])


def _cell(backend, precision, variant, ips):
    return bench.BenchCell(backend, precision, variant, 256, "offline", images_per_second_p50=ips)


def test_each_cell_is_held_against_the_peak_of_the_type_it_computes_in():
    cells = [_cell("onnxruntime", "fp32", "", 10_000), _cell("openvino", "fp16", "", 10_000), _cell("openvino", "int8-cpu", "", 20_000),
             _cell("openvino", "fp32", "tuned bf16", 10_000), _cell("tensorrt", "fp32", "", 10_000),
             bench.BenchCell("onnxruntime", "int8", "", 1, "single-stream", status="failed")]
    pk.apply_roofline(cells, _peak_report(), {("tensorrt", "fp32"): "cuda"})
    fp32, fp16, int8, bf16, gpu, failed = cells
    assert fp32.ops_per_second == pytest.approx(10_000 * HAND_OPS)
    assert (fp32.peak_dtype, fp32.percent_of_peak) == ("fp32", pytest.approx(100 * 10_000 * HAND_OPS / 100e9))
    assert fp16.peak_dtype == "fp32"  # fp16 files compute in fp32 on these CPUs
    assert (int8.peak_dtype, int8.percent_of_peak) == ("int8", pytest.approx(100 * 20_000 * HAND_OPS / 1000e9))
    assert (bf16.peak_dtype, bf16.percent_of_peak) == ("bf16", pytest.approx(100 * 10_000 * HAND_OPS / 400e9))
    assert gpu.ops_per_second == pytest.approx(10_000 * HAND_OPS) and gpu.percent_of_peak is None  # the peak is the CPU's
    assert failed.ops_per_second is None and failed.percent_of_peak is None


def test_summary_reports_the_best_int8_share_of_the_peak():
    cells = [_cell("openvino", "int8-cpu", "", 20_000), _cell("onnxruntime", "int8", "", 5_000), _cell("onnxruntime", "fp32", "direct", 90_000)]
    pk.apply_roofline(cells, _peak_report())
    report = bench.BenchReport(environment=None, settings=None, pairs=[], cells=cells)
    for c in cells:  # summarize reads medians for other ratios; give every cell one
        c.latency = bench.LatencyStats.from_seconds([256 / c.images_per_second_p50] * 3)
    ratio = next(r for r in bench.summarize(report).ratios if "share of the int8 peak" in r.what)
    assert ratio.value == pytest.approx(20_000 * HAND_OPS / 1000e9)
    assert ratio.met == (ratio.value >= 0.5) and "openvino/int8-cpu" in ratio.detail


def test_peak_survives_the_json_round_trip():
    report = bench.BenchReport(
        environment=bench.Environment("cpu", 2, 2, None, "linux", "3.11", "0.1", {}, "2026-01-01", "toolkit bench"),
        settings=bench.BenchSettings([256], "1 calls", 1, 0.0, 2, False, "x", "y"), pairs=[], cells=[],
        peak=_peak_report(),
    )
    back = bench.report_from_dict(bench.report_to_dict(report))
    assert back.peak == report.peak


def test_schema_document_names_every_peak_field():
    from toolkit.bench.profile import NodeTime, RuntimeProfile
    from toolkit.bench.summary import TunedGain

    doc = (ROOT / "docs" / "bench-schema.md").read_text(encoding="utf-8")
    for cls in (pk.PeakReport, pk.Peak, pk.PathRate, pk.ModelOps, pk.LayerOps, TunedGain, RuntimeProfile, NodeTime):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in doc, f"{cls.__name__}.{f.name} is not documented in docs/bench-schema.md"


# --- per-node profiles from the runtimes' own profilers ---------------------------------------------

def test_runtime_profiles_say_which_nodes_run_in_int8(exported_dir, test_images):
    from toolkit.backends import registry
    from toolkit.bench.profile import profile_pairs, profiles_from_dicts
    from toolkit.files.store import to_jsonable

    backends = [b for b in ("onnxruntime", "openvino") if registry.status(b).available]
    planned = registry.plan_pairs(backends, ["fp32", "int8"], exported_dir / "mnist_cnn.pt", exported_dir)
    profiles = profile_pairs(planned, test_images[0][:8], threads=1)
    assert {(p.backend, p.precision) for p in profiles} == {(b, q) for b in backends for q in ("fp32", "int8")}
    for p in profiles:
        assert not p.message and p.nodes and p.total_ms_per_call > 0 and p.batch_size == 8
        assert sum(n.share for n in p.nodes) == pytest.approx(1.0)
        low = {n.dtype.lower() for n in p.nodes}
        if p.precision == "int8":
            assert low & {"uint8", "int8", "i8", "u8"}, (p.backend, low)  # the profile shows the integer kernels
        else:
            assert not low & {"uint8", "int8", "i8", "u8"}, (p.backend, low)
    assert profiles_from_dicts(to_jsonable(profiles)) == profiles
