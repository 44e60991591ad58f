"""Console and Markdown text for serving: the running server's endpoints, the Triton repository,
the load benchmark and the soak."""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.files.store import write_json_artifact, write_text_artifact
from toolkit.report.tables import markdown_table, table


def format_server_info(info, token_file: str | None = None) -> str:
    lines = [
        f"Triton Inference Server ready in {info.startup_seconds:.1f}s (dynamic batching: max batch {info.max_batch}, "
        f"max queue delay {info.max_queue_delay_us} µs)",
        f"  HTTP    {info.http_url}",
        f"  gRPC    {info.grpc_url}",
        f"  metrics {info.metrics_url}",
        f"repository {info.repository} (python backend: each model runs in Triton's stub process)",
        "models:",
    ]
    for m in info.models:
        lines.append(f"  {m.name}  ({m.backend}/{m.precision}, {m.runtime}, {m.model_path})")
    if getattr(info, "cleaned", ()):
        lines.append(f"removed what killed servers left behind: {', '.join(info.cleaned)}")
    first = info.models[0]
    lines.append(f"check it: toolkit eval --backend triton --url {info.http_url} --precision {first.precision} --model {first.name}")
    if token_file:
        lines.append(f"access token for statistics and shared memory: {token_file} (export TOOLKIT_TRITON_TOKEN=$(cat {token_file}))")
    lines.append("Ctrl-C or SIGTERM stops it")
    return "\n".join(lines)


def format_stop_report(report) -> str:
    left = "nothing left running" if report.clean else (
        f"LEFT BEHIND: processes {list(report.leftover_processes)}, shared memory {list(report.leftover_shm)}")
    ended = f" (ended {len(report.ended)} orphaned server processes by pid)" if report.ended else ""
    removed = f" (removed {len(report.removed_shm)} shared-memory segments the dead server left)" if report.removed_shm else ""
    return f"server stopped in {report.seconds:.1f}s; {left}{ended}{removed}"


def format_repository(result) -> str:
    rows = [[m.name, m.target, m.precision, str(m.model), m.max_batch, m.sha256[:12]] for m in result.models]
    lines = [f"Triton model repository {result.directory}:",
             table(["model", "backend", "precision", "file", "max batch", "sha256"], rows, align="llllrl")]
    for reason in result.skipped:
        lines.append(f"  skipped {reason}")
    if result.kubernetes:
        lines.append(f"Kubernetes (KServe InferenceService, protocol v2): {result.kubernetes}; replace STORAGE_URI before applying")
    lines.append(f"check it: toolkit verify {result.directory}")
    return "\n".join(lines)


