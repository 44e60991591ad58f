"""Faults for real CLI subprocesses, and before/after snapshots of directories.

`fault_env` puts a `sitecustomize.py` on the child's PYTHONPATH; Python imports it at start-up, so
the toolkit runs unmodified while the test decides what its environment lacks or breaks:
- hide=("openvino",): the package is absent (import fails, importlib.util.find_spec returns None);
- fault="interrupt:<file name>" / "eio:<file name>": Ctrl-C, or an I/O error, at the fsync of the
  temp file that is about to become <file name> (the last moment before the rename);
- fault="gate:<file name>:<directory>:<count>:<seconds>": at that same moment, wait until <count>
  processes have arrived there (each leaves a file in <directory>), or <seconds> have passed: makes
  concurrent writers meet inside the write, where a missing lock would show.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SITECUSTOMIZE = '''
import os
import sys

for _name in filter(None, os.environ.get("TOOLKIT_TEST_HIDE", "").split(",")):
    sys.modules[_name] = None

_fault = os.environ.get("TOOLKIT_TEST_FAULT", "")
if _fault:
    import errno
    import time

    _kind, _, _arg = _fault.partition(":")
    _real_fsync = os.fsync

    def _fsync(fd):
        try:
            name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            name = ""
        if _kind == "gate":
            target, gate, count, seconds = _arg.split(":")
            if name.startswith(f".tmp-{target}.") and not os.path.exists(os.path.join(gate, str(os.getpid()))):
                open(os.path.join(gate, str(os.getpid())), "w").close()
                deadline = time.monotonic() + float(seconds)
                while len(os.listdir(gate)) < int(count) and time.monotonic() < deadline:
                    time.sleep(0.01)
        elif name.startswith(f".tmp-{_arg}."):
            if _kind == "interrupt":
                raise KeyboardInterrupt
            if _kind == "eio":
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        return _real_fsync(fd)

    os.fsync = _fsync
'''


def fault_env(tmp_path: Path, hide: tuple[str, ...] = (), fault: str | None = None) -> dict:
    site = tmp_path / "fault-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))}
    env["TOOLKIT_TEST_HIDE"] = ",".join(hide)
    env["TOOLKIT_TEST_FAULT"] = fault or ""
    return env


def snapshot(*directories: Path) -> dict[str, str]:
    """Every file under the directories -> its SHA-256 (a symlink -> where it points)."""
    out = {}
    for d in directories:
        for root, _, files in os.walk(d):
            for name in files:
                p = Path(root) / name
                if p.is_symlink():
                    out[str(p)] = "-> " + os.readlink(p)
                else:
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def temp_files(*directories: Path) -> list[str]:
    return [str(p) for d in directories for p in Path(d).rglob(".tmp-*")]


def assert_untouched(before: dict[str, str], *directories: Path) -> None:
    """Every file that existed before is byte-identical, and no temp file was left behind."""
    after = snapshot(*directories)
    changed = [p for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f"pre-existing files changed or removed: {changed}"
    leftovers = temp_files(*directories)
    assert not leftovers, f"temp files left behind: {leftovers}"
