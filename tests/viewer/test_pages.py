"""Pages render for their roles (cookie login), refuse others, and show what each role needs."""

from __future__ import annotations

import pytest

from tests.viewer.conftest import STUDY_A, STUDY_B, add_study


@pytest.mark.parametrize("user,path,needle", [
    ("rad", "/worklist", "Worklist"), ("rad", f"/studies/{STUDY_A}", "Report"), ("rad", "/stroke", "Stroke alerts"),
    ("stroke1", "/stroke", "Stroke alerts"), ("stroke1", f"/studies/{STUDY_A}", "Images"),
    ("tech-a", "/technician", "Clinic A"), ("admin1", "/admin", "Turnaround"), ("admin1", "/admin/users", "tech-b"),
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
    from pacs_gateway.index.models import Alert
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
