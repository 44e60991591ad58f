"""What a local Triton server needs from this machine, and what it leaves on it: the serve extra,
a shared libpython, free ports, and the processes and shared-memory segments to account for at stop
(read from /proc and /dev/shm, Linux only)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from toolkit.errors import InputError, UnavailableError

SERVE_INSTALL = "pip install 'toolkit[serve]' (nvidia-pytriton, tritonclient)"
DEFAULT_HOST = "127.0.0.1"
SHM_PREFIX = "pytrtion"  # PyTriton's spelling: its python-backend regions are /dev/shm/pytrtion<pid>-...
BLOCK_PREFIX = "psm_"  # multiprocessing.shared_memory's names: PyTriton's tensor-store blocks


def check_serving_support() -> None:
    """Raise UnavailableError unless a local Triton can run here: the serve extra is installed and
    this Python has a shared libpython (the python backend's stub embeds it)."""
    for module in ("pytriton", "tritonclient"):
        if importlib.util.find_spec(module) is None:
            raise UnavailableError(f"the Python package '{module}' is not installed, and `toolkit serve` needs it", SERVE_INSTALL)
    python_library_dir()


def python_library_dir() -> Path:
    """The directory of this interpreter's libpython. Triton's python-backend stub links against
    `libpython3.X.so.1.0` and otherwise finds whichever one the system search path has first: a
    different patch release (Debian's 3.11.2 under a 3.11.7 interpreter, measured) fails inside
    multiprocessing with `'_thread.RLock' object has no attribute '_recursion_count'`."""
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY") or ""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or ".so" not in soname:
        raise UnavailableError(
            f"this Python ({sys.executable}) is built without a shared libpython, which Triton's python backend needs",
            "use a Python built with --enable-shared (distribution Pythons are; pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)",
        )
    if not (Path(libdir) / soname).exists():
        raise UnavailableError(f"this Python's shared library {Path(libdir) / soname} does not exist", "reinstall Python with --enable-shared")
    return Path(libdir)


@contextlib.contextmanager
def python_library_path() -> Iterator[None]:
    """LD_LIBRARY_PATH with this interpreter's libpython first, while the server starts (the server
    copies the environment when it starts, so it is restored right after)."""
    before = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = str(python_library_dir()) + (f":{before}" if before else "")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port nothing listens on now (the kernel's choice). Another process could take it before the
    server binds it; the server then fails to start and says so."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR as servers set it: a port in TIME_WAIT from a just-stopped server is usable, one
        # with a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InputError(f"{what} port {port} on {host} is in use ({exc.strerror})", f"pass another --{what}-port, or 0 for any free port") from None


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc; zombies excluded)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields_after_name = stat.rsplit(")", 1)[1].split()
        if fields_after_name[0] != "Z":
            parents[int(entry)] = int(fields_after_name[1])
    out, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        out += kids
        frontier += kids
    return out


def _is_resource_tracker(pid: int) -> bool:
    """multiprocessing's resource tracker for this process (PyTriton's proxy starts it): a stdlib
    helper that lives exactly as long as this process, not part of the server."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"multiprocessing.resource_tracker" in fh.read()
    except OSError:
        return False


def server_processes() -> list[int]:
    """This process's descendants that belong to a server it runs."""
    me = os.getpid()
    return [p for p in descendants(me) if not (_parent(p) == me and _is_resource_tracker(p))]


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def shm_segments(pid: int | None = None) -> list[str]:
    """PyTriton's /dev/shm segments of the server run by process `pid` (default: this one)."""
    prefix = f"{SHM_PREFIX}{os.getpid() if pid is None else pid}-"
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except OSError:
        return []


def mapped_shm(pids) -> set[str]:
    """Names of the /dev/shm segments the given processes have mapped now."""
    names = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if "/dev/shm/" in line:
                        names.add(line.rsplit("/dev/shm/", 1)[1].strip().removesuffix(" (deleted)"))
        except OSError:
            continue
    return names


def server_blocks(pids) -> set[str]:
    """PyTriton's tensor-store blocks mapped by the server's processes (and this one): attributed
    while their owners live, since their names carry no pid."""
    return {n for n in mapped_shm(pids) if n.startswith(BLOCK_PREFIX)}


def existing_shm(names) -> list[str]:
    return sorted(n for n in names if os.path.exists(f"/dev/shm/{n}"))


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process, from /proc (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def identity(pid: int) -> tuple[int, int] | None:
    """(pid, start time in clock ticks since boot): names one process even after its pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return pid, int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def same_process_alive(ident: tuple[int, int]) -> bool:
    return alive(ident[0]) and identity(ident[0]) == ident


def end_processes(idents: list[tuple[int, int]], grace_s: float = 3.0) -> list[int]:
    """SIGTERM, then after `grace_s` SIGKILL, each listed process that is still the same process (a
    server's orphans: a python-backend stub whose tritonserver was killed is reparented away from
    us). Returns the pids that had to be ended."""
    import signal
    import time

    ended = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        targets = [i for i in idents if same_process_alive(i)]
        for pid, _ in targets:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
            if pid not in ended:
                ended.append(pid)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(same_process_alive(i) for i in targets):
            time.sleep(0.05)
    return ended


def remove_shm_segments(pid: int | None = None, blocks=()) -> list[str]:
    """Unlink PyTriton's /dev/shm segments of the server run by `pid` (default: this process) and
    the given tensor-store blocks: a tritonserver that was killed cannot remove its own."""
    removed = []
    for name in shm_segments(pid) + existing_shm(blocks):
        with contextlib.suppress(OSError):
            os.unlink(f"/dev/shm/{name}")
            removed.append(name)
    return removed
