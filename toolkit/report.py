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
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align))
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
        ["default (AdamW one-cycle, batch %d, %d epochs)" % (b.default_recipe["batch_size"], b.default_recipe["epochs"]),
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
