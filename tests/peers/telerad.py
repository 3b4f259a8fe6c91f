"""``telerad serve`` as a child process, for end-to-end tests and benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.peers._common import LOOPBACK, PathLike, PeerError, _stop_process, _tail, dcmtk_env, free_port
from tests.peers.dcmtk import wait_for_echo

REPO_ROOT = Path(__file__).resolve().parents[2]


class TeleradPeer:
    """``telerad serve`` as a child process (``python -m telerad.cli serve ...``).

    Waits (bounded) for its C-ECHO and, unless ``http=False``, for ``/healthz``.
    ``stop()`` sends SIGTERM, ``kill()`` SIGKILL (crash tests); ``start()``
    again reuses the same data dir and ports.
    """

    def __init__(
        self,
        data_dir: PathLike,
        dicom_port: int | None = None,
        http_port: int | None = None,
        *,
        ae_title: str = "TELERAD",
        accept_any_ae: bool = True,
        http: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        import sys

        self.data_dir = Path(data_dir)
        self.host = LOOPBACK
        self.dicom_port = dicom_port or free_port()
        self.http_port = http_port or free_port()
        while self.http_port == self.dicom_port:
            self.http_port = free_port()
        self.ae_title = ae_title
        self.http = http
        self.start_timeout = start_timeout
        self.log_path = self.data_dir.parent / f"telerad-{self.dicom_port}.log"
        self.env = dict(env or {})
        self.argv = [
            sys.executable, "-m", "telerad.cli", "serve",
            "--data-dir", str(self.data_dir),
            "--dicom-port", str(self.dicom_port),
            "--http-port", str(self.http_port),
            "--ae-title", ae_title,
            *(["--accept-any-ae"] if accept_any_ae else []),
            *([] if http else ["--no-http"]),
            *extra_args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def start(self) -> TeleradPeer:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dcmtk_env(**self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, start_new_session=True
            )
        try:
            wait_for_echo(
                self.host, self.dicom_port, timeout=self.start_timeout, called_ae=self.ae_title,
                proc=self.proc, log=self.log_path,
            )  # fmt: skip
            if self.http:
                self._wait_http()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_http(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                self.get("/healthz", timeout=2.0)
                return
            except (OSError, PeerError) as exc:
                last = exc
                time.sleep(0.1)
        raise PeerError(f"telerad /healthz not ready within {self.start_timeout}s ({last}){_tail(self.log_path)}")

    def get(self, path: str, timeout: float = 30.0) -> Any:
        """GET a JSON resource from the HTTP API."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                data = resp.read()
        except urllib.error.HTTPError as exc:
            raise PeerError(f"telerad GET {path} -> HTTP {exc.code}: {exc.read()[:500]!r}") from exc
        return json.loads(data) if data else None

    def stop(self, timeout: float = 30.0) -> None:
        _stop_process(self.proc, timeout=timeout)

    def kill(self) -> None:
        if self.running and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise PeerError("telerad is not running")
        return self.proc.pid

    def stored_files(self) -> list[Path]:
        """``*.dcm`` files under ``<data-dir>/store``."""
        return sorted((self.data_dir / "store").rglob("*.dcm"))

    def __enter__(self) -> TeleradPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


