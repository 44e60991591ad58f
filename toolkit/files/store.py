"""Atomic artifact writes, the per-directory lock, and the manifest that records every artifact.

Every file the toolkit produces goes through `write_artifact`: a temp file in the same directory,
flush + fsync, os.replace, fsync of the directory. A reader never sees half a file and an
interrupted or failed write leaves the previous version untouched. The manifest
(`<dir>/manifest.json`) records SHA-256, size, producing command, versions and parents of each
artifact; it is updated under the same lock as the write so two processes keep it consistent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import math
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from toolkit import env
from toolkit.errors import OutputError

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".toolkit.lock"
TEMP_PREFIX = ".tmp-"
MANIFEST_VERSION = 1


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe_os_error(exc: OSError, path: Path) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"no space left on the device holding {path.parent}", "free some space or choose another --out")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write to {path.parent} ({exc.strerror})", "choose a writable --out directory")
    if exc.errno == errno.ENOENT:
        return OutputError(f"directory {path.parent} does not exist", "create it first or choose another --out")
    return OutputError(f"cannot write {path} ({exc.strerror})", "check the output location")


def _read_only(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_writable_dir(directory: str | os.PathLike, create: bool = False) -> Path:
    """Fail early, before any work, when the output directory can't take files (or its manifest
    can't record them)."""
    d = Path(directory)
    if not d.exists():
        if not create:
            raise OutputError(f"output directory {d} does not exist", "create it first or choose another location")
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create directory {d} ({exc.strerror})", "choose a writable location") from None
    if not d.is_dir():
        raise OutputError(f"{d} is not a directory", "choose a directory for the output")
    if _read_only(d):
        raise OutputError(f"cannot write to {d} (read-only file system)", "choose a location on a writable file system")
    if not os.access(d, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {d} (permission denied)", "choose a writable location")
    read_manifest(d)
    return d


def _stage(target: Path, write: Callable[[Path], None], mode: int = 0o644) -> Path:
    """Write the content to a temp file beside `target`, fsynced; the caller renames or removes it."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{target.name}.", dir=target.parent)
    except OSError as exc:
        raise _describe_os_error(exc, target) from None
    tmp = Path(tmp_name)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _describe_os_error(exc, target) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for a few renames, so an interrupt never lands between an
    artifact's rename and its manifest's; the signal is re-raised right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is None:  # installed outside Python: cannot be restored, leave it alone
            continue
        previous[sig] = handler
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            signal.raise_signal(received[0])


def _commit(staged: list[tuple[Path, Path]]) -> None:
    """Rename each staged temp file onto its target, in order, then fsync the directories."""
    with _signals_deferred():
        try:
            for tmp, target in staged:
                os.replace(tmp, target)
            for directory in {target.parent for _, target in staged}:
                _fsync_dir(directory)
        except OSError as exc:
            raise _describe_os_error(exc, target) from None
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], mode: int = 0o644) -> None:
    """Write `path` atomically; `write(tmp_path)` produces the content at a temp path beside it."""
    target = Path(path)
    _commit([(_stage(target, write, mode), target)])


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def clean_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove temp files left by a process that was killed mid-write. Taken under the lock: every
    writer holds it while its temp files exist, so no live writer's file is removed."""
    removed = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    with directory_lock(d):
        for p in d.glob(f"{TEMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """An advisory lock on an artifact directory (blocks until free). Writers take it exclusive;
    readers (`shared=True`) wait for a writer to finish, since an artifact and its manifest entry
    change together under the lock, and read a directory without a lock file (or one they can't
    open: read-only media) as it is."""
    d = Path(directory)
    try:
        fd = os.open(d / LOCK_NAME, os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if shared:
            yield
            return
        raise _describe_os_error(exc, d / LOCK_NAME) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_manifest(directory: str | os.PathLike) -> dict:
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        return {"version": MANIFEST_VERSION, "artifacts": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"manifest {path} is unreadable ({exc})", "delete it and re-run the commands that produce artifacts") from None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
        raise OutputError(f"manifest {path} is not a toolkit manifest", "delete it and re-run the commands that produce artifacts")
    for name, entry in data["artifacts"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("size"), int)
                and isinstance(entry.get("parents", {}), dict)):
            raise OutputError(f"manifest {path} has a malformed entry for {name!r}", "delete it and re-run the commands that produce artifacts")
    return data


def _manifest_key(path: Path, directory: Path) -> str:
    # Relative even outside the directory ("../mnist_cnn.pt"), so a manifest stays true in another checkout.
    return os.path.relpath(Path(path).resolve(), Path(directory).resolve())


def _manifest_entry(content: Path, directory: Path, kind: str, parents: list[Path] | None, extra: dict | None) -> dict:
    entry = {
        "kind": kind,
        "sha256": sha256_file(content),
        "size": content.stat().st_size,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": env.command_line(),
        "versions": env.library_versions(),
        "parents": {
            _manifest_key(p, directory): sha256_file(p) for p in (parents or []) if Path(p).exists()
        },
    }
    if extra:
        entry.update(extra)
    return entry


def write_artifact(
    path: str | os.PathLike,
    write: Callable[[Path], None],
    kind: str,
    parents: list[Path] | None = None,
    extra: dict | None = None,
    manifest_dir: str | os.PathLike | None = None,
) -> Path:
    """Atomically write an artifact and record it in its directory's manifest, under the lock.

    `manifest_dir` (default: the artifact's own directory) is the directory whose manifest and lock
    hold the entry: a tree of files (a Triton model repository) keeps one manifest at its root.
    The artifact and the new manifest are both staged before either is renamed into place, so a
    full disk, an unreadable manifest or an interrupt leaves both as they were."""
    target = Path(path)
    directory = check_writable_dir(manifest_dir if manifest_dir is not None else target.parent)
    if manifest_dir is not None:
        check_writable_dir(target.parent)
    manifest_path = directory / MANIFEST_NAME
    with directory_lock(directory):
        manifest = read_manifest(directory)
        # Temp files of this artifact or the manifest exist only under the lock: any here now are a killed writer's.
        for folder, prefix in ((target.parent, f"{TEMP_PREFIX}{target.name}."), (directory, f"{TEMP_PREFIX}{MANIFEST_NAME}.")):
            for stale in [p for p in folder.iterdir() if p.name.startswith(prefix)]:
                stale.unlink(missing_ok=True)
        tmp = _stage(target, write)
        try:
            manifest["version"] = MANIFEST_VERSION
            manifest["artifacts"][_manifest_key(target, directory)] = _manifest_entry(tmp, directory, kind, parents, extra)
            text = json.dumps(manifest, indent=2) + "\n"
            tmp_manifest = _stage(manifest_path, lambda t: t.write_text(text, encoding="utf-8"))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _commit([(tmp, target), (tmp_manifest, manifest_path)])
    return target


# --- JSON: how every result is serialized ---------------------------------------------------------

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


def json_text(obj, inline_keys: frozenset[str] = frozenset()) -> str:
    """Indented JSON (as json.dumps(indent=2)), except that values under `inline_keys` are written
    on one line: thousands of per-call samples stay readable."""
    return _json_lines(to_jsonable(obj), 0, inline_keys) + "\n"


def _json_lines(value, level: int, inline_keys: frozenset[str]) -> str:
    inner, outer = "  " * (level + 1), "  " * level
    if isinstance(value, dict) and value:
        items = [
            f"{inner}{json.dumps(k)}: "
            + (json.dumps(v, separators=(",", ":")) if k in inline_keys else _json_lines(v, level + 1, inline_keys))
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{outer}}}"
    if isinstance(value, list) and value:
        return "[\n" + ",\n".join(inner + _json_lines(v, level + 1, inline_keys) for v in value) + f"\n{outer}]"
    return json.dumps(value)


def write_json_artifact(path: str | os.PathLike, obj, kind: str, parents: list[Path] | None = None,
                        inline_keys: frozenset[str] = frozenset()) -> Path:
    return write_text_artifact(path, json_text(obj, inline_keys), kind=kind, parents=parents)


def write_text_artifact(path: str | os.PathLike, text: str, kind: str, parents: list[Path] | None = None) -> Path:
    return write_artifact(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), kind=kind, parents=parents)
