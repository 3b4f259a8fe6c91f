"""The object store interface: local files and S3 (moto in server mode on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import pytest

from pacs_gateway.errors import StoreError
from pacs_gateway.objectstore import LocalStore, open_store
from pacs_gateway.objectstore.s3 import S3Store
from telerad.app import build_gateway
from pacs_gateway.store import process_tag
from sample_dicom.synthetic import write_ct_series
from telerad.settings import load_settings
from tests.gateway.conftest import CLINIC_AE, make_settings
from tests.gateway.helpers import dataset_bytes
from tests.peers import run_storescu, stored_ok


def _s3(moto, bucket, tmp_path, **kw) -> S3Store:
    return S3Store(tmp_path / "cache", bucket=bucket, endpoint_url=moto.url, access_key_id="testing",
                   secret_access_key="testing", create_bucket=True, **kw)


def _tmpfile(store, data: bytes):
    p = store.tmp / f"{os.urandom(4).hex()}.part"
    p.write_bytes(data)
    return p


def test_s3_place_is_durable_before_sync_returns_and_keys_are_unique(moto, bucket, tmp_path):
    store = _s3(moto, bucket, tmp_path, prefix="site-a")
    a = store.place(_tmpfile(store, b"first"), "1.2/1.2.3/1.2.3.4.dcm", set())
    b = store.place(_tmpfile(store, b"second"), "1.2/1.2.3/1.2.3.4.dcm", set())
    store.sync_files([])
    assert a != b and a.startswith("1.2/1.2.3/1.2.3.4.") and a.endswith(".dcm")
    client = moto.client()
    assert client.get_object(Bucket=bucket, Key=f"site-a/{a}")["Body"].read() == b"first"
    assert client.get_object(Bucket=bucket, Key=f"site-a/{b}")["Body"].read() == b"second"
    assert not list(store.tmp.iterdir()), "uploaded temp files are moved into the cache"
    # a second process with an empty cache reads them from S3
    other = _s3(moto, bucket, tmp_path / "other", prefix="site-a")
    assert not other.path(a).exists()
    other.fetch([a, other.path(b)])
    assert other.path(a).read_bytes() == b"first" and other.read(b) == b"second"
    assert other.same_bytes(_tmpfile(other, b"first"), a) and not other.same_bytes(_tmpfile(other, b"x"), a)
    other.fetch(["1.2/1.2.3/missing.dcm"])  # a missing object stays missing (readers report it)
    assert not other.path("1.2/1.2.3/missing.dcm").exists()
    store.close()
    other.close()


def test_s3_failed_put_raises_store_error_and_leaves_no_cached_copy(moto, bucket, tmp_path):
    store = _s3(moto, bucket, tmp_path)
    moto.client().delete_bucket(Bucket=bucket)  # every PUT now fails (NoSuchBucket)
    rel = store.place(_tmpfile(store, b"data"), "s/r/i.dcm", set())
    with pytest.raises(StoreError, match="cannot store in s3://"):
        store.sync_files([store.path(rel)])
    assert not store.path(rel).exists()
    # a PUT left over from a batch that failed earlier never fails the next batch
    store.place(_tmpfile(store, b"data"), "s/r/j.dcm", set())
    store.sync_files([])
    store.close()


def test_s3_settings_errors_name_the_setting(moto, tmp_path):
    settings = load_settings(None, data_dir=str(tmp_path), **{"store.kind": "s3", "store.s3.bucket": "no-such-bucket-x",
                                                             "store.s3.endpoint_url": moto.url,
                                                             "store.s3.access_key_id": "testing",
                                                             "store.s3.secret_access_key": "testing"})
    with pytest.raises(StoreError, match="setting 'store.s3.bucket': bucket 'no-such-bucket-x' does not exist"):
        open_store(settings)
    from telerad.errors import ConfigError

    with pytest.raises(ConfigError, match="store.kind = 's3' needs a \\[store.s3\\] table"):
        load_settings(None, **{"store.kind": "s3"})
    assert isinstance(open_store(load_settings(None, data_dir=str(tmp_path))), LocalStore)


def test_gateway_on_s3_answers_success_only_for_stored_and_indexed_objects(moto, bucket, tmp_path):
    """storescu -> gateway (SQLite index, S3 store): each instance's index path is an S3 object with its bytes."""
    gw = build_gateway(make_settings(tmp_path, **moto.store_settings(bucket)))
    gw.start()
    try:
        files = write_ct_series(tmp_path / "ct", n_images=12, rows=64, cols=64)
        assert len(stored_ok(run_storescu(files, "127.0.0.1", gw.settings.dicom.port, CLINIC_AE, "TELERAD"))) == 12
        from sqlalchemy import select

        from pacs_gateway.index.models import Instance

        with gw.sessions() as s:
            rows = s.execute(select(Instance.sop_uid, Instance.path, Instance.crc32)).all()
        assert len(rows) == 12
        client = moto.client()
        from pydicom import dcmread

        by_sop = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in files}
        for sop, path, crc in rows:
            body = client.get_object(Bucket=bucket, Key=path)["Body"].read()
            assert dataset_bytes(body) == dataset_bytes(by_sop[sop]), f"object {path} differs from what was sent"
            assert zlib.crc32(dataset_bytes(body)) == crc
        assert not [p for p in gw.store.tmp.iterdir()], "no temp files left"
        # sending the same files again is a no-op (identical bytes): no new objects
        before = client.list_objects_v2(Bucket=bucket)["KeyCount"]
        assert len(stored_ok(run_storescu(files, "127.0.0.1", gw.settings.dicom.port, CLINIC_AE, "TELERAD"))) == 12
        assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == before
    finally:
        gw.stop()


