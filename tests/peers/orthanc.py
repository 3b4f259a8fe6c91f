"""A private Orthanc (Debian package) playing the lead hospital's PACS."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.peers._common import (
    LOOPBACK,
    PathLike,
    PeerError,
    _port_open,
    _stop_process,
    _tail,
    dcmtk_env,
    free_port,
    start_retrying_busy_port,
    pixel_sha256,
)

ORTHANC_BINARY = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def have_orthanc() -> bool:
    return os.access(ORTHANC_BINARY, os.X_OK)



class OrthancPeer:
    """A private Orthanc (Debian package) with its own config, storage and SQLite index.

    ``known_modalities`` maps a name to ``(aet, host, port)`` for
    ``DicomModalities``. ``dicomweb=True`` loads the Debian DICOMweb plugin
    (root ``/dicom-web/``). ``accepted_sop_classes`` is refused: the Debian
    Orthanc 1.10.1 answers C-STORE *Success* even for instances its Lua filters
    drop, so it cannot play a peer that rejects a SOP class; use
    ``StorescpPeer(accepted_sop_classes=...)`` for that. ``config_overrides`` is merged last into the JSON config.

    ``stop()`` and ``start()`` may be called repeatedly (outage tests); the
    storage and index survive.
    """

    def __init__(
        self,
        tmpdir: PathLike,
        dicom_port: int | None = None,
        http_port: int | None = None,
        *,
        aet: str = "ORTHANC",
        known_modalities: Mapping[str, tuple[str, str, int]] | None = None,
        dicomweb: bool = False,
        accepted_sop_classes: Iterable[str] | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.root = Path(tmpdir)
        self.host = LOOPBACK
        self._ports_chosen_here = (dicom_port is None, http_port is None)
        self._started = False  # after a first start the ports stay (destinations point at them)
        self.dicom_port = dicom_port or free_port()
        self.http_port = http_port or free_port()
        while self.http_port == self.dicom_port:
            self.http_port = free_port()
        self.aet = aet
        self.dicomweb = dicomweb
        self.start_timeout = start_timeout
        self.storage = self.root / "storage"
        self.config_path = self.root / "orthanc.json"
        self.log_path = self.root / "orthanc.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = self._build_config(known_modalities, accepted_sop_classes, config_overrides)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def _build_config(
        self,
        known_modalities: Mapping[str, tuple[str, str, int]] | None,
        accepted_sop_classes: Iterable[str] | None,
        overrides: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "Name": f"telerad-test-{self.aet}",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {name: list(spec) for name, spec in (known_modalities or {}).items()},
            "DicomModalitiesInDatabase": False,
            "OrthancPeers": {},
            "Plugins": [DICOMWEB_PLUGIN] if self.dicomweb else [],
            "LuaScripts": [],
            "SaveJobs": False,
            "MetricsEnabled": False,
            "HttpsVerifyPeers": False,
            "DeidentifyLogs": True,
        }
        if self.dicomweb:
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Host": self.host}
        if accepted_sop_classes is not None:
            raise PeerError(
                "OrthancPeer cannot refuse SOP classes (Orthanc 1.10.1 answers Success for filtered "
                "instances); use StorescpPeer(accepted_sop_classes=...) instead."
            )
        config.update(overrides or {})
        return config

    # ---- lifecycle
    def start(self) -> OrthancPeer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not have_orthanc():
            raise PeerError(f"Orthanc is not installed at {ORTHANC_BINARY} (apt-get install orthanc)")
        self.storage.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config, indent=2))
        # A restart keeps its ports (destinations point at them); while the peer was down, another
        # process's outgoing connection may briefly hold one as its ephemeral local port. On a first
        # start, ports this peer picked itself may simply have been taken: it picks new ones.
        start_retrying_busy_port(self._launch, self._wait_ready, self.stop, self.log_path,
                                 lambda: None if self._started else self._pick_new_ports(), pause_s=1.0)
        self._started = True
        return self

    def _launch(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [ORTHANC_BINARY, str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dcmtk_env(),
                cwd=self.root,
                start_new_session=True,
            )

    def _pick_new_ports(self) -> None:
        """Free ports in place of the ones this peer chose itself (another process took one before Orthanc
        bound it); ports given by the caller are kept."""
        pick_dicom, pick_http = self._ports_chosen_here
        if pick_dicom:
            self.dicom_port = free_port()
        if pick_http:
            self.http_port = free_port()
            while self.http_port == self.dicom_port:
                self.http_port = free_port()
        self.config.update(DicomPort=self.dicom_port, HttpPort=self.http_port)
        self.config_path.write_text(json.dumps(self.config, indent=2))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PeerError(f"Orthanc exited with {self.proc.returncode} during start-up{_tail(self.log_path)}")
            try:
                self.rest("/system", timeout=2.0)
            except (OSError, PeerError) as exc:
                last = exc
                time.sleep(0.1)
                continue
            if _port_open(self.host, self.dicom_port):
                return
            time.sleep(0.1)
        raise PeerError(f"Orthanc REST API not ready within {self.start_timeout}s ({last}){_tail(self.log_path)}")

    def stop(self, timeout: float = 30.0) -> None:
        _stop_process(self.proc, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise PeerError("Orthanc is not running")
        return self.proc.pid

    def __enter__(self) -> OrthancPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- REST
    def rest(
        self,
        path: str,
        method: str = "GET",
        *,
        body: bytes | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        raw: bool = False,
    ) -> Any:
        """Call the REST API; JSON answers are decoded unless ``raw``. HTTP errors raise PeerError."""
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data = resp.read()
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise PeerError(f"Orthanc {method} {path} -> HTTP {exc.code}: {exc.read()[:500]!r}") from exc
        if raw or "json" not in ctype:
            return data
        return json.loads(data) if data else None

    def instances(self) -> list[str]:
        """Orthanc ids of every stored instance."""
        return list(self.rest("/instances"))

    def count_instances(self) -> int:
        return int(self.rest("/statistics")["CountInstances"])

    def sop_instance_uids(self) -> dict[str, str]:
        """``{SOP Instance UID: Orthanc instance id}`` for every stored instance."""
        found = self.rest("/tools/find", "POST", json_body={"Level": "Instance", "Query": {}, "Expand": True})
        return {item["MainDicomTags"]["SOPInstanceUID"]: item["ID"] for item in found}

    def instance_file(self, instance_id: str) -> bytes:
        """The stored Part-10 file of one instance."""
        return self.rest(f"/instances/{instance_id}/file", raw=True)

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        return self.rest(f"/instances/{instance_id}/simplified-tags")

    def instance_pixel_sha256(self, instance_id: str) -> str:
        """:func:`pixel_sha256` of the stored file (decoded pixels, any transfer syntax)."""
        return pixel_sha256(self.instance_file(instance_id))

    def delete_all(self) -> None:
        for patient in self.rest("/patients"):
            self.rest(f"/patients/{patient}", "DELETE")


