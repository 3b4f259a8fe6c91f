"""Run ``telerad serve`` as a real subprocess (for crash, restart and end-to-end tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.peers import free_port, wait_for_echo


class ChildProcess:
    """Stop, kill and read the log of a child process (``self.proc``, ``self.log_path``)."""

    proc: subprocess.Popen | None
    log_path: Path

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as in a power cut of that host."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode if self.proc else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ServeProcess(ChildProcess):
    def __init__(self, data_dir: Path, *, args=(), env=None, dicom_port=None, http_port=None, log_name="serve.log"):
        self.data_dir = Path(data_dir)
        self.dicom_port = dicom_port or free_port()
        self.http_port = http_port or free_port()
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.log_path = self.data_dir.parent / log_name
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "telerad.cli", "serve",
            "--data-dir", str(self.data_dir),
            "--dicom-port", str(self.dicom_port),
            "--http-port", str(self.http_port),
            *self.args,
        ]

    def start(self, timeout: float = 60.0) -> "ServeProcess":
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.env.setdefault("TELERAD_DICOM__BIND", "127.0.0.1")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        wait_for_echo("127.0.0.1", self.dicom_port, timeout=timeout, called_ae="TELERAD",
                      calling_ae=self.echo_ae, proc=self.proc, log=self.log_path)
        return self

    echo_ae = "ECHOSCU"

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", interval: float = 0.1):
    """Poll ``predicate`` until it returns a truthy value; bounded by ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout:.0f}s")
