"""The triage worker process (stroke.compute.ComputePool) does not outlive the gateway that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = """
import time
from stroke.compute import ComputePool, warm
pool = ComputePool()
print(pool.call(warm, timeout=120), flush=True)
time.sleep(120)
"""


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie (an exited child that nobody has reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_worker_ends_when_the_gateway_is_killed():
    """A gateway killed with SIGKILL (out of memory, a crash) cannot stop its worker; the worker must notice and end,
    or every crash would leave an idle process holding its memory. Measured before the fix: it stayed forever."""
    proc = subprocess.Popen([sys.executable, "-c", GATEWAY], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        assert worker != proc.pid and _running(worker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15.0
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(worker), "the triage worker outlived its gateway"
    finally:
        proc.kill()
        proc.wait(timeout=10)