def _us(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


LOAD_HEADERS = ["row", "conc.", "batch", "requests", "images/s", "p50 µs", "p90 µs", "p99 µs", "failed", "wrong",
                "img/exec", "queue µs", "infer µs"]


def load_rows(report) -> list[list]:
    rows = []
    for c in report.cells:
        s = c.server
        rows.append([
            c.label, c.concurrency, c.batch_size or "mixed", c.requests, f"{c.images_per_second:,.0f}", _us(c.p50_us),
            _us(c.p90_us), _us(c.p99_us), c.failed, c.wrong,
            f"{s.images_per_execution:.1f}" if s else "-", _us(s.queue_us) if s else "-", _us(s.compute_infer_us) if s else "-",
        ])
    return rows


def _cost_lines(report) -> list[str]:
    """The serving cost: each server row's figures as a ratio of the in-process row at concurrency 1."""
    base = {(c.precision, c.batch_size): c for c in report.cells if c.variant == "in-process" and c.concurrency == 1 and c.requests}
    lines = []
    for c in report.cells:
        ref = base.get((c.precision, c.batch_size))
        if c.variant == "in-process" or ref is None or not c.requests or c.p50_us is None or not ref.p50_us:
            continue
        lines.append(f"  {c.label} concurrency {c.concurrency} batch {c.batch_size}: p50 {c.p50_us / ref.p50_us:.1f}x in-process, "
                     f"images/s {c.images_per_second / ref.images_per_second:.2f}x")
    return (["serving cost vs in-process (concurrency 1):", *lines]) if lines else []


def _replica_lines(report) -> list[str]:
    """Which replicas (and nodes) served each cell, for servers that say (the Ray Serve endpoint)."""
    lines = []
    for c in report.cells:
        replicas = c.server.replicas if c.server else None
        if replicas is None:
            continue
        parts = [f"{rid[-8:]} on {r['node']}: {r['requests']} req, infer {r['compute_infer_us']:,.0f} µs"
                 for rid, r in sorted(replicas.items(), key=lambda kv: kv[1]["node"])]
        nodes = len({r["node"] for r in replicas.values()})
        lines.append(f"  {c.label} concurrency {c.concurrency} batch {c.batch_size}: {len(replicas)} replicas on {nodes} nodes served"
                     + (f" ({'; '.join(parts)})" if parts else ""))
    return (["replicas that served each cell (the endpoint's per-replica counts):", *lines]) if lines else []


def format_load(report) -> str:
    cfg = report.config
    lines = [
        f"load benchmark: {cfg.seconds:g} s per cell after {cfg.warmup_s:g} s warm-up per client; latency of one synchronous "
        f"request (host numpy in -> out); every response checked against in-process logits (|Δ| ≤ {cfg.tolerance:g}, same top-1); "
        f"load average {report.load_average_start} -> {report.load_average_end}",
        table(LOAD_HEADERS, load_rows(report), align="lrrrrrrrrrrrr"),
        "img/exec: images per model execution on the server (dynamic batching merges requests); queue/infer: server's mean "
        "per request (statistics endpoint, deltas over the cell)",
    ]
    lines += _cost_lines(report)
    lines += _replica_lines(report)
    for c in report.cells:
        if c.first_error:
            lines.append(f"  {c.label} concurrency {c.concurrency} batch {c.batch_size}: {c.failed} failed, first: {c.first_error}")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def load_markdown(report) -> str:
    return "\n".join([
        "# Load benchmark", "",
        f"{report.config.seconds:g} s per cell; load average {report.load_average_start} -> {report.load_average_end}.", "",
        markdown_table(LOAD_HEADERS, load_rows(report)), "",
        *_cost_lines(report), "",
        *_replica_lines(report), "",
        *[f"- {n}" for n in report.notes], "",
    ])


def write_load_reports(report, out_dir: str | os.PathLike) -> list[Path]:
    out_dir = Path(out_dir)
    return [
        write_json_artifact(out_dir / "load.json", report, kind="load-report"),
        write_text_artifact(out_dir / "load.md", load_markdown(report), kind="load-report"),
    ]


def format_soak(result) -> str:
    c = result.cell
    mib = 1024 * 1024
    lines = [
        f"soak: {c.seconds:.0f} s at concurrency {c.concurrency}, mixed batch sizes: {c.requests} requests, {c.images} images "
        f"({c.images_per_second:,.0f} images/s), {c.failed} failed, {c.wrong} wrong; p50 {_us(c.p50_us)} µs, p99 {_us(c.p99_us)} µs",
    ]
    for label in result.rss_start:
        lines.append(f"  RSS {label}: {result.rss_start[label] / mib:.1f} MiB after warm-up -> {result.rss_end[label] / mib:.1f} MiB "
                     f"at the end (peak {result.rss_max[label] / mib:.1f} MiB, growth {result.growth[label] / mib:+.1f} MiB; "
                     f"bound {result.rss_bound_bytes / mib:.0f} MiB)")
    if c.first_error:
        lines.append(f"  first error: {c.first_error}")
    if result.stop is not None:
        lines.append(f"  {format_stop_report(result.stop)}")
    lines.append("soak PASSED" if result.passed else "soak FAILED")
    return "\n".join(lines)
