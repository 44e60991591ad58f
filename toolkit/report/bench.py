"""The benchmark's report: console table, Markdown, plots, and bench.json (docs/bench-schema.md)."""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.bench import report_to_dict
from toolkit.files.store import write_artifact, write_json_artifact, write_text_artifact
from toolkit.report.tables import markdown_table, table

BENCH_HEADERS = ["row", "batch", "scenario", "p50 µs", "p90 µs", "p99 µs", "mean µs", "std µs", "images/s", "at p50", "calls",
                 "GOP/s", "% peak"]
BENCH_FILES = ("bench.json", "bench.md", "latency.png", "throughput.png", "roofline.png")
SAMPLE_KEYS = frozenset({"samples_ns"})  # written on one line each


def _us(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def bench_rows(report) -> list[list]:
    rows = []
    for c in report.cells:
        if c.status != "ok":
            rows.append([c.label, c.batch_size, c.scenario, "FAILED", "", "", "", "", "", "", "", "", ""])
            continue
        s = c.latency
        gops = "-" if c.ops_per_second is None else f"{c.ops_per_second / 1e9:,.1f}"
        share = "-" if c.percent_of_peak is None else f"{c.percent_of_peak:.1f}% {c.peak_dtype}"
        rows.append([c.label, c.batch_size, c.scenario, _us(s.median_us), _us(s.p90_us), _us(s.p99_us), _us(s.mean_us),
                     _us(s.std_us), f"{c.images_per_second:,.0f}", f"{c.images_per_second_p50:,.0f}", s.count, gops, share])
    return rows


def peak_lines(report) -> list[str]:
    """This machine's measured peaks and the model's operation count, one line each."""
    peak = report.peak
    if peak is None:
        return []
    lines = []
    if peak.model is not None:
        layers = ", ".join(f"{layer.op_type} {100 * 2 * layer.macs / peak.model.ops_per_image:.0f}%" for layer in peak.model.layers)
        lines.append(f"model: {peak.model.ops_per_image / 1e6:.2f} M operations per image ({layers}); counted: {peak.model.counted}")
    for p in peak.peaks:
        others = "; ".join(f"{r.path} {r.ops_per_second / 1e9:,.0f}" if r.ops_per_second else f"{r.path}: {r.message}" for r in p.paths)
        isa = f", {p.isa}" if p.isa else ""
        lines.append(f"peak {p.dtype} ({peak.threads} threads{isa}): {p.ops_per_second / 1e9:,.0f} GOP/s by {p.path} (each path, GOP/s: {others})")
    if peak.peaks:
        lines.append(f"peak method: {peak.method}; not included: {peak.excludes}")
    return lines


def profile_lines(report, top: int = 4) -> list[str]:
    """Per profiled pair: where its time goes, biggest nodes first, with the type each runs in."""
    lines = []
    for p in report.profiles:
        if p.message:
            lines.append(f"profile {p.backend}/{p.precision}: unavailable ({p.message})")
            continue
        nodes = ", ".join(f"{n.op_type} {n.dtype} {100 * n.share:.0f}%" for n in p.top(top))
        lines.append(f"profile {p.backend}/{p.precision} batch {p.batch_size}: {p.total_ms_per_call:,.2f} ms in nodes: {nodes}")
    return lines


def _ratio_lines(summary) -> list[str]:
    lines = []
    for r in summary.ratios:
        share = "share" in r.what
        value = "-" if r.value is None else (f"{100 * r.value:+.1f}%" if "overhead" in r.what else f"{100 * r.value:.1f}%" if share else f"{r.value:.3g}x")
        target = ""
        if r.target is not None:
            goal = f"≤ {100 * r.target:.0f}%" if "overhead" in r.what else f"≥ {100 * r.target:.0f}%" if share else f"≥ {r.target:g}x"
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
        table(BENCH_HEADERS, bench_rows(report), align="lrlrrrrrrrrrr"),
        *peak_lines(report),
    ]
    lines += _device_lines(report)
    for c in report.failed:
        lines.append(f"  {c.label} batch {c.batch_size} FAILED: {c.message}")
    for p in report.pairs:
        if p.status == "skipped":
            lines.append(f"  {p.label} skipped: {p.message}")
    if report.profiles:
        lines += ["", *profile_lines(report)]
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
    if report.peak is not None:
        out += ["## How close to the machine (roofline)", "",
                "GOP/s = images/s at p50 × the model's operations per image; % peak = that over this machine's measured peak "
                "for the data type the cell computes in (fp32 and fp16 files: fp32; int8 files: int8; tuned bf16 rows: bf16).", "",
                *[f"- {line}" for line in peak_lines(report)], "", "![operations per second against the peaks](roofline.png)", ""]
    if summary.ratios:
        out += ["## Ratios", "", *[f"- {line}" for line in _ratio_lines(summary)], ""]
    if summary.overhead:
        out += ["## Toolkit wrapper vs the runtime called directly", "",
                markdown_table(["runtime", "precision", "batch", "toolkit p50 µs", "direct p50 µs", "overhead", "95% CI"],
                               [[o.backend, o.precision, o.batch_size, _us(o.wrapper_median_us), _us(o.direct_median_us),
                                 f"{100 * o.overhead:+.1f}%", f"{100 * o.ci_low:+.1f}%..{100 * o.ci_high:+.1f}%"] for o in summary.overhead]),
                "", "Overhead = toolkit median / direct median - 1; the interval is a bootstrap over both rows' per-call samples.", ""]
    if report.profiles:
        out += ["## Where the time goes: the runtimes' own profilers", "",
                "Why int8 is or is not faster than fp32 on a runtime: per node, its kernel, the type it computes on and its share "
                "(onnxruntime: its profiling JSON; OpenVINO: the CPU plugin's per-layer performance counters). Profiled on separate "
                "sessions built like the backends': profiling slows the calls, so these explain the timings above and never replace them.", ""]
        for p in report.profiles:
            if p.message:
                out += [f"- `{p.backend}/{p.precision}`: no profile ({p.message})", ""]
                continue
            out += [f"**{p.backend}/{p.precision}**, batch {p.batch_size}: {p.total_ms_per_call:,.2f} ms per call in nodes ({p.source})", "",
                    markdown_table(["node", "op", "kernel", "type", "ms", "share"],
                                   [[n.node, n.op_type, n.kernel, n.dtype, f"{n.ms_per_call:,.2f}", f"{100 * n.share:.0f}%"] for n in p.top(6)]), ""]
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
        out[name] = _png(fig, ax, plt, sizes, ylabel, title, legend="best")
    if report.peak is not None and any(c.percent_of_peak is not None for c in report.ok_cells()):
        out["roofline.png"] = _roofline_plot(report, series, sizes, title, plt, colors, markers)
    return out


