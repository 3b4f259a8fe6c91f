"""A running telerad for the DICOMweb and OHIF tests: an in-process gateway fed by DCMTK
``storescu``, the web app on a real uvicorn socket, and one account per role."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from sqlalchemy import select

from pacs_gateway.index.models import Series
from pacs_gateway.service import Gateway
from telerad.app import build_gateway
from sample_dicom.synthetic import compress_series, write_ct_series
from telerad.settings import load_settings
from tests.peers import free_port, propose_args, run_storescu, store_results

PASSWORD = "dicomweb test password"
ACCOUNTS = {"rad": ("radiologist", []), "stroke1": ("stroke", []), "admin1": ("admin", []),
            "tech-a": ("technician", ["Clinic A"]), "tech-b": ("technician", ["Clinic B"])}
STUDY_A = "1.2.826.0.1.3680043.10.9.1"
STUDY_B = "1.2.826.0.1.3680043.10.9.2"


@dataclass
class Running:
    gateway: Gateway
    base: str  # http://127.0.0.1:PORT
    server: uvicorn.Server
    thread: threading.Thread
    files: dict = field(default_factory=dict)  # name -> [Path]

    @property
    def dicomweb(self) -> str:
        return self.base + "/dicomweb"

    def token(self, user: str) -> str:
        import httpx

        r = httpx.post(self.base + "/api/auth/token", data={"username": user, "password": PASSWORD}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def auth(self, user: str) -> dict:
        return {"Authorization": f"Bearer {self.token(user)}"}

    def client(self, user: str = "rad"):
        from dicomweb_client.api import DICOMwebClient

        return DICOMwebClient(self.dicomweb, headers=self.auth(user))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.gateway.stop()


def _push(files, port, calling_ae, ts=None) -> None:
    extra = propose_args(ts) if ts else ()
    result = run_storescu(files, "127.0.0.1", port, calling_ae, "TELERAD", extra_args=extra, timeout=120)
    statuses = store_results(result)
    assert statuses and all(s == "Success" for _, s in statuses), result.stderr[-2000:]


def wait_complete(gw: Gateway, series_uids: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with gw.sessions() as s:
            states = dict(s.execute(select(Series.series_uid, Series.state).where(Series.series_uid.in_(series_uids))).all())
        if len(states) == len(series_uids) and all(v == "complete" for v in states.values()):
            return
        time.sleep(0.1)
    raise AssertionError(f"series not complete within {timeout}s: {series_uids}")


def start(tmp: Path, *, n_images: int = 6, rows: int = 64, database_url: str | None = None) -> Running:
    """Start the gateway and the web app; push study A (CT, Clinic A) and study B (JPEG-LS CT, Clinic B).

    ``database_url``: the index (default: SQLite in the data dir).
    """
    from viewer.auth import users
    from viewer.main import create_app

    settings = load_settings(None, **{
        "data_dir": str(tmp / "var"), "dicom.port": free_port(), "dicom.bind": "127.0.0.1",
        "dicom.quiet_period_s": 0.3, "secret_key": "dicomweb-tests-secret-key",
        "clinics": [{"name": "Clinic A", "ae_title": "CLINIC_A"}, {"name": "Clinic B", "ae_title": "CLINIC_B"}],
        **({"database.url": database_url} if database_url else {}),
    })
    gw = build_gateway(settings)
    gw.start()
    with gw.sessions.begin() as s:
        for name, (role, clinics) in ACCOUNTS.items():
            users.add_user(s, name, role, PASSWORD, clinics)
    app = create_app(gw.sessions, store_root=gw.store.root, settings=settings, gateway=gw)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    run = Running(gw, f"http://127.0.0.1:{port}", server, thread)
    a = write_ct_series(tmp / "a", n_images, rows, rows, seed=1, study_uid=STUDY_A, patient_id="PA-001",
                        series_description="HEAD PLAIN", extra={"PatientName": "DOE^JANE", "StudyDate": "20240105",
                                                                "AccessionNumber": "ACC-A"})
    b_plain = write_ct_series(tmp / "b0", n_images, rows, rows, seed=2, study_uid=STUDY_B, patient_id="PB-002",
                              series_description="HEAD JLS", extra={"PatientName": "ROE^RICHARD", "StudyDate": "20240312",
                                                                     "AccessionNumber": "ACC-B"})
    b = compress_series(b_plain, tmp / "b", "jpeg-ls")
    _push(a, settings.dicom.port, "CLINIC_A")
    _push(b, settings.dicom.port, "CLINIC_B", "1.2.840.10008.1.2.4.80")
    run.files = {"a": a, "b": b}
    from pydicom import dcmread

    run.series = {k: str(dcmread(v[0], stop_before_pixels=True).SeriesInstanceUID) for k, v in run.files.items()}
    wait_complete(gw, list(run.series.values()))
    return run
