"""Fixtures for the web app: an index with two clinics, one study each, and one account per role."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from pacs_gateway.index.db import open_index
from pacs_gateway.index.models import Clinic, Series, Study
from telerad.clock import utcnow
from telerad.settings import Settings
from viewer.auth.passwords import hash_password
from viewer.models import User, UserClinic

PASSWORD = "correct horse battery"
ACCOUNTS = {"rad": ("radiologist", []), "rad2": ("radiologist", []), "stroke1": ("stroke", []),
            "admin1": ("admin", []), "tech-a": ("technician", ["Clinic A"]), "tech-b": ("technician", ["Clinic B"])}
STUDY_A, STUDY_B = "1.2.826.0.1.3680043.10.1.1", "1.2.826.0.1.3680043.10.1.2"


@dataclass
class Env:
    sessions: object
    settings: Settings
    app: object

    def client(self, user: str | None = None, *, host: str = "testclient", cookie: bool = False) -> TestClient:
        c = TestClient(self.app, client=(host, 50000), follow_redirects=False)
        if user and cookie:
            login_page(c, user)
        elif user:
            c.headers["authorization"] = f"Bearer {token(c, user)}"
        return c


def token(client: TestClient, user: str, password: str = PASSWORD) -> str:
    r = client.post("/api/auth/token", data={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def login_page(client: TestClient, user: str, password: str = PASSWORD):
    import re

    page = client.get("/login")
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"username": user, "password": password, "login_csrf": nonce, "next": ""})


def add_study(sessions, uid: str, clinic: str | None, kind: str = "ncct_head", patient_id: str = "P1") -> None:
    now = utcnow()
    with sessions.begin() as s:
        cid = s.query(Clinic.id).filter(Clinic.name == clinic).scalar() if clinic else None
        st = Study(study_uid=uid, clinic_id=cid, calling_ae="X", patient_id=patient_id, patient_name="Doe^J",
                   accession_number="A1", study_date="20261201", study_description="CT HEAD",
                   first_received_at=now, last_received_at=now)
        s.add(st)
        s.flush()
        s.add(Series(series_uid=uid + ".1", study_id=st.id, modality="CT", kind=kind, state="complete",
                     completed_once=True, instance_count=3, last_received_at=now, completed_at=now))


@functools.cache
def _hash() -> str:
    return hash_password(PASSWORD)  # argon2 is slow on purpose: hash once for every fixture account


def add_account(s, name: str, role: str, clinics: list[str]) -> None:
    now = utcnow()
    user = User(name=name, role=role, password_hash=_hash(), disabled=False, created_at=now, password_changed_at=now)
    s.add(user)
    s.flush()
    for clinic in clinics:
        s.add(UserClinic(user_id=user.id, clinic_id=s.query(Clinic.id).filter(Clinic.name == clinic).scalar()))


@pytest.fixture
def env(tmp_path):
    yield from build_env(tmp_path)


@pytest.fixture(scope="module")
def module_env(tmp_path_factory):
    yield from build_env(tmp_path_factory.mktemp("viewer"))


def build_env(tmp_path):
    from viewer.main import create_app

    settings = Settings(data_dir=tmp_path / "var", secret_key="test-secret-key-for-viewer-tests")
    engine, sessions = open_index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    with sessions.begin() as s:
        s.add(Clinic(name="Clinic A", ae_title="CLINIC_A", created_at=utcnow()))
        s.add(Clinic(name="Clinic B", ae_title="CLINIC_B", created_at=utcnow()))
    with sessions.begin() as s:
        for name, (role, clinics) in ACCOUNTS.items():
            add_account(s, name, role, clinics)
    add_study(sessions, STUDY_A, "Clinic A")
    add_study(sessions, STUDY_B, "Clinic B", patient_id="P1")
    app = create_app(sessions, settings=settings, store_root=settings.store_dir)
    yield Env(sessions, settings, app)
    engine.dispose()
