"""Pages render for their roles (cookie login), refuse others, and show what each role needs."""

from __future__ import annotations

import pytest

from tests.viewer.conftest import STUDY_A, STUDY_B, add_study


@pytest.mark.parametrize("user,path,needle", [
    ("rad", "/worklist", "Worklist"), ("rad", f"/studies/{STUDY_A}", "Report"), ("rad", "/stroke", "Stroke alerts"),
    ("stroke1", "/stroke", "Stroke alerts"), ("stroke1", f"/studies/{STUDY_A}", "Images"),
    ("tech-a", "/technician", "Clinic A"), ("tech-a", f"/studies/{STUDY_A}", "Images"),
    ("admin1", "/admin", "Turnaround"), ("admin1", "/admin/users", "tech-b"),
    ("admin1", "/admin/audit", "login"), ("admin1", "/worklist", "Worklist"), ("admin1", "/technician", "Send images"),
])
def test_page_renders_for_its_role(env, user, path, needle):
    c = env.client(user, cookie=True)
    r = c.get(path, headers={"accept": "text/html"})
    assert r.status_code == 200, r.text[:500]
    assert needle in r.text and "text/html" in r.headers["content-type"]


@pytest.mark.parametrize("user,path", [("tech-a", "/worklist"), ("stroke1", "/worklist"), ("tech-a", "/stroke"),
                                       ("rad", "/admin"), ("rad", "/technician"), ("tech-a", f"/studies/{STUDY_B}")])
def test_page_refuses_other_roles_with_403(env, user, path):
    r = env.client(user, cookie=True).get(path, headers={"accept": "text/html"})
    assert r.status_code == 403 and "Forbidden" in r.text


def test_worklist_orders_stroke_alerts_first_then_priority_then_waiting(env):
    from stroke.models import Alert
    from telerad.clock import utcnow

    add_study(env.sessions, "1.2.3.100", "Clinic B", kind="chest_xr")
    add_study(env.sessions, "1.2.3.101", "Clinic B", kind="ctp")
    with env.sessions.begin() as s:
        s.add(Alert(key="k1", type="stroke.triage", study_uid="1.2.3.101", clinic="Clinic B", message="m", body={},
                    state="sent", tier=1, requires_ack=True, created_at=utcnow()))
    rows = env.client("rad").get("/api/worklist").json()
    order = [r["study_instance_uid"] for r in rows]
    assert order[0] == "1.2.3.101" and rows[0]["priority"] == "stroke"
    assert [r["priority"] for r in rows] == ["stroke", "urgent", "urgent", "routine"]
    assert order.index(STUDY_A) < order.index(STUDY_B)  # the older one waits longer
    page = env.client("rad", cookie=True).get("/worklist").text
    assert page.index("1.2.3.101") < page.index(STUDY_A) < page.index("1.2.3.100")


def test_a_superseded_alert_says_so_and_offers_no_acknowledge_button(env):
    from stroke.models import Alert, AlertStep
    from telerad.clock import utcnow

    with env.sessions.begin() as s:
        s.add(Alert(key="k-old", type="stroke.triage_failed", study_uid=STUDY_A, clinic="Clinic A", message="partial",
                    body={}, state="superseded", tier=1, requires_ack=True, created_at=utcnow()))
        s.add(Alert(key="k-new", type="stroke.triage", study_uid=STUDY_A, clinic="Clinic A",
                    message="UPDATED, replaces alert #1 (a later analysis of the study): full", body={"supersedes": [1]},
                    state="sent", tier=1, requires_ack=True, created_at=utcnow()))
    page = env.client("stroke1", cookie=True).get("/stroke", headers={"accept": "text/html"}).text
    cards = {c.split('data-alert="')[1].split('"')[0]: c for c in page.split('<div class="card alert ')[1:]}
    assert cards["1"].startswith("superseded") and "Superseded by a later analysis of this study" in cards["1"]
    assert "data-ack=" not in cards["1"] and 'data-ack="2"' in cards["2"]
    row = next(r for r in env.client("rad").get("/api/worklist").json() if r["study_instance_uid"] == STUDY_A)
    assert row["alert"]["id"] == 2 and row["alert"]["state"] == "sent"
    assert "gave the same result" not in page
    with env.sessions.begin() as s:  # a third analysis said the same as alert 2
        s.add(AlertStep(alert_id=2, step="confirmed", tier=1, at=utcnow(), detail="same result"))
    page = env.client("stroke1", cookie=True).get("/stroke/rows", headers={"accept": "text/html"}).text
    cards = {c.split('data-alert="')[1].split('"')[0]: c for c in page.split('<div class="card alert ')[1:]}
    assert "A later analysis of this study gave the same result" in cards["2"] and 'data-ack="2"' in cards["2"]
    assert "gave the same result" not in cards["1"]


