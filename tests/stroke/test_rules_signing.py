"""Alert rules, Standard Webhooks signing, settings validation and the oncall CLI (fast, no network)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from stroke import channels as signing
from stroke import rules
from stroke.config import DEFAULT_RULES, AlertRule
from telerad.errors import ConfigError
from telerad.settings import load_settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_matches_the_standard_webhooks_test_vector():
    # the example published with the Standard Webhooks specification
    sig = signing.sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_headers_verify_and_tampering_is_detected():
    body = json.dumps({"type": "stroke.triage"}).encode()
    h = signing.signed_headers(SECRET, "msg_1", body)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    own = base64.b64encode(hmac.new(key, f"msg_1.{h['webhook-timestamp']}.".encode() + body, hashlib.sha256).digest())
    assert h["webhook-signature"] == "v1," + own.decode()
    assert signing.verify(SECRET, "msg_1", h["webhook-timestamp"], h["webhook-signature"], body)
    assert not signing.verify(SECRET, "msg_1", h["webhook-timestamp"], h["webhook-signature"], body + b" ")
    assert not signing.verify(SECRET, "msg_2", h["webhook-timestamp"], h["webhook-signature"], body)
    old = str(int(h["webhook-timestamp"]) - 3600)
    assert not signing.verify(SECRET, "msg_1", old, signing.sign(SECRET, "msg_1", int(old), body), body)


def _doc(core, tmax6, status="ok", reliable=True, warnings=()):
    return {"status": status, "core_ml": core, "tmax6_ml": tmax6, "tmax10_ml": 0.0, "mismatch_ml": None,
            "algorithm": {"name": "telerad-ctp", "version": "1.0.0"},
            "quality": {"reliable": reliable, "warnings": list(warnings)}}


@pytest.mark.parametrize(("core", "tmax6", "fires"), [
    (0.0, 14.9, False), (0.0, 15.0, True), (0.99, 0.0, False), (1.0, 0.0, True), (30.0, 120.0, True),
])
def test_default_rule_thresholds(core, tmax6, fires):
    doc = _doc(core, tmax6)
    assert rules.outcome(doc) == "triage"
    rule = rules.decide(DEFAULT_RULES, "triage", doc)
    assert (rule is not None) is fires


def test_every_failed_or_unreliable_triage_alerts_and_says_read_manually():
    failed = _doc(None, None, status="failed", reliable=False,
                  warnings=[{"code": "no_aif", "severity": "fatal", "message": "no contrast bolus reached the head."}])
    unreliable = _doc(0.0, 3.0, reliable=False,
                      warnings=[{"code": "motion", "severity": "warning", "message": "motion of 6 mm."}])
    for doc in (failed, unreliable, {"status": "rejected", "error": "only 8 time points."}):
        assert rules.outcome(doc) == "triage_failed"
        assert rules.decide(DEFAULT_RULES, "triage_failed", doc).name == "triage failed"
    text = rules.message("stroke.triage_failed", failed, clinic="Clinic A")
    assert "Automated perfusion analysis failed from Clinic A: no contrast bolus reached the head; read manually" in text
    assert "telerad-ctp 1.0.0" in text and rules.DISCLAIMER in text
    assert "unreliable" in rules.message("stroke.triage_failed", unreliable, clinic=None)


def test_result_message_names_version_and_warnings():
    doc = _doc(12.3, 80.0, warnings=[{"code": "partial_coverage", "severity": "info", "message": "partial."}])
    text = rules.message("stroke.triage", doc, clinic=None)
    assert "core (rCBF<30%) 12.3 mL" in text and "Tmax>6s 80.0 mL" in text
    assert "telerad-ctp 1.0.0" in text and "Quality warnings: info: partial." in text and rules.DISCLAIMER in text


def test_rules_are_validated_with_the_field_named(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[alerts.rules]]\nname = "x"\non = "triage"\nany = [{metric = "volume", value = 1}]\n')
    with pytest.raises(ConfigError, match=r"alerts\.rules\.0\.any\.0\.metric"):
        load_settings(cfg)
    cfg.write_text('[[oncall]]\nname = "Dr X"\ntier = 1\nwebhook = "http://h/x"\nwebhook_secret = "abc"\n')
    with pytest.raises(ConfigError, match=r"oncall\.0\.webhook_secret.*whsec_"):
        load_settings(cfg)
    cfg.write_text('[[alerts.rules]]\nname = "big core"\non = "triage"\nany = [{metric = "core_ml", op = ">", value = 50}]\n')
    s = load_settings(cfg)
    assert s.alerts.rules == [AlertRule(name="big core", on="triage", any=[{"metric": "core_ml", "op": ">", "value": 50}])]
    assert rules.decide(s.alerts.rules, "triage", _doc(40.0, 200.0)) is None
    assert rules.decide(s.alerts.rules, "triage_failed", _doc(None, None, status="failed")) is None


def test_oncall_cli(tmp_path, capsys):
    from stroke.cli.oncall import main

    d = ["--data-dir", str(tmp_path / "var")]
    assert main(["add", "Dr Li", "--tier", "1", "--webhook", "http://127.0.0.1:9/h", "--webhook-secret", SECRET, *d]) == 0
    assert main(["add", "Dr Wang", "--tier", "2", "--email", "wang@example.org", *d]) == 0
    assert main(["add", "Dr Li", "--tier", "3", "--email", "li@example.org", *d]) == 2
    assert "already on the roster" in capsys.readouterr().err
    assert main(["add", "Dr Z", "--tier", "1", "--webhook", "http://127.0.0.1:9/h", *d]) == 2
    assert "webhook and webhook_secret must be given together" in capsys.readouterr().err
    assert main(["add", "Dr Z", "--tier", "1", "--email", "nobody", *d]) == 2
    assert "--email: 'nobody' is not an e-mail address" in capsys.readouterr().err
    assert main(["list", "--json", *d]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["tier"], c["name"]) for c in listed] == [(1, "Dr Li"), (2, "Dr Wang")]
    assert SECRET not in json.dumps(listed)
    assert main(["remove", "Dr Li", *d]) == 0 and main(["remove", "Dr Li", *d]) == 2
    assert "no contact named 'Dr Li'" in capsys.readouterr().err


def test_an_updated_alerts_email_subject_says_so():
    from stroke.delivery import email_subject

    assert email_subject("stroke.triage", "Township A") == "[telerad] Stroke CT perfusion result (Township A)"
    assert email_subject("stroke.triage", "Township A", updated=True) == \
        "[telerad] UPDATED: Stroke CT perfusion result (Township A)"
    assert email_subject("stroke.incoming", None) == "[telerad] Incoming stroke imaging"
