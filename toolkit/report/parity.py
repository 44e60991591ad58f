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




# --- another model's gate (toolkit.parity_spec) ----------------------------------------------------

MODEL_HEADERS = ["backend", "precision", "status", "acc %", "Δ pp", "agree %", "output", "max|Δ|", "rel err", "cosine", "s"]


def model_parity_rows(report) -> list[list]:
    rows = []
    for p in report.pairs:
        head = [p.backend, p.precision, p.status.upper(), _fmt(p.accuracy, ".2f"), _fmt(p.delta_pp, "+.2f"),
                _fmt(None if p.agreement is None else 100 * p.agreement, ".2f")]
        stats = p.outputs or [None]
        for i, s in enumerate(stats):
            cells = head if i == 0 else ["", "", "", "", "", ""]
            rows.append(cells + (["-", "-", "-", "-"] if s is None else
                                 [s.name, f"{s.max_abs:.2e}", f"{s.rel_error:.2e}", f"{s.cosine:.6f}"])
                        + [f"{p.seconds:.1f}" if i == 0 else ""])
    return rows


def _model_head(report) -> list[str]:
    data = report.data or {}
    ref = (f"{report.reference_accuracy:.2f}% on {report.images} labelled samples" if report.reference_accuracy is not None
           else f"{report.images} samples without labels: judged on agreement and error statistics")
    lines = [f"model: {report.model}",
             f"data: {data.get('kind', '?')} {data.get('location', '')}"
             + (f"; preprocessing {data['preprocessing']}" if data.get("preprocessing") else ""),
             f"reference: {report.reference}, {ref}; batch sizes {', '.join(map(str, report.batch_sizes))}"]
    lines += [f"note: {n}" for n in report.notes]
    return lines


def format_model_parity(report) -> str:
    lines = _model_head(report) + [table(MODEL_HEADERS, model_parity_rows(report))]
    for p in report.pairs:
        if p.reason:
            lines.append(f"  {p.backend}/{p.precision} {p.status}: {p.reason}")
    c = report.counts()
    verdict = "PASSED" if report.passed else "FAILED"
    what = "parity gate" if report.is_parity_gate else "smoke test (random inputs, NOT a parity gate)"
    lines.append(f"{what} {verdict}: {c['pass']} passed, {c['fail']} failed, {c['error']} errors, {c['skipped']} skipped")
    return "\n".join(lines)


def model_parity_markdown(report) -> str:
    c = report.counts()
    what = "Accuracy parity report" if report.is_parity_gate else "Smoke test (random inputs): NOT a parity gate"
    out = [f"# {what}", ""] + [f"- {line}" for line in _model_head(report)] + [
        f"- Reference file: `{report.checkpoint}` (sha256 `{report.checkpoint_sha256}`)",
        f"- Verdict: **{'PASSED' if report.passed else 'FAILED'}** ({c['pass']} passed, {c['fail']} failed, {c['error']} errors, {c['skipped']} skipped)",
        "", markdown_table(MODEL_HEADERS, model_parity_rows(report)), "",
        "rel err: max|Δ| / (max|reference| + 1e-12) per output; cosine: of the flattened output against the reference's; "
        "each the worst batch size's.", "",
    ]
    notes = [p for p in report.pairs if p.reason]
    if notes:
        out += ["## Failures, errors and skipped pairs", ""] + [f"- `{p.backend}/{p.precision}` **{p.status}**: {p.reason}" for p in notes] + [""]
    return "\n".join(out)


def write_model_parity_reports(report, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    parents = [Path(report.checkpoint)] if Path(report.checkpoint).is_file() else None
    j = write_json_artifact(out_dir / "parity.json", {"passed": report.passed, **to_jsonable(report)}, kind="parity-report", parents=parents)
    m = write_text_artifact(out_dir / "parity.md", model_parity_markdown(report), kind="parity-report", parents=parents)
    return j, m
