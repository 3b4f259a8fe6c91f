"""The index on SQLite and on PostgreSQL: migrations, writer, queries, events, restart."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, inspect, text

from pacs_gateway.index.db import open_index
from telerad.app import build_gateway, index_metadata
from sample_dicom.synthetic import write_ct_series
from tests.gateway.conftest import CLINIC_AE, make_settings, wait_until
from tests.gateway.helpers import events, instance_count, series_row
from tests.peers import run_storescu, stored_ok

PG_URL = os.environ.get("TELERAD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.sqlite3'}"
        return
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"telerad_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - report why PostgreSQL tests cannot run
        pytest.fail(f"PostgreSQL at {PG_URL} is needed for the scaled-out index tests: {exc}")
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_migrations_create_the_model_schema(db_url):
    """The one alembic history creates exactly the tables the packages declare (gateway, stroke, viewer)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    metadata = index_metadata()
    assert {"clinics", "triage_runs", "alerts", "users"} <= set(metadata.tables)  # each package's tables
    engine, _ = open_index(db_url)
    insp = inspect(engine)
    assert set(metadata.tables) == set(insp.get_table_names()) - {"alembic_version"}
    for name, table in metadata.tables.items():
        assert {c["name"] for c in insp.get_columns(name)} == set(table.columns.keys()), name
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
    open_index(db_url)  # idempotent
    engine.dispose()


def test_receive_index_and_complete(db_url, tmp_path):
    gw = build_gateway(make_settings(tmp_path, **{"database.url": db_url}))
    gw.start()
    got = []
    gw.bus.subscribe("series.complete", got.append)
    try:
        files = write_ct_series(tmp_path / "ct", n_images=12, rows=64, cols=64)
        assert len(stored_ok(run_storescu(files, "127.0.0.1", gw.settings.dicom.port, CLINIC_AE, "TELERAD"))) == 12
        assert instance_count(gw) == 12
        wait_until(lambda: len(got) == 1)
        assert got[0]["payload"]["instance_count"] == 12
        from pacs_gateway.index import queries

        with gw.sessions() as s:
            (study,) = queries.list_studies(s)
            assert study["clinic"] == "Test Clinic" and study["instance_count"] == 12
            assert queries.get_study(s, study["study_instance_uid"])["series"][0]["state"] == "complete"
    finally:
        gw.stop()


def test_completion_survives_a_restart(db_url, tmp_path):
    """A series still 'receiving' when the gateway stops completes after restart, once."""
    settings = make_settings(tmp_path, **{"database.url": db_url, "dicom.quiet_period_s": 3600})
    gw = build_gateway(settings)
    gw.start()
    files = write_ct_series(tmp_path / "ct", n_images=4, rows=64, cols=64)
    assert len(stored_ok(run_storescu(files, "127.0.0.1", settings.dicom.port, CLINIC_AE, "TELERAD"))) == 4
    gw.stop()
    from pydicom import dcmread

    uid = dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    gw2 = build_gateway(make_settings(tmp_path, **{"database.url": db_url, "dicom.quiet_period_s": 3600}))
    try:
        assert series_row(gw2, uid).state == "receiving"
        later = datetime.now(timezone.utc) + timedelta(hours=2)
        assert gw2.writer.complete_quiet_series(now=later) == [uid]
        assert gw2.writer.complete_quiet_series(now=later) == []
        assert [e.series_uid for e in events(gw2, "series.complete")] == [uid]
        seen = []
        gw2.bus.subscribe("series.complete", seen.append)
        assert gw2.bus.dispatch_pending() == 1 and len(seen) == 1
        assert gw2.bus.dispatch_pending() == 0
    finally:
        gw2.engine.dispose()


def test_index_failure_answers_out_of_resources_and_leaves_no_file(db_url, tmp_path):
    gw = build_gateway(make_settings(tmp_path, **{"database.url": db_url}))
    gw.start()
    try:
        files = write_ct_series(tmp_path / "ct", n_images=2, rows=64, cols=64)
        with gw.engine.begin() as c:
            c.execute(text("ALTER TABLE instances RENAME TO instances_away"))
        from pynetdicom import AE
        from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

        ae = AE(ae_title=CLINIC_AE)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", gw.settings.dicom.port, ae_title="TELERAD")
        assert assoc.send_c_store(files[0]).Status == 0xA701
        assert not list(gw.store.root.rglob("*.dcm")) and not list(gw.store.tmp.iterdir())
        with gw.engine.begin() as c:
            c.execute(text("ALTER TABLE instances_away RENAME TO instances"))
        assert assoc.send_c_store(files[1]).Status == 0
        assoc.release()
        assert instance_count(gw) == 1
    finally:
        gw.stop()


def test_write_failure_answers_out_of_resources(tmp_path):
    gw = build_gateway(make_settings(tmp_path))
    gw.start()
    try:
        import shutil

        shutil.rmtree(gw.store.tmp)
        gw.store.tmp.write_text("not a folder")  # every temp-file write now fails
        files = write_ct_series(tmp_path / "ct", n_images=1, rows=64, cols=64)
        from pynetdicom import AE
        from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

        ae = AE(ae_title=CLINIC_AE)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", gw.settings.dicom.port, ae_title="TELERAD")
        assert assoc.send_c_store(files[0]).Status == 0xA700
        assoc.release()
        assert instance_count(gw) == 0 and not list(gw.store.root.rglob("*.dcm"))
    finally:
        gw.stop()
