"""Fixtures for the triage-in-the-loop tests: phantoms, receivers, config files and checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from sample_dicom.cli import main as phantom_main
from tests.peers import LOOPBACK
from tests.stroke.receivers import SmtpReceiver, WebhookReceiver

SECRET_1 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_2 = "whsec_" + base64.b64encode(b"tier-two-secret-key-32-bytes-ok!").decode()
CLINIC_AE = "CLINIC_A"


def write_phantom(out: Path, *extra: str) -> list[Path]:
    """A small phantom CTP (128x128, 8 slices, 30 time points); returns its DICOM files."""
    assert phantom_main([str(out), "--size", "128", "--slices", "8", "--times", "30", *extra]) == 0
    return sorted(out.rglob("*.dcm"))


@pytest.fixture(scope="session")
def phantom_ctp(tmp_path_factory) -> list[Path]:
    return write_phantom(tmp_path_factory.mktemp("ctp") / "ctp", "--seed", "21")


@pytest.fixture(scope="session")
def phantom_no_aif(tmp_path_factory) -> list[Path]:
    return write_phantom(tmp_path_factory.mktemp("noaif") / "ctp", "--seed", "22", "--no-aif")


@pytest.fixture
def webhook():
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture
def smtp():
    with SmtpReceiver() as server:
        yield server


def verify_standard_webhook(secret: str, req: dict, tolerance_s: float = 300) -> dict:
    """Check a received request's Standard Webhooks signature with our own HMAC; returns the JSON body."""
    h = req["headers"]
    msg_id, ts, sig = h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"]
    assert abs(time.time() - int(ts)) < tolerance_s
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + req["body"], hashlib.sha256).digest()).decode()
    assert f"v1,{expected}" in sig.split(" "), "webhook signature does not verify"
    return json.loads(req["body"])


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def write_config(path: Path, *, sections: dict, tables: dict[str, list[dict]]) -> Path:
    """A TOML file from ``{section: {key: value}}`` and ``{array_name: [table, ...]}``."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    for name, rows in tables.items():
        for row in rows:
            lines.append(f"[[{name}]]")
            lines += [f"{k} = {toml_value(v)}" for k, v in row.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def contact(name: str, tier: int, hook: WebhookReceiver | None = None, secret: str = SECRET_1,
            email: str | None = None) -> dict:
    out = {"name": name, "tier": tier}
    if hook is not None:
        out.update(webhook=hook.url, webhook_secret=secret)
    if email:
        out["email"] = email
    return out


def destination(name: str, port: int, ae: str, default: bool = True) -> dict:
    return {"name": name, "kind": "dicom", "host": LOOPBACK, "port": port, "ae_title": ae, "default": default}
