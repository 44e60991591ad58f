"""tuned.json: the configuration search's result, read back by `toolkit bench --config FILE` and by
deployments (`registry.create_backend(name, precision, **tuned.options_for(name, precision, batch))`).

Only settings that won on speed by their bootstrap interval and passed the parity gate are written
as `options`; everything the search tried is kept beside them for the record."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from toolkit.errors import InputError

TUNED_SCHEMA = "toolkit-tuned"
TUNED_SCHEMA_VERSION = 1
TUNED_FILE = "tuned.json"


@dataclass
class TunedEntry:
    backend: str
    precision: str  # the model file's precision
    batch_size: int
    options: dict  # what create_backend takes: threads and the backend's own options
    default_options: dict
    compute_precision: str = ""  # arithmetic precision when a setting changes it (OpenVINO bf16); "" = the file's
    default_median_us: float | None = None  # the final paired measurement, defaults vs chosen
    tuned_median_us: float | None = None
    speedup: float | None = None  # default median / tuned median; None when the defaults were kept
    ci_low: float | None = None  # bootstrap 95% interval of the speedup
    ci_high: float | None = None
    parity: dict = field(default_factory=dict)  # the gate's verdict on the chosen settings
    trials: list[dict] = field(default_factory=list)
    untried: list[str] = field(default_factory=list)
    note: str = ""  # e.g. a search winner that the confirmation did not confirm (defaults kept)

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.precision}" + (f" ({self.compute_precision})" if self.compute_precision else "")


@dataclass
class TunedFile:
    environment: dict
    settings: dict
    entries: list[TunedEntry]
    schema: str = TUNED_SCHEMA
    schema_version: int = TUNED_SCHEMA_VERSION

    def entry(self, backend: str, precision: str, batch_size: int) -> TunedEntry | None:
        """The entry for this batch size, else the one tuned at the nearest batch size (log scale)."""
        own = [e for e in self.entries if e.backend == backend and e.precision == precision]
        if not own:
            return None
        return min(own, key=lambda e: (abs(math.log(e.batch_size) - math.log(batch_size)), e.batch_size))

    def options_for(self, backend: str, precision: str, batch_size: int) -> dict:
        """Keyword arguments for registry.create_backend; {} (the defaults) when the pair was not tuned."""
        found = self.entry(backend, precision, batch_size)
        return dict(found.options) if found else {}


def tuned_to_dict(tuned: TunedFile) -> dict:
    from toolkit.files.store import to_jsonable

    data = {"schema": tuned.schema, "schema_version": tuned.schema_version}
    data.update(to_jsonable({k: v for k, v in asdict(tuned).items() if k not in ("schema", "schema_version")}))
    return data


def write_tuned(tuned: TunedFile, path: str | os.PathLike) -> Path:
    """tuned.json, atomically, with its manifest entry."""
    from toolkit.files.store import write_json_artifact

    return write_json_artifact(path, tuned_to_dict(tuned), kind="tuned-settings")


def tuned_from_dict(data, source: str = "tuned file") -> TunedFile:
    """Rebuild and validate a TunedFile; one InputError naming `source` for anything wrong."""
    from toolkit.backends import registry

    fix = "pass a tuned.json written by `toolkit bench --tune`, or run it again"
    if not isinstance(data, dict) or data.get("schema") != TUNED_SCHEMA:
        raise InputError(f"{source} is not a toolkit tuned-settings file (no \"schema\": \"{TUNED_SCHEMA}\")", fix)
    if data.get("schema_version") != TUNED_SCHEMA_VERSION:
        raise InputError(f"{source} has tuned-settings schema version {data.get('schema_version')!r}; this toolkit reads {TUNED_SCHEMA_VERSION}", fix)
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise InputError(f"{source} has no list of \"entries\"", fix)
    names = {f.name for f in fields(TunedEntry)}
    out = []
    for i, raw in enumerate(entries):
        where = f"{source} entry {i}"
        if not isinstance(raw, dict):
            raise InputError(f"{where} is not an object", fix)
        try:
            entry = TunedEntry(**{k: v for k, v in raw.items() if k in names})
        except TypeError as exc:
            raise InputError(f"{where} lacks a field ({' '.join(str(exc).split())})", fix) from None
        if not isinstance(entry.batch_size, int) or isinstance(entry.batch_size, bool) or entry.batch_size < 1:
            raise InputError(f"{where} has batch_size {entry.batch_size!r}, expected a positive integer", fix)
        if not isinstance(entry.options, dict):
            raise InputError(f"{where} has options {entry.options!r}, expected an object", fix)
        try:
            registry.check_options(entry.backend, entry.precision, entry.options)
        except InputError as exc:
            raise InputError(f"{where}: {exc.problem}", fix) from None
        out.append(entry)
    env, settings = data.get("environment", {}), data.get("settings", {})
    return TunedFile(environment=env if isinstance(env, dict) else {}, settings=settings if isinstance(settings, dict) else {}, entries=out)


def load_tuned(path: str | os.PathLike) -> TunedFile:
    p = Path(path)
    fix = "pass a tuned.json written by `toolkit bench --tune`"
    if not p.is_file():
        raise InputError(f"tuned-settings file {p} does not exist", fix)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{p} is not a toolkit tuned-settings file (not readable JSON: {' '.join(str(exc).split())[:100]})", fix) from None
    return tuned_from_dict(data, str(p))