def test_claims_show_who_reads_and_only_an_admin_breaks_them(env):
    rad, rad2, admin = env.client("rad"), env.client("rad2"), env.client("admin1")
    assert rad.post(f"/api/studies/{STUDY_A}/claim").json()["claimed_by"] == "rad"
    taken = rad2.post(f"/api/studies/{STUDY_A}/claim")
    assert taken.status_code == 409 and "'rad' is reading" in taken.json()["detail"]
    assert rad2.delete(f"/api/studies/{STUDY_A}/claim").status_code == 403
    row = next(r for r in rad2.get("/api/worklist").json() if r["study_instance_uid"] == STUDY_A)
    assert row["claimed_by"] == "rad" and row["status"] == "reading"
    assert admin.delete(f"/api/studies/{STUDY_A}/claim?force=true").json()["claimed_by"] is None
    assert rad2.post(f"/api/studies/{STUDY_A}/claim").status_code == 200
    log = admin.get("/api/audit", params={"action": "study.claim_broken"}).json()
    assert log[0]["user"] == "admin1" and "rad" in log[0]["detail"]


def _idle_claim(env, study_uid: str, minutes: float) -> None:
    from datetime import timedelta

    from telerad.clock import utcnow
    from viewer.models import StudyClaim

    with env.sessions.begin() as s:
        s.get(StudyClaim, study_uid).claimed_at = utcnow() - timedelta(minutes=minutes)


def _idle_minutes(env, study_uid: str) -> float:
    from telerad.clock import as_utc, utcnow
    from viewer.models import StudyClaim

    with env.sessions() as s:
        return (utcnow() - as_utc(s.get(StudyClaim, study_uid).claimed_at)).total_seconds() / 60.0


def test_an_idle_claim_lapses_and_the_next_radiologist_takes_it(env):
    """A radiologist who claims a study and leaves blocks it for web.claim_idle_min (30) minutes, not for ever."""
    rad, rad2, admin = env.client("rad"), env.client("rad2"), env.client("admin1")
    assert env.settings.web.claim_idle_min == 30
    assert rad.post(f"/api/studies/{STUDY_A}/claim").status_code == 200
    _idle_claim(env, STUDY_A, 29)
    taken = rad2.post(f"/api/studies/{STUDY_A}/claim")
    assert taken.status_code == 409 and "lapses after 30 minutes without activity" in taken.json()["detail"]

    _idle_claim(env, STUDY_A, 31)
    row = next(r for r in rad2.get("/api/worklist").json() if r["study_instance_uid"] == STUDY_A)
    assert row["claimed_by"] is None and row["status"] != "reading"
    page = env.client("rad2", cookie=True).get(f"/studies/{STUDY_A}", headers={"accept": "text/html"}).text
    assert "Nobody is reading this study." in page
    assert rad.delete(f"/api/studies/{STUDY_A}/claim").json()["claimed_by"] is None  # its holder may still release
    assert rad.post(f"/api/studies/{STUDY_A}/claim").status_code == 200

    _idle_claim(env, STUDY_A, 31)
    assert rad2.post(f"/api/studies/{STUDY_A}/claim").json()["claimed_by"] == "rad2"
    log = admin.get("/api/audit", params={"action": "study.claim_lapsed"}).json()
    assert len(log) == 1 and log[0]["user"] == "rad2" and "claim of 'rad' lapsed after 31 minutes" in log[0]["detail"]
    late = rad.put(f"/api/reports/{STUDY_A}", json={"template": "ct_head_stroke", "body": "x"})
    assert late.status_code == 409 and "'rad2' is reading" in late.json()["detail"]

    # the holder's work renews the claim: a draft saved after 29 idle minutes starts the 30 minutes again
    _idle_claim(env, STUDY_A, 29)
    saved = rad2.put(f"/api/reports/{STUDY_A}", json={"template": "ct_head_stroke", "body": "FINDINGS:\nnone"})
    assert saved.status_code == 200
    assert _idle_minutes(env, STUDY_A) < 1
    assert rad2.post(f"/api/studies/{STUDY_A}/claim").status_code == 200  # claiming again renews it too
    _idle_claim(env, STUDY_A, 29)
    assert rad2.post(f"/api/studies/{STUDY_A}/claim").status_code == 200 and _idle_minutes(env, STUDY_A) < 1


