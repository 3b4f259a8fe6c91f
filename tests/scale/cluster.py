"""A scaled-out telerad on one machine: gateways and workers as child processes sharing PostgreSQL,
Redis and an S3-compatible store (used by the kill test and benchmarks/bench_scale.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers import free_port, wait_for_echo
from tests.serve_process import ChildProcess


def write_config(path: Path, *, db_url: str, clinics: list[tuple[str, str]], destinations: list[dict],
                 quiet_period_s: float = 1.0, extra: str = "") -> Path:
    """One TOML file for every process of the cluster (each gets its own ``--data-dir``)."""
    lines = [f'database = {{ url = "{db_url}" }}', "", "[dicom]", 'bind = "127.0.0.1"',
             f"quiet_period_s = {quiet_period_s}", "max_associations = 64", "max_associations_per_ip = 64", "",
             "[routing]", "sweep_interval_s = 1", "retry_initial_s = 0.5", "retry_max_delay_s = 2.0", "lease_s = 5",
             "dimse_timeout_s = 10", "connect_timeout_s = 3", "", extra, ""]
    for name, ae in clinics:
        lines += ["[[clinics]]", f'name = "{name}"', f'ae_title = "{ae}"', ""]
    for d in destinations:
        lines += ["[[destinations]]"] + [f"{k} = {_toml(v)}" for k, v in d.items()] + [""]
    path.write_text("\n".join(lines))
    return path


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return f'"{v}"'


@dataclass
class Proc(ChildProcess):
    name: str
    cmd: list[str]
    log_path: Path
    env: dict[str, str]
    dicom_port: int | None = None
    echo_ae: str = "ECHOSCU"  # a registered clinic's AE title (C-ECHO to see that the port is up)
    proc: subprocess.Popen | None = None

    def start(self) -> "Proc":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        if self.dicom_port is not None:
            wait_for_echo("127.0.0.1", self.dicom_port, timeout=timeout, called_ae="TELERAD", calling_ae=self.echo_ae,
                          proc=self.proc, log=self.log_path)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.log()[-3000:]}")
            if "telerad worker is running" in self.log():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready within {timeout}s: {self.log()[-3000:]}")


@dataclass
class Cluster:
    root: Path
    config: Path
    env: dict[str, str]
    echo_ae: str = "ECHOSCU"
    procs: dict[str, Proc] = field(default_factory=dict)

    def _proc(self, name: str, args: list[str], dicom_port: int | None) -> Proc:
        data = self.root / name
        data.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "telerad.cli", *args, "--config", str(self.config), "--data-dir", str(data)]
        p = Proc(name, cmd, self.root / f"{name}.log", {**os.environ, **self.env}, dicom_port, self.echo_ae)
        self.procs[name] = p
        return p

    def gateway(self, name: str, *, workers: bool = False) -> Proc:
        port = free_port()
        args = ["serve", "--dicom-port", str(port), "--http-port", str(free_port()), "--no-http"]
        return self._proc(name, args + ([] if workers else ["--no-workers"]), port)

    def worker(self, name: str) -> Proc:
        return self._proc(name, ["worker"], None)

    def start(self, *names: str, timeout: float = 90.0) -> None:
        for n in names:
            self.procs[n].start()
        for n in names:
            self.procs[n].wait_ready(timeout)

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.log()[-4000:]}" for n, p in self.procs.items())


def received_sops(directory: Path) -> Counter:
    """``{SOP Instance UID: times received}`` of a DCMTK storescp folder (``-uf``: one file per receipt)."""
    from pydicom import dcmread

    out: Counter = Counter()
    for f in directory.rglob("*"):
        if f.is_file():
            out[str(dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)] += 1
    return out