def test_gateway_on_unreachable_s3_answers_out_of_resources(moto, bucket, tmp_path):
    gw = build_gateway(make_settings(tmp_path, **moto.store_settings(bucket), **{"store.s3.timeout_s": 2}))
    gw.start()
    try:
        moto.client().delete_bucket(Bucket=bucket)
        files = write_ct_series(tmp_path / "ct", n_images=1, rows=64, cols=64)
        from pynetdicom import AE
        from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

        ae = AE(ae_title=CLINIC_AE)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", gw.settings.dicom.port, ae_title="TELERAD")
        assert assoc.send_c_store(files[0]).Status in (0xA700, 0xA701)
        assoc.release()
        from sqlalchemy import func, select

        from pacs_gateway.index.models import Instance

        with gw.sessions() as s:
            assert s.execute(select(func.count(Instance.id))).scalar() == 0
    finally:
        gw.stop()


def test_clean_tmp_keeps_other_live_processes_spool(tmp_path):
    root = tmp_path / "store"
    store = LocalStore(root)
    host = process_tag().rsplit("-", 1)[0]
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead_pid = int(dead.stdout)
        for name in (f"{host}-{live.pid}", f"{host}-{dead_pid}", f"otherhost-{dead_pid}"):
            (store.spool_root / name).mkdir()
            (store.spool_root / name / "x.part").write_bytes(b"x")
        (store.tmp / "mine.part").write_bytes(b"x")
        (store.spool_root / "legacy.part").write_bytes(b"x")
        assert store.clean_tmp() == 3
        assert (store.spool_root / f"{host}-{live.pid}" / "x.part").exists(), "a live process's spool is kept"
        assert not (store.spool_root / f"{host}-{dead_pid}").exists(), "a dead local process's spool is removed"
        assert (store.spool_root / f"otherhost-{dead_pid}" / "x.part").exists(), "another host's is never touched"
        assert store.tmp.is_dir() and not list(store.tmp.iterdir())
    finally:
        live.kill()
        live.wait()


def test_web_app_of_another_gateway_reads_objects_from_s3(moto, bucket, tmp_path, pg_url):
    """Gateway A receives into S3; the web app of gateway B (empty cache) serves the series' metadata and instances."""
    from fastapi.testclient import TestClient
    from pydicom import dcmread

    from telerad.app import build_web_app

    values = {**moto.store_settings(bucket), "database.url": pg_url}
    a = build_gateway(make_settings(tmp_path / "a", **values, roles=["receive", "work"]))
    b = build_gateway(make_settings(tmp_path / "b", **values, roles=["api"]))
    a.start()
    try:
        files = write_ct_series(tmp_path / "ct", n_images=3, rows=64, cols=64)
        assert len(stored_ok(run_storescu(files, "127.0.0.1", a.settings.dicom.port, CLINIC_AE, "TELERAD"))) == 3
        ds = dcmread(files[0], stop_before_pixels=True)
        study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        assert not [p for p in b.store.root.rglob("*.dcm")], "B's cache starts empty"
        with TestClient(build_web_app(b)) as client:
            meta = client.get(f"/dicomweb/studies/{study}/series/{series}/metadata")
            assert meta.status_code == 200, meta.text
            assert len(meta.json()) == 3
            inst = client.get(f"/dicomweb/studies/{study}/series/{series}/instances/{sop}",
                              headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
            assert inst.status_code == 200, inst.text
            assert dataset_bytes(files[0]) in inst.content
    finally:
        a.stop()
        b.engine.dispose()
