"""Secrets at rest and in transit: sealed in the index, never copied per delivery, redacted, TLS-only logins."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from pacs_gateway.index.models import Destination
from stroke.models import AlertDelivery, OncallContact
from telerad.app import build_gateway
from sample_dicom.synthetic import write_ct_series
from stroke.channels import ChannelError, send_email, send_webhook
from stroke.config import SmtpSettings
from telerad import secretbox
from tests.gateway.conftest import CLINIC_AE, make_settings
from tests.peers import free_port, run_storescu, stored_ok
from tests.stroke.conftest import SECRET_1, contact, verify_standard_webhook
from tests.stroke.receivers import SmtpReceiver, WebhookReceiver

STOW_TOKEN = "Bearer stow-token-5f0c2a9e7d"
SMTP_PASSWORD = "smtp-password-91b3c"


def _raw_index(gw) -> bytes:
    base = gw.settings.data_dir / "index.sqlite3"
    return b"".join(p.read_bytes() for p in (base, base.with_name(base.name + "-wal")) if p.exists())


def test_secrets_are_sealed_in_the_index_and_never_copied_into_deliveries(tmp_path):
    with WebhookReceiver() as hook:
        settings = make_settings(tmp_path, **{
            "oncall": [contact("Dr A", 1, hook)], "triage.enabled": False, "alerts.poll_s": 0.1,
            "destinations": [{"name": "cloud", "kind": "dicomweb", "url": "http://127.0.0.1:9/dicom-web",
                              "auth_header": f"Authorization: {STOW_TOKEN}"}],
        })  # fmt: skip
        gw = build_gateway(settings)
        gw.start()
        try:
            body = {"type": "stroke.triage", "study_instance_uid": "1.2.3", "clinic": None, "result": None}
            gw.stroke.alerts.raise_alert(key="k1", type="stroke.triage", rule="r", study_uid="1.2.3", series_uid="1.2.3.4",
                                         clinic=None, message="test", body=body, requires_ack=False, tier=1)
            verify_standard_webhook(SECRET_1, hook.wait(1, 15)[0])  # signed with the decrypted secret
            with gw.sessions() as s:
                assert s.execute(select(AlertDelivery.secret)).scalars().all() == [None]
                stored = s.execute(select(OncallContact.webhook_secret)).scalar_one()
                config = s.execute(select(Destination.config).where(Destination.name == "cloud")).scalar_one()
            assert stored.startswith("enc:v1:") and SECRET_1 not in stored
            assert config["auth_header"].startswith("Authorization: enc:v1:")
            assert gw.router.registry.list()[0].config.auth_header == f"Authorization: {STOW_TOKEN}"
            raw = _raw_index(gw)
            for secret in (SECRET_1, SECRET_1.removeprefix("whsec_"), STOW_TOKEN, "stow-token-5f0c2a9e7d"):
                assert secret.encode() not in raw
            files = write_ct_series(tmp_path / "ct", n_images=2, rows=32, cols=32)
            assert len(stored_ok(run_storescu(files, "127.0.0.1", settings.dicom.port, CLINIC_AE, "TELERAD"))) == 2
            index = gw.settings.data_dir / "index.sqlite3"
            assert stat.S_IMODE(index.stat().st_mode) == 0o600
            stored_files = [p for p in gw.store.root.rglob("*.dcm")]
            assert stored_files and all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in stored_files)
            assert stat.S_IMODE(gw.store.root.stat().st_mode) & 0o007 == 0
        finally:
            gw.stop()


def test_a_changed_key_is_a_clear_error_and_env_references_are_read_when_used(monkeypatch):
    a = secretbox.SecretBox(secretbox.derive_key("one"))
    b = secretbox.SecretBox(secretbox.derive_key("two"))
    sealed = a.seal("whsec_x")
    assert a.open(sealed) == "whsec_x"
    with pytest.raises(secretbox.SecretError, match="changed since it was stored"):
        b.open(sealed, "webhook secret")
    assert a.seal("env:HOOK_SECRET") == "env:HOOK_SECRET"
    with pytest.raises(secretbox.SecretError, match="HOOK_SECRET is not set"):
        a.open("env:HOOK_SECRET")
    monkeypatch.setenv("HOOK_SECRET", "whsec_from_env")
    assert a.open("env:HOOK_SECRET") == "whsec_from_env"


class _Redirecting(BaseHTTPRequestHandler):
    hits: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        self.hits.append(("POST", self.path))
        self.send_response(302)
        self.send_header("Location", "/elsewhere")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        self.hits.append(("GET", self.path))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_redirected_webhook_is_a_failed_delivery_and_its_url_token_is_redacted():
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{port}/hooks/T0KEN-abc123?token=s3cr3t"
        with pytest.raises(ChannelError) as err:
            send_webhook(url, SECRET_1, "msg_1", b"{}", timeout_s=5)
        assert err.value.permanent and "302" in str(err.value) and "redirect" in str(err.value)
        assert "T0KEN" not in str(err.value) and "s3cr3t" not in str(err.value)
        assert f"http://127.0.0.1:{port}/..." in str(err.value)
        assert _Redirecting.hits == [("POST", "/hooks/T0KEN-abc123?token=s3cr3t")]  # no GET to the new location
        with pytest.raises(ChannelError) as err:
            send_webhook(f"http://127.0.0.1:{free_port()}/x/T0KEN", SECRET_1, "msg_2", b"{}", timeout_s=2)
        assert "unreachable" in str(err.value) and "T0KEN" not in str(err.value)
    finally:
        server.shutdown()
        server.server_close()


def test_smtp_login_needs_tls_unless_explicitly_allowed(monkeypatch):
    with SmtpReceiver() as smtp:
        plain = SmtpSettings(host="127.0.0.1", port=smtp.port, username="alerts", password="env:SMTP_PW")
        with pytest.raises(ChannelError, match="refusing to send the password without TLS") as err:
            send_email(plain, "dr@example.org", "s", "t", None, "x.png")
        assert err.value.permanent and smtp.messages == []
        allowed = plain.model_copy(update={"allow_login_without_tls": True})
        with pytest.raises(ChannelError, match="SMTP_PW is not set"):
            send_email(allowed, "dr@example.org", "s", "t", None, "x.png")
        monkeypatch.setenv("SMTP_PW", SMTP_PASSWORD)
        with pytest.raises(ChannelError) as err:  # now it tries: this test server offers no AUTH
            send_email(allowed, "dr@example.org", "s", "t", None, "x.png")
        assert "refusing" not in str(err.value) and SMTP_PASSWORD not in str(err.value)
    assert os.environ.get("SMTP_PW") == SMTP_PASSWORD


def test_before_settings_are_loaded_the_default_settings_key_is_used():
    """secretbox imports nothing of telerad.settings: the settings module hands in its defaults, and
    without them there is no key (a clear error, never a made-up key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELERAD_")}
    code = "\n".join([
        "import sys",
        "from telerad import secretbox",
        "try:",
        "    secretbox.seal('x')",
        "except secretbox.SecretError as exc:",
        "    print(exc)",
        "else:",
        "    sys.exit('sealed without a key')",
        "import telerad.settings",
        "box = secretbox.SecretBox(secretbox.derive_key(telerad.settings.DEFAULT_SECRET))",
        "assert box.open(secretbox.seal('whsec_x')) == 'whsec_x'",
    ])
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(root)}, cwd=root,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "load the settings first" in r.stdout