def _roofline_plot(report, series, sizes, title, plt, colors, markers) -> bytes:
    """Each row's operations per second against batch size, under this machine's peak lines."""


    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for i, (label, points) in enumerate(series.items()):
        points = [(b, c) for b, c in points if c.percent_of_peak is not None]
        if not points or points[0][1].variant == "direct":
            continue
        first = points[0][1]
        ax.plot([b for b, _ in points], [c.ops_per_second / 1e9 for _, c in points], color=colors(i % 20),
                marker=markers.get(first.backend, "v"), linestyle=":" if first.variant == "compile" else "-", label=label)
    used = {c.peak_dtype for c in report.ok_cells() if c.peak_dtype}
    for p, style in zip([p for p in report.peak.peaks if p.dtype in used], ("--", "-.", ":"), strict=False):
        ax.axhline(p.ops_per_second / 1e9, color="black", linestyle=style, linewidth=1)
        ax.annotate(f"{p.dtype} peak {p.ops_per_second / 1e9:,.0f} GOP/s", (sizes[0], p.ops_per_second / 1e9), fontsize=8,
                    xytext=(2, 3), textcoords="offset points")
    return _png(fig, ax, plt, sizes, "achieved G operations/s (at p50)", f"roofline (compute ceilings only): {title}",
                legend="lower right")


def _png(fig, ax, plt, sizes, ylabel: str, title: str, legend: str) -> bytes:
    """The axes every benchmark plot shares (log-log over the batch sizes), rendered to PNG bytes."""
    import io

    import matplotlib.ticker

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("batch size")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc=legend)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()



def write_bench_reports(report, out_dir: str | os.PathLike, summary, comparison=None) -> list[Path]:
    """bench.json (docs/bench-schema.md), bench.md and the two PNG plots, each written atomically."""
    out_dir = Path(out_dir)
    # No manifest parents: the models sit outside out_dir, where the manifest could only name them
    # by absolute path (stale on any other checkout); bench.json records each model's SHA-256.
    parents = None
    written = [
        write_json_artifact(out_dir / "bench.json", report_to_dict(report, summary, comparison), kind="bench-report",
                            parents=parents, inline_keys=SAMPLE_KEYS),
        write_text_artifact(out_dir / "bench.md", bench_markdown(report, summary, comparison), kind="bench-report", parents=parents),
    ]
    for name, data in bench_plots(report).items():
        written.append(write_artifact(out_dir / name, lambda tmp, data=data: tmp.write_bytes(data), kind="bench-plot", parents=parents))
    return written
