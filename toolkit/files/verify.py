"""`toolkit verify`: every artifact in a directory's manifest, checked against what is on disk.

An artifact is
- missing: its file is gone;
- changed: its size or SHA-256 differs from the one recorded when the toolkit wrote it;
- stale: it was derived from a parent (checkpoint -> ONNX -> engine, checkpoint -> report) whose
  file now differs from the one it was derived from, or is gone.
Checking reads files only: it works on a read-only directory and never rewrites the manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import InputError
from toolkit.files.store import MANIFEST_NAME, directory_lock, read_manifest, sha256_file

OK, MISSING, CHANGED, STALE = "ok", "missing", "changed", "stale"


@dataclass(frozen=True)
class ArtifactCheck:
    name: str  # the manifest key: a path relative to the directory (absolute when outside it)
    kind: str
    status: str  # ok | missing | changed | stale
    detail: str = ""  # what differs, for anything not ok


@dataclass
class VerifyReport:
    directory: str
    manifest: str
    artifacts: list[ArtifactCheck] = field(default_factory=list)

    @property
    def problems(self) -> list[ArtifactCheck]:
        return [a for a in self.artifacts if a.status != OK]

    @property
    def passed(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        out = {OK: 0, MISSING: 0, CHANGED: 0, STALE: 0}
        for a in self.artifacts:
            out[a.status] += 1
        return out


def _path_of(key: str, directory: Path) -> Path:
    p = Path(key)
    return p if p.is_absolute() else directory / p


def verify_directory(directory: str | os.PathLike) -> VerifyReport:
    """Check every artifact recorded in `directory`'s manifest; raises only when there is no usable manifest."""
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"{d} is not a directory", "pass the artifacts directory (default: artifacts)")
    manifest_path = d / MANIFEST_NAME
    if not manifest_path.is_file():
        raise InputError(f"{d} has no {MANIFEST_NAME}, so there is nothing to verify", "pass the directory the toolkit wrote its artifacts to")
    digests: dict[Path, str | None] = {}

    def digest(p: Path) -> str | None:
        if p not in digests:
            try:
                digests[p] = sha256_file(p) if p.is_file() else None
            except OSError:
                digests[p] = None
        return digests[p]

    report = VerifyReport(str(d), str(manifest_path))
    with directory_lock(d, shared=True):
        entries = read_manifest(d)["artifacts"]
        for name, entry in sorted(entries.items()):
            kind = str(entry.get("kind", "?"))
            path = _path_of(name, d)
            actual = digest(path)
            if actual is None:
                report.artifacts.append(ArtifactCheck(name, kind, MISSING, f"{path} does not exist"))
                continue
            size = path.stat().st_size
            if size != entry["size"] or actual != entry["sha256"]:
                what = f"size {size} != recorded {entry['size']}" if size != entry["size"] else f"sha256 {actual[:12]}... != recorded {entry['sha256'][:12]}..."
                report.artifacts.append(ArtifactCheck(name, kind, CHANGED, what))
                continue
            stale = []
            for parent, recorded in sorted(entry.get("parents", {}).items()):
                current = digest(_path_of(parent, d))
                if current is None:
                    stale.append(f"parent {parent} is gone")
                elif current != recorded:
                    stale.append(f"parent {parent} changed since (sha256 {current[:12]}... != {str(recorded)[:12]}...)")
            report.artifacts.append(ArtifactCheck(name, kind, STALE, "; ".join(stale)) if stale else ArtifactCheck(name, kind, OK))
    return report
