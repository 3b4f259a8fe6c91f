"""Delivery engine against DCMTK storescp: rules choose destinations, permanent rejection,
the CLI, route_instances for objects telerad creates, and the Redis / PostgreSQL queues."""

from __future__ import annotations

import json
import os
import uuid

import pydicom
import pytest
from pydicom.uid import MRImageStorage
from sqlalchemy import create_engine, select, text

from pacs_gateway.cli import deliveries as deliveries_cli
from pacs_gateway.cli import destination as destination_cli
from pacs_gateway.index.models import Delivery
from pacs_gateway.index.queries import get_study
from pacs_gateway.routing.config import DestinationConfig
from sample_dicom.synthetic import write_ct_series
from tests.peers import LOOPBACK, StorescpPeer, have_dcmtk, run_storescu, stored_ok
from tests.routing.conftest import dicom_destination, ledger_counts, wait_until

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="needs DCMTK")
PG_URL = os.environ.get("TELERAD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def push(gw, files) -> None:
    result = run_storescu(files, LOOPBACK, gw.settings.dicom.port, "MODALITY", "TELERAD", timeout=120)
    assert len(stored_ok(result)) == len(files), result.stderr[-2000:]


def sop_uids(paths) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}


def study_uid(files) -> str:
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def test_permanent_rejection_fails_the_rows_with_the_reason_and_retry_requeues(gateway_factory, tmp_path, capsys):
    files = write_ct_series(tmp_path / "src", 12, 64, 64, seed=3)
    with StorescpPeer(tmp_path / "mr-only", accepted_sop_classes=[MRImageStorage]) as mr_only:
        gw = gateway_factory(destinations=[dicom_destination("mr-archive", mr_only.port, mr_only.aet)])
        push(gw, files)
        wait_until(lambda: ledger_counts(gw).get("failed") == 12, timeout=30, what="12 failed rows")
        with gw.sessions() as s:
            rows = s.execute(select(Delivery.attempts, Delivery.last_error)).all()
            study = get_study(s, study_uid(files))
        assert {r.attempts for r in rows} == {1}, "a permanent refusal is not retried"
        assert all("no presentation context for SOP class CT Image Storage" in r.last_error for r in rows)
        [d] = study["deliveries"]
        assert d["state"] == "failed" and "CT Image Storage" in d["last_error"]
        assert mr_only.files() == []

        data = ["--data-dir", str(gw.settings.data_dir)]
        assert deliveries_cli.main(["--state", "failed", *data]) == 0
        out = capsys.readouterr().out
        assert "mr-archive" in out and "failed" in out and "CT Image Storage" in out and "deliveries retry" in out
        assert deliveries_cli.main(["--json", *data]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["series"][0]["counts"]["failed"] == 12 and len(listed["failed"]) == 12
        assert deliveries_cli.main(["retry", "--destination", "mr-archive", *data]) == 0
        assert "requeued 12 failed deliveries" in capsys.readouterr().out
        # the running gateway's sweep picks them up, and the destination refuses them again
        wait_until(lambda: _attempts(gw) == {1} and ledger_counts(gw).get("failed") == 12 and _retried(gw),
                   timeout=30, what="retried rows failed again")  # fmt: skip


def _attempts(gw) -> set[int]:
    with gw.sessions() as s:
        return set(s.execute(select(Delivery.attempts)).scalars())


def _retried(gw) -> bool:
    with gw.sessions() as s:
        return all(r.queued_at > r.created_at for r in s.execute(select(Delivery.queued_at, Delivery.created_at)))


def test_rules_choose_destinations_and_priorities(gateway_factory, tmp_path):
    head = write_ct_series(tmp_path / "head", 10, 64, 64, seed=4)
    abdomen = write_ct_series(tmp_path / "abd", 10, 64, 64, seed=5, body_part="ABDOMEN", series_description="ABDOMEN")
    with StorescpPeer(tmp_path / "lead") as lead, StorescpPeer(tmp_path / "archive") as archive:
        gw = gateway_factory(
            destinations=[
                dicom_destination("lead", lead.port, lead.aet, default=True),
                dicom_destination("archive", archive.port, archive.aet, default=False),
            ],
            **{"routing.rules": [
                {"name": "non-head to the archive", "match": {"kind": ["other", "xray"]}, "destinations": ["archive"]},
                {"name": "everything else", "destinations": ["lead", "archive"], "priority": "stroke"},
            ]},
        )  # fmt: skip
        push(gw, head)
        push(gw, abdomen)
        wait_until(lambda: ledger_counts(gw).get("delivered") == 30, timeout=30, what="30 delivered rows")
        assert sop_uids(lead.files()) == sop_uids(head)
        assert sop_uids(archive.files()) == sop_uids(head) | sop_uids(abdomen)
        with gw.sessions() as s:
            rules = dict(s.execute(select(Delivery.rule, Delivery.lane).distinct()).all())
        assert rules == {"non-head to the archive": "routine", "everything else": "stroke"}


def test_route_instances_routes_objects_created_later_through_the_same_rules(gateway_factory, tmp_path):
    files = write_ct_series(tmp_path / "src", 6, 64, 64, seed=6)
    with StorescpPeer(tmp_path / "lead") as lead:
        gw = gateway_factory()  # no destination yet: nothing is routed
        push(gw, files)
        wait_until(lambda: _series_complete(gw), timeout=20, what="series complete")
        assert ledger_counts(gw) == {}
        gw.router.registry.add(DestinationConfig(name="lead", kind="dicom", host=LOOPBACK, port=lead.port,
                                                 ae_title=lead.aet, default=True))  # fmt: skip
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        with gw.engine.begin() as conn:
            routed = gw.router.route_instances(
                conn, study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
                sop_uids=[str(ds.SOPInstanceUID)], kind="ctp",
            )  # fmt: skip
        assert routed.rows == 1 and routed.route.priority == "stroke"
        gw.router.dispatch_pending()
        wait_until(lambda: ledger_counts(gw).get("delivered") == 1, timeout=20, what="the routed instance delivered")
        assert sop_uids(lead.files()) == {str(ds.SOPInstanceUID)}
        with gw.engine.begin() as conn:  # routing again is a no-op: one row per (instance, destination)
            assert gw.router.route_instances(conn, study_uid=str(ds.StudyInstanceUID),
                                             series_uid=str(ds.SeriesInstanceUID)).rows == 5  # fmt: skip
        wait_until(lambda: ledger_counts(gw).get("delivered") == 6, timeout=20, what="the rest delivered by the sweep")


def _series_complete(gw) -> bool:
    from pacs_gateway.index.models import Series

    with gw.sessions() as s:
        return s.execute(select(Series.state)).scalar_one_or_none() == "complete"


def test_destination_cli_add_list_remove(tmp_path, capsys):
    data = ["--data-dir", str(tmp_path / "var")]
    assert destination_cli.main(["add", "lead", "--kind", "dicom", "--host", "10.0.0.5", "--port", "104",
                                 "--ae-title", "LEADPACS", "--default", "--compression", "jpeg-ls-lossless", *data]) == 0  # fmt: skip
    assert destination_cli.main(["add", "web", "--kind", "dicomweb", "--url", "https://pacs.example/dicom-web",
                                 "--auth-header", "Authorization: Bearer t0ken", *data]) == 0  # fmt: skip
    capsys.readouterr()
    assert destination_cli.main(["add", "lead", "--kind", "dicom", "--host", "h", "--port", "1", "--ae-title", "A", *data]) == 2
    assert "already exists" in capsys.readouterr().err
    assert destination_cli.main(["add", "x", "--kind", "dicom", "--host", "h", *data]) == 2
    assert "needs port, ae_title" in capsys.readouterr().err
    assert destination_cli.main(["add", "x", "--kind", "dicom", "--host", "h", "--port", "0", "--ae-title", "A", *data]) == 2
    assert "--port" in capsys.readouterr().err
    assert destination_cli.main(["list", "--json", *data]) == 0
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed["lead"]["default"] is True and listed["lead"]["compression"] == "jpeg-ls-lossless"
    assert listed["web"]["auth_header"] == "Authorization: ***", "secrets are never printed"
    assert destination_cli.main(["list", *data]) == 0
    assert "LEADPACS@10.0.0.5:104" in capsys.readouterr().out
    assert destination_cli.main(["remove", "web", *data]) == 0
    assert destination_cli.main(["remove", "web", *data]) == 2
    assert "no destination named 'web'" in capsys.readouterr().err


@pytest.fixture
def pg_database():
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"telerad_route_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL at {PG_URL} is needed for the scaled-out routing test: {exc}")
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.parametrize("backend", ["redis", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_scaled_out_queue_backends_deliver(gateway_factory, tmp_path, request, backend):
    files = write_ct_series(tmp_path / "src", 20, 64, 64, seed=8)
    overrides = {"queue.name": f"t{uuid.uuid4().hex[:8]}"}
    if backend == "redis":
        import redis

        try:
            redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
        except redis.RedisError as exc:
            pytest.fail(f"Redis on 127.0.0.1:6379 is needed for the PriorityRedisHuey test: {exc}")
        overrides["queue.url"] = "redis://127.0.0.1:6379/0"
    else:
        url = request.getfixturevalue("pg_database")
        overrides["queue.url"] = url  # PostgresHuey
        overrides["database.url"] = url  # and the ledger on PostgreSQL
    with StorescpPeer(tmp_path / "lead") as lead:
        gw = gateway_factory(destinations=[dicom_destination("lead", lead.port, lead.aet)], **overrides)
        kinds = {type(h).__name__ for h in gw.router.queue.hueys.values()}
        assert kinds == {"redis": {"PriorityRedisHuey"}, "postgresql": {"PostgresHuey"}}[backend]
        push(gw, files)
        wait_until(lambda: ledger_counts(gw).get("delivered") == 20, timeout=40, what="20 delivered rows")
        assert sop_uids(lead.files()) == sop_uids(files)


def test_api_shows_delivery_state_and_problem_json_for_unknown_study(gateway_factory, tmp_path):
    from fastapi.testclient import TestClient

    from viewer.main import create_app

    files = write_ct_series(tmp_path / "src", 5, 64, 64, seed=10)
    with StorescpPeer(tmp_path / "lead") as lead:
        gw = gateway_factory(destinations=[dicom_destination("lead", lead.port, lead.aet)])
        push(gw, files)
        wait_until(lambda: ledger_counts(gw).get("delivered") == 5, timeout=30, what="5 delivered rows")
        client = TestClient(create_app(gw.sessions, settings=gw.settings))
        body = client.get(f"/api/studies/{study_uid(files)}").json()
        [d] = body["deliveries"]
        assert d["destination"] == "lead" and d["kind"] == "dicom" and d["state"] == "delivered"
        assert d["counts"] == {"queued": 0, "sending": 0, "delivered": 5, "failed": 0}
        assert d["delivered_at"] and d["last_error"] is None
        missing = client.get("/api/studies/1.2.3.4")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("sender", ["ul", "pynetdicom"])
def test_each_sender_sends_compressed_and_reports_rejection(gateway_factory, tmp_path, sender):
    """Both DIMSE senders behind the same interface: ``ul`` (the default, telerad's blocking-socket
    requestor) and ``pynetdicom`` (used for TLS destinations)."""
    files = write_ct_series(tmp_path / "src", 15, 64, 64, seed=12)
    with StorescpPeer(tmp_path / "lead") as lead, StorescpPeer(tmp_path / "mr", accepted_sop_classes=[MRImageStorage]) as mr:
        gw = gateway_factory(
            destinations=[
                dicom_destination("lead", lead.port, lead.aet, compression="deflate"),
                dicom_destination("mr-only", mr.port, mr.aet),
            ],
            **{"routing.sender": sender},
        )
        push(gw, files)
        wait_until(lambda: ledger_counts(gw) == {"delivered": 15, "failed": 15}, timeout=30, what="15 + 15 outcomes")
        assert sop_uids(lead.files()) == sop_uids(files)
        assert {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in lead.files()} == {
            "1.2.840.10008.1.2.1.99"
        }
        with gw.sessions() as s:
            errors = set(s.execute(select(Delivery.last_error).where(Delivery.state == "failed")).scalars())
        assert len(errors) == 1 and "no presentation context for SOP class CT Image Storage" in errors.pop()
