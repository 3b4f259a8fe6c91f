"""Process helpers shared by the peers: ports, environment, logs, stopping, CPU, pixel hashes."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"

PathLike = str | os.PathLike[str]


class PeerError(RuntimeError):
    """A peer did not start, stop or answer as expected (the message names it)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def dcmtk_env(**extra: str) -> dict[str, str]:
    """The current environment plus ``TCP_NODELAY=1`` and ``extra``."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    env.update(extra)
    return env


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def _tail(log: PathLike | None, n: int = 2000) -> str:
    if log is None or not Path(log).exists():
        return ""
    return "\n--- log tail ---\n" + Path(log).read_text(errors="replace")[-n:]


PORT_BUSY_ATTEMPTS = 3  # starts of one peer whose port another process took before the peer bound it


def start_retrying_busy_port(launch: Callable[[], None], ready: Callable[[], None], stop: Callable[[], None],
                             log: PathLike, repick: Callable[[], None], *, pause_s: float) -> None:
    """Start a peer process and wait until it is ``ready``; start it again, a bounded number of times, when it
    exited because its port was taken between choosing and binding it (its log says "already in use").
    ``repick`` chooses other ports where the peer may (its own free ports); a restarted peer keeps its ports."""
    for attempt in range(1, PORT_BUSY_ATTEMPTS + 1):
        launch()
        try:
            ready()
            return
        except PeerError:
            stop()
            if attempt == PORT_BUSY_ATTEMPTS or "already in use" not in _tail(log):
                raise
            repick()
            time.sleep(pause_s)
        except BaseException:
            stop()
            raise


def _stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def pixel_sha256(source: PathLike | bytes) -> str:
    """SHA-256 of the decoded pixel array of a DICOM file (path or Part-10 bytes).

    Equal for two encodings of the same image when the compression is lossless.
    """
    import numpy as np
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source)
    arr = np.ascontiguousarray(ds.pixel_array)
    return hashlib.sha256(arr.dtype.str.encode() + str(arr.shape).encode() + arr.tobytes()).hexdigest()



# --------------------------------------------------------------------------- CPU accounting
def _proc_stat(pid: int) -> tuple[int, float] | None:
    """``(ppid, utime+stime+cutime+cstime in seconds)`` from /proc, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = sum(int(v) for v in fields[11:15])
    return int(fields[1]), ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user+system) used so far by ``pid`` and all its descendants.

    Live processes count their own time plus that of their reaped children, so
    finished workers (storescp ``--fork``) are included once.
    """
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
                cpu[int(entry)] = stat[1]
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total
