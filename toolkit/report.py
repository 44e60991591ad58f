"""Results to files and text: JSON records, Markdown reports, console tables. Nothing else formats."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

from toolkit.artifacts import write_artifact


def to_jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return to_jsonable(obj.item())
    return obj


def json_text(obj) -> str:
    return json.dumps(to_jsonable(obj), indent=2) + "\n"


def write_json_artifact(path: str | os.PathLike, obj, kind: str, parents: list[Path] | None = None) -> Path:
    text = json_text(obj)
    return write_artifact(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), kind=kind, parents=parents)


def write_text_artifact(path: str | os.PathLike, text: str, kind: str, parents: list[Path] | None = None) -> Path:
    return write_artifact(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), kind=kind, parents=parents)


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain fixed-width console table."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))
    def fmt(row):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align, strict=True)).rstrip()
    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def esc(c):
        return ("" if c is None else str(c)).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def format_train_result(result) -> str:
    rows = [[h.epoch, f"{h.train_loss:.4f}", f"{h.train_accuracy:.2f}", f"{h.test_accuracy:.2f}", f"{h.epoch_seconds:.1f}"] for h in result.history]
    lines = [
        table(["epoch", "loss", "train %", "test %", "seconds"], rows),
        "",
        f"test accuracy {result.test_accuracy:.2f}% after {result.wall_seconds:.1f}s on {result.device} ({result.threads} threads)",
    ]
    if result.time_to_99_seconds is not None:
        lines.append(f"reached 99% after {result.time_to_99_seconds:.1f}s of training")
    lines.append(f"checkpoint {result.checkpoint} (sha256 {result.checkpoint_sha256[:16]}...)")
    return "\n".join(lines)


# --- parity -------------------------------------------------------------------------------------

def _fmt(value, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def parity_rows(report) -> list[list]:
    rows = []
    for p in report.pairs:
        mc = p.mcnemar
        rows.append([
            p.backend, p.precision, p.status.upper(),
            _fmt(p.accuracy, ".2f"), _fmt(p.delta_pp, "+.2f"),
            _fmt(None if p.agreement is None else 100 * p.agreement, ".2f"),
            _fmt(p.max_abs_logit, ".2e"), _fmt(p.mean_abs_logit, ".2e"),
            "-" if mc is None else f"{mc.reference_only_correct}/{mc.candidate_only_correct} p={mc.p_value:.3g}",
            f"{p.seconds:.1f}",
        ])
    return rows


PARITY_HEADERS = ["backend", "precision", "status", "acc %", "Δ pp", "agree %", "max|Δlogit|", "mean|Δlogit|", "McNemar b/c", "s"]


def format_parity(report) -> str:
    lines = [
        f"reference: {report.reference}, {report.reference_accuracy:.2f}% on {report.images} test images; "
        f"batch sizes {', '.join(map(str, report.batch_sizes))}",
        table(PARITY_HEADERS, parity_rows(report)),
    ]
    for p in report.pairs:
        if p.reason:
            lines.append(f"  {p.backend}/{p.precision} {p.status}: {p.reason}")
    c = report.counts()
    verdict = "PASSED" if report.passed else "FAILED"
    lines.append(f"parity gate {verdict}: {c['pass']} passed, {c['fail']} failed, {c['error']} errors, {c['skipped']} skipped")
    return "\n".join(lines)


def parity_markdown(report) -> str:
    c = report.counts()
    out = [
        "# Accuracy parity report",
        "",
        f"- Reference: {report.reference}, **{report.reference_accuracy:.2f}%** on {report.images} MNIST test images",
        f"- Checkpoint: `{report.checkpoint}` (sha256 `{report.checkpoint_sha256}`)",
        f"- Batch sizes checked: {', '.join(map(str, report.batch_sizes))}; minimum accuracy {report.min_accuracy:.2f}%",
        f"- Verdict: **{'PASSED' if report.passed else 'FAILED'}** ({c['pass']} passed, {c['fail']} failed, {c['error']} errors, {c['skipped']} skipped)",
        "",
        markdown_table(PARITY_HEADERS, parity_rows(report)),
        "",
        "McNemar b/c: test images only the reference got right / only the pair got right; p is the exact two-sided test.",
        "",
    ]
    notes = [p for p in report.pairs if p.reason]
    if notes:
        out += ["## Failures, errors and skipped pairs", ""]
        out += [f"- `{p.backend}/{p.precision}` **{p.status}**: {p.reason}" for p in notes]
        out.append("")
    flipped = [p for p in report.pairs if p.flips]
    if flipped:
        out += ["## Predictions that flipped against the reference", ""]
        for p in flipped:
            out += [f"### {p.backend} / {p.precision}", ""]
            out.append(markdown_table(["test index", "label", "reference", "pair", "batch"],
                                      [[f.index, f.label, f.reference_prediction, f.prediction, f.batch_size] for f in p.flips]))
            out.append("")
    return "\n".join(out)


def write_parity_reports(report, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    parents = [Path(report.checkpoint)]
    j = write_json_artifact(out_dir / "parity.json", {"passed": report.passed, **to_jsonable(report)}, kind="parity-report", parents=parents)
    m = write_text_artifact(out_dir / "parity.md", parity_markdown(report), kind="parity-report", parents=parents)
    return j, m


def format_export_result(result) -> str:
    c = result.check
    return (
        f"{result.precision}: {result.path} ({result.size} bytes, opset {result.opset}) in {result.seconds:.1f}s; "
        f"check on {c.images} test images vs PyTorch: max |Δlogit| {c.max_abs_logit:.2e} (≤ {c.tolerance.max_abs_logit:g}), "
        f"agreement {100 * c.agreement:.2f}% (≥ {100 * c.tolerance.min_agreement:.2f}%)"
    )


def format_train_benchmark(b) -> str:
    s = b.seed
    t99 = "not reached" if b.default_time_to_99_seconds is None else f"{b.default_time_to_99_seconds:.1f}s"
    rows = [
        [f"default (AdamW one-cycle, batch {b.default_recipe['batch_size']}, {b.default_recipe['epochs']} epochs)",
         t99, f"{b.default_train_seconds:.1f}s (measured)", f"{b.default_test_accuracy:.2f}%"],
        ["seed notebook (Adam 1e-3, batch 4, 10 epochs)",
         f"~{s.extrapolated_seconds:.0f}s (notebook: 99.05% after 10 epochs)",
         f"{s.extrapolated_seconds:.0f}s (extrapolated: {s.ms_per_step:.2f} ms/step x {s.steps_per_epoch * 10} steps)",
         f"{s.test_accuracy_after_steps:.2f}% after {s.steps} steps"],
    ]
    lines = [table(["recipe", "time to 99%", "training time", "test accuracy"], rows, align="llll")]
    if b.speedup_time_to_99:
        lines.append(f"time-to-99% ratio (seed extrapolated / default measured): {b.speedup_time_to_99:.1f}x on {b.cpu}, {b.threads} threads")
    return "\n".join(lines)


# --- TensorRT engines and `toolkit info` ----------------------------------------------------------

def format_engine_result(result) -> str:
    low, opt, high = result.profile
    if result.strict_fp32:
        math = "TF32 off (strict fp32)"
    elif result.tf32:
        math = "TF32 allowed for fp32 layers (--strict-fp32 for true fp32)"
    else:
        math = "TF32 off (this GPU has none)"
    return (
        f"{result.precision}: {result.path} ({result.size} bytes) from {result.onnx_path} in {result.seconds:.1f}s; "
        f"TensorRT {result.tensorrt_version} on {result.gpu_name} (compute {result.compute_capability}); "
        f"batch profile {low}/{opt}/{high}, workspace {result.workspace_mb} MiB, {math}; "
        f"timing cache: {result.timing_cache}; sidecar {result.sidecar}"
    )


def format_info(info) -> str:
    lines = [f"toolkit {info.toolkit}, Python {info.python} on {info.platform}", "", "runtimes:"]
    width = max(len(name) for name in info.runtimes)
    for name, version in info.runtimes.items():
        lines.append(f"  {name.ljust(width)}  {version or 'not installed'}")
    lines.append(f"  {'torch CUDA'.ljust(width)}  {info.torch_cuda or 'none (CPU-only build)'}")
    lines.append("")
    if info.gpus:
        lines += [f"GPU {g.index}: {g.name}, compute capability {g.compute_capability}, {g.memory_gib:g} GiB" for g in info.gpus]
    else:
        lines.append(f"GPU: none usable ({info.gpu_reason})")
    lines.append("")
    rows = [[s.name, s.device, ",".join(s.precisions), "yes" if s.available else f"no: {s.reason}"] for s in info.backends]
    lines += [line.rstrip() for line in table(["backend", "device", "precisions", "usable"], rows, align="llll").splitlines()]
    lines += [f"warning: {w}" for w in info.warnings]
    return "\n".join(lines)


def format_verify(report) -> str:
    rows = [[a.name, a.kind, a.status.upper(), a.detail] for a in report.artifacts]
    c = report.counts()
    verdict = "all intact" if report.passed else f"{len(report.problems)} with problems"
    lines = [line.rstrip() for line in table(["artifact", "kind", "status", "detail"], rows, align="llll").splitlines()]
    lines.append(
        f"{report.manifest}: {len(report.artifacts)} artifacts, {verdict} "
        f"({c['ok']} ok, {c['missing']} missing, {c['changed']} changed, {c['stale']} stale)"
    )
    return "\n".join(lines)


# --- bench ----------------------------------------------------------------------------------------

BENCH_HEADERS = ["row", "batch", "scenario", "p50 µs", "p90 µs", "p99 µs", "mean µs", "std µs", "images/s", "at p50", "calls"]
BENCH_FILES = ("bench.json", "bench.md", "latency.png", "throughput.png")


def _us(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def bench_rows(report) -> list[list]:
    rows = []
    for c in report.cells:
        if c.status != "ok":
            rows.append([c.label, c.batch_size, c.scenario, "FAILED", "", "", "", "", "", "", ""])
            continue
        s = c.latency
        rows.append([c.label, c.batch_size, c.scenario, _us(s.median_us), _us(s.p90_us), _us(s.p99_us), _us(s.mean_us),
                     _us(s.std_us), f"{c.images_per_second:,.0f}", f"{c.images_per_second_p50:,.0f}", s.count])
    return rows


def _ratio_lines(summary) -> list[str]:
    lines = []
    for r in summary.ratios:
        value = "-" if r.value is None else (f"{100 * r.value:+.1f}%" if "overhead" in r.what else f"{r.value:.3g}x")
        target = ""
        if r.target is not None:
            goal = f"≤ {100 * r.target:.0f}%" if "overhead" in r.what else f"≥ {r.target:g}x"
            verdict = "met" if r.met else "NOT met"
            if r.met and "overhead" in r.what and r.value is not None and r.value > r.target:
                verdict = "not exceeded beyond noise: the 95% CI reaches below it"
            target = f" (target {goal}: {verdict})"
        lines.append(f"{r.what}: {value}{target}" + (f"; {r.detail}" if r.detail else ""))
    return lines


def _device_lines(report) -> list[str]:
    lines = []
    for c in report.cells:
        d = c.device
        if d is None:
            continue
        parts = [f"{name} {_us(getattr(d, name).median_us)} µs" for name in ("h2d", "compute", "d2h", "enqueue") if getattr(d, name)]
        flag = "  LAUNCH-BOUND: enqueue > compute, try CUDA graphs" if d.launch_bound else ""
        lines.append(f"{c.label} batch {c.batch_size}: device-resident medians ({d.source}): {', '.join(parts)}{flag}")
    return lines


def format_bench(report, summary, comparison=None) -> str:
    env = report.environment
    lines = [
        f"{env.cpu_model}, {env.usable_cores} usable cores, GPU: {env.gpu or 'none'}; threads per backend {report.settings.threads}; "
        f"load average {env.load_average_start} -> {env.load_average_end}",
        f"end-to-end latency of one synchronous call (host numpy in -> out); warm-up {report.settings.warmup}, "
        f"at least {report.settings.iterations} calls and {report.settings.min_seconds:g} s per cell",
        table(BENCH_HEADERS, bench_rows(report), align="lrlrrrrrrrr"),
    ]
    lines += _device_lines(report)
    for c in report.failed:
        lines.append(f"  {c.label} batch {c.batch_size} FAILED: {c.message}")
    for p in report.pairs:
        if p.status == "skipped":
            lines.append(f"  {p.label} skipped: {p.message}")
    if summary.ratios:
        lines += ["", *_ratio_lines(summary)]
    if comparison is not None:
        lines += ["", format_baseline(comparison)]
    return "\n".join(lines)


def format_baseline(comparison) -> str:
    compared = [c for c in comparison.cells if c.verdict != "not compared"]
    rows = [[c.label, c.batch_size, _us(c.baseline_median_us), _us(c.current_median_us), f"{c.ratio:.3f}",
             f"{c.ci_low:.3f}..{c.ci_high:.3f}", c.verdict.upper() if c.verdict == "regressed" else c.verdict] for c in compared]
    lines = [
        f"baseline {comparison.baseline} ({comparison.baseline_date}): threshold {100 * comparison.threshold:g}%, "
        f"{100 * comparison.confidence:g}% bootstrap intervals",
        table(["row", "batch", "base p50 µs", "now p50 µs", "ratio", "CI", "verdict"], rows, align="lrrrrrl"),
    ]
    skipped = len(comparison.cells) - len(compared)
    if skipped:
        lines.append(f"{skipped} cells not compared (new, failed, or missing from the baseline)")
    n = len(comparison.regressions)
    lines.append("baseline check PASSED: no real regression" if not n else f"baseline check FAILED: {n} cells regressed")
    return "\n".join(lines)


def bench_markdown(report, summary, comparison=None) -> str:
    env, st = report.environment, report.settings
    versions = ", ".join(f"{k} {v}" for k, v in env.versions.items())
    out = [
        "# Benchmark: latency and throughput",
        "",
        markdown_table(["environment", ""], [
            ["CPU", f"{env.cpu_model}; {env.cpu_count} logical CPUs, {env.usable_cores} usable"],
            ["GPU", env.gpu or "none"],
            ["platform", env.platform],
            ["Python / toolkit", f"{env.python} / {env.toolkit}"],
            ["runtimes", versions],
            ["date (UTC)", env.date],
            ["command", f"`{env.command}`"],
            ["load average (1/5/15 min)", f"{env.load_average_start} at start, {env.load_average_end} at end"],
        ]),
        "",
        "## Method",
        "",
        f"- Timing: {st.timer}.",
        f"- Input: {st.input}.",
        f"- Per cell: warm-up {st.warmup}, then at least {st.iterations} calls and at least {st.min_seconds:g} s, whichever is longer; "
        f"{st.threads} threads per backend; each runtime's own graph optimisations on; models loaded before timing.",
        "- Scenarios as MLPerf names them: **single-stream** (batch 1, one synchronous call after another: read p50/p90/p99) "
        "and **offline** (larger batches: read images/s = images / seconds spent in the calls; *at p50* = batch / median latency, "
        "which a few slow calls on a shared machine don't move; the ratios below use it).",
        *[f"- {n}." for n in st.notes],
        "",
        "## Results (end-to-end: what one synchronous call costs)",
        "",
        markdown_table(BENCH_HEADERS, bench_rows(report)),
        "",
        "![latency: p50 with p99 whiskers](latency.png)",
        "![throughput against batch size](throughput.png)",
        "",
    ]
    if summary.ratios:
        out += ["## Ratios", "", *[f"- {line}" for line in _ratio_lines(summary)], ""]
    if summary.overhead:
        out += ["## Toolkit wrapper vs the runtime called directly", "",
                markdown_table(["runtime", "precision", "batch", "toolkit p50 µs", "direct p50 µs", "overhead", "95% CI"],
                               [[o.backend, o.precision, o.batch_size, _us(o.wrapper_median_us), _us(o.direct_median_us),
                                 f"{100 * o.overhead:+.1f}%", f"{100 * o.ci_low:+.1f}%..{100 * o.ci_high:+.1f}%"] for o in summary.overhead]),
                "", "Overhead = toolkit median / direct median - 1; the interval is a bootstrap over both rows' per-call samples.", ""]
    device = _device_lines(report)
    if device:
        out += ["## Device-resident timings (cheaper than a user's call; for diagnosis)", "", *[f"- {line}" for line in device], ""]
    out += ["## Rows", "", markdown_table(
        ["row", "status", "runtime", "device", "threads", "settings", "load s", "model sha256"],
        [[p.label, p.status, p.runtime, p.device, p.threads, ", ".join(f"{k}={v}" for k, v in p.settings.items()),
          f"{p.load_seconds:.2f}", p.model_sha256[:12]] for p in report.pairs]), ""]
    problems = [f"- `{c.label}` batch {c.batch_size} **failed**: {c.message}" for c in report.failed]
    problems += [f"- `{p.label}` **skipped**: {p.message}" for p in report.pairs if p.status == "skipped"]
    if problems:
        out += ["## Failed and skipped", "", *problems, ""]
    if comparison is not None:
        out += ["## Baseline comparison", "", f"Rule: {comparison.rule}.", "", "```", format_baseline(comparison), "```", ""]
    return "\n".join(out)


def _bench_series(report):
    """{row label: sorted [(batch, cell)]} over cells that ran."""
    series: dict[str, list] = {}
    for c in report.ok_cells():
        series.setdefault(c.label, []).append((c.batch_size, c))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in series.items()}


def bench_plots(report) -> dict[str, bytes]:
    """PNG bytes of the latency and throughput plots; {} when matplotlib is missing."""
    import io

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return {}
    series = _bench_series(report)
    title = f"{report.environment.cpu_model}, {report.settings.threads} threads, {report.environment.date[:10]}"
    sizes = sorted({c.batch_size for c in report.ok_cells()})
    colors = plt.get_cmap("tab20")
    markers = {"pytorch": "s", "onnxruntime": "o", "openvino": "^", "tensorrt": "D"}
    out = {}
    for name, ylabel in (("latency.png", "latency per call, µs (p50, whisker to p99)"), ("throughput.png", "images/s")):
        fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
        for i, (label, points) in enumerate(series.items()):
            first = points[0][1]
            style = dict(color=colors(i % 20), marker=markers.get(first.backend, "v"), label=label,
                         linestyle={"direct": "--", "compile": ":"}.get(first.variant, "-"))
            x = [b for b, _ in points]
            if name == "latency.png":
                p50 = [c.latency.median_us for _, c in points]
                up = [c.latency.p99_us - c.latency.median_us for _, c in points]
                ax.errorbar(x, p50, yerr=[[0] * len(p50), up], capsize=3, **style)
            else:
                ax.plot(x, [c.images_per_second for _, c in points], **style)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def bench_json_text(data: dict) -> str:
    """Indented JSON, except that each cell's per-call samples stay on one line (thousands of them)."""
    samples = []
    cells = []
    for cell in data.get("cells", []):
        cell = dict(cell)
        samples.append(json.dumps(cell.get("samples_ns", []), separators=(",", ":")))
        cell["samples_ns"] = f"@@samples-{len(samples) - 1}@@"
        cells.append(cell)
    text = json.dumps({**data, "cells": cells} if "cells" in data else data, indent=2)
    for i, compact in enumerate(samples):
        text = text.replace(f'"@@samples-{i}@@"', compact, 1)
    return text + "\n"


def write_bench_reports(report, out_dir: str | os.PathLike, summary, comparison=None) -> list[Path]:
    """bench.json (docs/bench-schema.md), bench.md and the two PNG plots, each written atomically."""
    from toolkit.bench import report_to_dict

    out_dir = Path(out_dir)
    # No manifest parents: the models sit outside out_dir, where the manifest could only name them
    # by absolute path (stale on any other checkout); bench.json records each model's SHA-256.
    parents = None
    text = bench_json_text(report_to_dict(report, summary, comparison))
    written = [
        write_text_artifact(out_dir / "bench.json", text, kind="bench-report", parents=parents),
        write_text_artifact(out_dir / "bench.md", bench_markdown(report, summary, comparison), kind="bench-report", parents=parents),
    ]
    for name, data in bench_plots(report).items():
        written.append(write_artifact(out_dir / name, lambda tmp, data=data: tmp.write_bytes(data), kind="bench-plot", parents=parents))
    return written
