"""What a local Triton server needs from this machine, and what it leaves on it: the serve extra
(the tritonserver binary bundled in nvidia-pytriton, its python backend and the stub for this
Python), a shared libpython, free ports, and the processes, shared-memory segments and workspace
folders to account for at stop or to clean after a crash (read from /proc and /dev/shm, Linux only)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import socket
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import InputError, UnavailableError

SERVE_INSTALL = "pip install 'toolkit[serve]' (nvidia-pytriton, tritonclient)"
DEFAULT_HOST = "127.0.0.1"
# Names that carry the pid of the `toolkit serve` process that made them: the python backend's
# shared-memory regions (/dev/shm/toolkit-serve<pid>-...) and the workspace (<tmp>/toolkit-serve-<pid>-...).
SHM_PREFIX = "toolkit-serve"
WORKSPACE_PREFIX = "toolkit-serve-"


@dataclass(frozen=True)
class TritonDist:
    """The bundled tritonserver: its binary, the python backend's files and the stub for this Python."""

    binary: Path
    python_backend: Path  # libtriton_python.so, triton_python_backend_utils.py
    stub: Path
    libs: Path  # the wheel's shared libraries (tritonserver links against them)


def triton_dist() -> TritonDist:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise UnavailableError("the Python package 'pytriton' is not installed, and `toolkit serve` needs its tritonserver", SERVE_INSTALL)
    root = Path(list(spec.submodule_search_locations)[0])
    server = root / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    dist = TritonDist(server / "bin" / "tritonserver", server / "backends" / "python",
                      server / "python_backend_stubs" / version / "triton_python_backend_stub", root.parent / "nvidia_pytriton.libs")
    for path, what in ((dist.binary, "tritonserver"), (dist.python_backend / "libtriton_python.so", "the python backend"),
                       (dist.stub, f"the python-backend stub for Python {version}")):
        if not path.is_file():
            raise UnavailableError(f"{what} is not in the installed nvidia-pytriton ({path} is missing)", f"reinstall it: {SERVE_INSTALL}")
    return dist


def check_serving_support() -> None:
    """Raise UnavailableError unless a local Triton can run here: the serve extra is installed (with
    a stub for this Python) and this Python has a shared libpython (the stub embeds it)."""
    for module in ("pytriton", "tritonclient"):
        if importlib.util.find_spec(module) is None:
            raise UnavailableError(f"the Python package '{module}' is not installed, and `toolkit serve` needs it", SERVE_INSTALL)
    triton_dist()
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


def server_environment(dist: TritonDist) -> dict[str, str]:
    """The environment tritonserver runs in: this interpreter's libpython first on the library path
    (the stub embeds it), then the wheel's own libraries; this interpreter's folder first on PATH:
    the stub's embedded Python finds its prefix from the `python3` on PATH, so it starts in this
    (virtual) environment and imports its numpy, not the base installation's (a numpy 2 there
    under this environment's numpy 1 gave empty output tensors, measured)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), *([env["PATH"]] if env.get("PATH") else [])])
    before = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(python_library_dir()), str(dist.libs), *([before] if before else [])])
    return env


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


def server_processes() -> list[int]:
    """This process's descendants: the server it runs (tritonserver and its python-backend stubs)."""
    return descendants(os.getpid())


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def shm_segments(pid: int | None = None) -> list[str]:
    """The python backend's /dev/shm regions of the server run by process `pid` (default: this one)."""
    prefix = f"{SHM_PREFIX}{os.getpid() if pid is None else pid}-"
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except OSError:
        return []


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


def remove_shm_segments(pid: int | None = None) -> list[str]:
    """Unlink the python backend's /dev/shm regions of the server run by `pid` (default: this
    process): a stub that was killed cannot remove its own."""
    removed = []
    for name in shm_segments(pid):
        with contextlib.suppress(OSError):
            os.unlink(f"/dev/shm/{name}")
            removed.append(name)
    return removed


def new_workspace() -> Path:
    """A private folder for one server's repository, backend links and log, named after this process."""
    return Path(tempfile.mkdtemp(prefix=f"{WORKSPACE_PREFIX}{os.getpid()}-"))


def clean_crash_leftovers() -> list[str]:
    """What servers of `toolkit serve` processes that no longer run left behind (a SIGKILL gives no
    chance to clean): their workspace folders and shared-memory regions. Returns what was removed."""
    removed = []
    workspace = re.compile(rf"^{re.escape(WORKSPACE_PREFIX)}(\d+)-")
    tmp = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in tmp.iterdir():
            m = workspace.match(entry.name)
            if m and entry.is_dir() and not entry.is_symlink() and not alive(int(m.group(1))) and entry.owner() == _me():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
    segment = re.compile(rf"^{re.escape(SHM_PREFIX)}(\d+)-")
    with contextlib.suppress(OSError):
        for name in os.listdir("/dev/shm"):
            m = segment.match(name)
            if m and not alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(f"/dev/shm/{name}")
                    removed.append(f"/dev/shm/{name}")
    return removed


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
