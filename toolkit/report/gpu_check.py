"""`toolkit gpu-check`'s report: what ran, what was skipped and why, and the numbers, as console
text, Markdown and JSON (gpu-check.json / gpu-check.md)."""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.files.store import to_jsonable, write_json_artifact, write_text_artifact
from toolkit.report.tables import markdown_table, table

GPU_CHECK_FILES = ("gpu-check.json", "gpu-check.md")


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _step_rows(result) -> list[list]:
    return [[s.name, s.status, f"{s.seconds:.1f}", s.detail] for s in result.steps]


def _parity_rows(result) -> list[list]:
    return [[f"{r['backend']}/{r['precision']}", r["status"], _num(r["accuracy"], ".2f"), _num(r["agreement"], ".4f"),
             _num(r["max_abs_logit"], ".2e"), r["reason"][:120]] for r in result.parity]


def _bench_rows(result) -> list[list]:
    return [[f"{r['backend']}/{r['precision']}" + (f" ({r['variant']})" if r["variant"] else ""), r["batch_size"],
             _num(r["p50_us"], ".0f"), _num(r["p99_us"], ".0f"), _num(r["images_per_second_p50"], ",.0f"),
             r["message"][:80]] for r in result.bench]


def _gpus(result) -> str:
    gpus = result.environment.get("gpus") or []
    if not gpus:
        return f"none ({result.environment.get('gpu_reason') or 'no reason given'})"
    return ", ".join(f"{g['name']} (sm {g['compute_capability']}, {g['memory_gib']} GiB)" for g in gpus)


def format_gpu_check(result) -> str:
    env = result.environment
    lines = [
        f"GPU: {_gpus(result)}",
        f"torch CUDA {env.get('torch_cuda') or 'none'}, driver supports CUDA {env.get('driver_supports_cuda') or 'unknown'}, "
        f"TensorRT CUDA {env.get('tensorrt_cuda', {}).get('cuda_major') or '-'}",
        "",
        table(["GPU backend", "usable", "why not"], [[b.name, "yes" if b.available else "no", b.reason] for b in result.backends], align="lll"),
        "",
        table(["step", "status", "seconds", "detail"], _step_rows(result), align="llrl"),
    ]
    if result.parity:
        lines += ["", table(["pair", "status", "accuracy %", "agreement", "max |Δlogit|", "reason"], _parity_rows(result), align="llrrrl")]
    if result.bench:
        lines += ["", table(["row", "batch", "p50 µs", "p99 µs", "images/s (p50)", "note"], _bench_rows(result), align="lrrrrl")]
    lines += ["", f"verdict: {result.verdict}"]
    return "\n".join(lines)


def gpu_check_markdown(result) -> str:
    env = result.environment
    out = [
        "# GPU check",
        "",
        f"**Verdict: {result.verdict}.** GPU: {_gpus(result)}. torch built for CUDA {env.get('torch_cuda') or 'none'}; "
        f"the driver supports CUDA {env.get('driver_supports_cuda') or 'unknown'}; TensorRT's wheels are for CUDA "
        f"{env.get('tensorrt_cuda', {}).get('cuda_major') or '-'}.",
        "",
        "## GPU backends",
        "",
        markdown_table(["backend", "usable", "why not"], [[b.name, "yes" if b.available else "no", b.reason] for b in result.backends]),
        "",
    ]
    if result.missing:
        out += ["What is missing for the rest:", ""] + [f"- {m}" for m in result.missing] + [""]
    out += ["## Steps", "", markdown_table(["step", "status", "seconds", "detail"], _step_rows(result)), ""]
    if result.tests:
        out += ["## GPU-marked tests", "", markdown_table(["test", "outcome", "message"], [[t.test, t.outcome, t.message] for t in result.tests]), ""]
    if result.parity:
        out += ["## Parity (full test set vs PyTorch fp32 on the CPU)", "",
                markdown_table(["pair", "status", "accuracy %", "agreement", "max |Δlogit|", "reason"], _parity_rows(result)), ""]
    if result.bench:
        out += ["## Quick benchmark (end to end: host numpy in, host numpy out)", "",
                markdown_table(["row", "batch", "p50 µs", "p99 µs", "images/s (p50)", "note"], _bench_rows(result)), ""]
    versions = env.get("versions") or {}
    out += ["## Versions", "", markdown_table(["package", "version"], [[k, v or "-"] for k, v in versions.items()]), ""]
    for warning in env.get("warnings") or []:
        out.append(f"- warning: {warning}")
    return "\n".join(out).rstrip() + "\n"


def write_gpu_check_reports(result, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    data = {"verdict": result.verdict, "usable": result.usable, "missing": result.missing, **to_jsonable(result)}
    j = write_json_artifact(out_dir / GPU_CHECK_FILES[0], data, kind="gpu-check-report")
    m = write_text_artifact(out_dir / GPU_CHECK_FILES[1], gpu_check_markdown(result), kind="gpu-check-report")
    return j, m
