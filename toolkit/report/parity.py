"""The parity gate's report: console table, Markdown, and the two files."""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.files.store import to_jsonable, write_json_artifact, write_text_artifact
from toolkit.report.tables import _fmt, markdown_table, table


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