def test_the_live_worklist_notices_a_claim_lapsing(env):
    from viewer.pages.worklist import fingerprint

    assert env.client("rad").post(f"/api/studies/{STUDY_A}/claim").status_code == 200
    held = fingerprint(env.sessions, 30)
    assert fingerprint(env.sessions, 30) == held
    _idle_claim(env, STUDY_A, 31)
    assert fingerprint(env.sessions, 30) != held


def test_drafts_need_the_claim_and_technicians_never_see_drafts(env):
    rad, rad2, tech = env.client("rad"), env.client("rad2"), env.client("tech-a")
    r = rad.put(f"/api/reports/{STUDY_A}", json={"template": "ct_head_stroke", "body": "FINDINGS:\nnone", "state": "draft"})
    assert r.status_code == 200 and r.json()["state"] == "draft"
    assert rad2.put(f"/api/reports/{STUDY_A}", json={"template": "ct_head_stroke", "body": "x"}).status_code == 409
    assert tech.get(f"/api/reports/{STUDY_A}").status_code == 404
    bad = rad.put(f"/api/reports/{STUDY_A}", json={"template": "nope", "body": "x"})
    assert bad.status_code == 422 and "template" in bad.json()["detail"]
    assert rad.put(f"/api/reports/{STUDY_A}", json={"template": "ct_head_stroke", "body": " "}).status_code == 422
    assert env.client("admin1").post(f"/api/reports/{STUDY_A}/sign",
                                     json={"template": "ct_head_stroke", "body": "x"}).status_code == 403


def test_metrics_are_prometheus_text_on_loopback(env):
    r = env.client(host="127.0.0.1").get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE telerad_deliveries gauge" in r.text and 'telerad_studies 2' in r.text
    assert env.client(host="192.0.2.7").get("/metrics").status_code == 401
    dash = env.client("admin1").get("/api/admin/dashboard").json()
    assert dash["studies_total"] == 2 and sum(dash["studies_per_day"].values()) == 2


def test_study_page_lists_prior_studies_of_the_same_patient(env):
    page = env.client("rad", cookie=True).get(f"/studies/{STUDY_A}").text
    assert f'href="/studies/{STUDY_B}"' in page and "Automated result" not in page  # no triage run: no numbers


def test_admin_adds_a_user_from_the_page_with_the_csrf_token(env):
    import re

    c = env.client("admin1", cookie=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/admin/users").text).group(1)
    form = {"action": "add", "name": "tech-new", "role": "technician", "clinic": "Clinic B", "password": "long enough pw"}
    assert c.post("/admin/users", data=form).status_code == 403  # no CSRF token
    done = c.post("/admin/users", data={**form, "csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"] == "/admin/users?done=add"
    users = {u["name"]: u for u in env.client("admin1").get("/api/users").json()}
    assert users["tech-new"]["clinics"] == ["Clinic B"]
    bad = c.post("/admin/users", data={**form, "name": "tech-x", "clinic": "", "csrf_token": csrf})
    assert "error=" in bad.headers["location"] and "clinic" in bad.headers["location"]


def test_worklist_filters_from_the_form(env):
    c = env.client("rad", cookie=True)
    everything = c.get("/worklist/rows?clinic=&priority=&status=open")
    assert everything.status_code == 200 and STUDY_A in everything.text and STUDY_B in everything.text
    only_b = c.get("/worklist?clinic=Clinic+B&priority=&status=all").text
    assert STUDY_B in only_b and f'data-study="{STUDY_A}"' not in only_b
    assert c.get("/worklist?priority=routine").text.count("data-study=") == 0  # both are urgent head CTs
    assert c.get("/worklist?priority=bogus").status_code == 422


def test_admin_registers_and_removes_a_clinic_from_the_dashboard(env):
    import re

    c = env.client("admin1", cookie=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/admin").text).group(1)
    add = {"action": "add", "name": "Clinic C", "ae_title": "CLINIC_C", "host": "127.0.0.1", "port": "104",
           "csrf_token": csrf}
    assert c.post("/admin/clinics", data=add).headers["location"] == "/admin?done=clinic.add"
    assert "CLINIC_C" in c.get("/admin").text
    dup = c.post("/admin/clinics", data={**add, "name": "Clinic D"})
    assert "error=" in dup.headers["location"] and "already registered" in c.get(dup.headers["location"]).text
    bad = c.post("/admin/clinics", data={**add, "name": "Clinic E", "ae_title": "BAD\\TITLE"})
    assert "error=" in bad.headers["location"]
    assert c.post("/admin/clinics", data={"action": "remove", "name": "Clinic C", "csrf_token": csrf}).status_code == 303
    assert "CLINIC_C" not in c.get("/admin").text
    assert env.client("rad", cookie=True).post("/admin/clinics", data=add).status_code == 403
