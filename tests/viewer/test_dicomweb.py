"""DICOMweb conformance with the ``dicomweb-client`` package against a running telerad.

Studies arrive by DCMTK ``storescu`` (study A: Explicit VR CT of Clinic A; study B: JPEG-LS
CT of Clinic B); the web app listens on a real uvicorn socket.
"""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames

from tests.peers import have_dcmtk
from tests.viewer.dicomweb_env import STUDY_A, STUDY_B, start

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK storescu is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def tw(tmp_path_factory):
    run = start(tmp_path_factory.mktemp("dicomweb"))
    yield run
    run.stop()


def _uids(items, tag="0020000D"):
    return sorted(i[tag]["Value"][0] for i in items)


# ----------------------------------------------------------------------------- QIDO-RS
def test_qido_studies_filters_limit_offset_includefield(tw):
    c = tw.client()
    assert _uids(c.search_for_studies()) == sorted([STUDY_A, STUDY_B])
    assert _uids(c.search_for_studies(search_filters={"PatientID": "PA-001"})) == [STUDY_A]
    assert _uids(c.search_for_studies(search_filters={"PatientName": "doe*"})) == [STUDY_A]
    assert _uids(c.search_for_studies(search_filters={"PatientName": "R?E^*"})) == [STUDY_B]
    assert _uids(c.search_for_studies(search_filters={"StudyDate": "20240301-20240331"})) == [STUDY_B]
    assert _uids(c.search_for_studies(search_filters={"StudyDate": "-20240201"})) == [STUDY_A]
    assert _uids(c.search_for_studies(search_filters={"AccessionNumber": "ACC-B"})) == [STUDY_B]
    assert _uids(c.search_for_studies(search_filters={"StudyInstanceUID": f"{STUDY_A},{STUDY_B}"})) == [STUDY_A, STUDY_B]
    assert _uids(c.search_for_studies(search_filters={"ModalitiesInStudy": "CT"})) == [STUDY_A, STUDY_B]
    assert c.search_for_studies(search_filters={"ModalitiesInStudy": "MR"}) == []
    page1 = c.search_for_studies(limit=1)
    page2 = c.search_for_studies(limit=1, offset=1)
    assert len(page1) == len(page2) == 1 and _uids(page1 + page2) == sorted([STUDY_A, STUDY_B])
    one = c.search_for_studies(search_filters={"PatientID": "PA-001"}, fields=["PatientBirthDate", "00100040"])[0]
    assert one["00100030"]["Value"] == ["19500101"]  # from the precomputed metadata, not the index
    assert one["00100010"]["Value"][0]["Alphabetic"] == "DOE^JANE"
    assert one["00201208"]["Value"] == [6] and one["00201206"]["Value"] == [1]
    assert one["00080061"]["Value"] == ["CT"]


def test_qido_series_and_instances(tw):
    c = tw.client()
    series = c.search_for_series(STUDY_A)
    assert [s["0020000E"]["Value"][0] for s in series] == [tw.series["a"]]
    assert series[0]["00080060"]["Value"] == ["CT"] and series[0]["00201209"]["Value"] == [6]
    everywhere = c.search_for_series(search_filters={"Modality": "CT", "PatientID": "PB-002"})
    assert [s["0020000E"]["Value"][0] for s in everywhere] == [tw.series["b"]]
    inst = c.search_for_instances(STUDY_A, tw.series["a"])
    assert [i["00200013"]["Value"][0] for i in inst] == [1, 2, 3, 4, 5, 6]
    assert inst[0]["00280010"]["Value"] == [64]  # Rows, from the metadata
    sop = inst[2]["00080018"]["Value"][0]
    only = c.search_for_instances(STUDY_A, search_filters={"SOPInstanceUID": sop})
    assert [i["00080018"]["Value"][0] for i in only] == [sop]
    assert [i["00200013"]["Value"][0] for i in c.search_for_instances(STUDY_A, tw.series["a"], limit=2, offset=3)] == [4, 5]
    assert c.search_for_instances(search_filters={"SeriesInstanceUID": tw.series["b"]}, limit=100).__len__() == 6


def test_qido_bad_queries_are_problems(tw):
    h = tw.auth("rad")
    r = httpx.get(tw.dicomweb + "/studies?NoSuchAttribute=1", headers=h)
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    assert "NoSuchAttribute" in r.json()["detail"]
    r = httpx.get(tw.dicomweb + "/studies?StudyDate=2024-01", headers=h)
    assert r.status_code == 400 and "YYYYMMDD" in r.json()["detail"]
    r = httpx.get(tw.dicomweb + "/studies?limit=0", headers=h)
    assert r.status_code == 400 and "limit" in r.json()["detail"]
    r = httpx.get(tw.dicomweb + "/studies?PatientBirthDate=19500101", headers=h)
    assert r.status_code == 400 and "PatientBirthDate" in r.json()["detail"]


# ----------------------------------------------------------------------------- WADO-RS
def test_series_metadata_is_precomputed_and_points_at_bulk_data(tw):
    cache_dir = tw.gateway.store.root / ".dicomweb" / STUDY_A / tw.series["a"]
    deadline = time.monotonic() + 20
    while len(list(cache_dir.glob("*.json"))) < 2:  # written when the series completed, before any request
        assert time.monotonic() < deadline, "series metadata was not precomputed"
        time.sleep(0.1)
    assert len(list(cache_dir.glob("*.first.json"))) == 1  # the first instance alone, for searches
    c = tw.client()
    meta = c.retrieve_series_metadata(STUDY_A, tw.series["a"])
    assert [m["00200013"]["Value"][0] for m in meta] == [1, 2, 3, 4, 5, 6]
    src = dcmread(tw.files["a"][0])
    assert meta[0]["00100010"]["Value"][0]["Alphabetic"] == "DOE^JANE"
    assert meta[0]["00280030"]["Value"] == [float(v) for v in src.PixelSpacing]
    uri = meta[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith(tw.dicomweb + "/studies/") and "InlineBinary" not in meta[0]["7FE00010"]
    data = c.retrieve_bulkdata(uri, media_types=("application/octet-stream",))
    assert data[0] == src.PixelData
    r = httpx.get(f"{tw.dicomweb}/studies/{STUDY_A}/series/{tw.series['a']}/metadata",
                  headers={**tw.auth("rad"), "accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and r.json() == meta  # large JSON goes gzipped
    study_meta = c.retrieve_study_metadata(STUDY_A)
    assert len(study_meta) == 6
    one = c.retrieve_instance_metadata(STUDY_A, tw.series["a"], str(src.SOPInstanceUID))
    assert one["00080018"]["Value"] == [str(src.SOPInstanceUID)]


def test_metadata_follows_new_instances(tw):
    """A cached series' JSON is rebuilt when the index changes (here: an instance added by STOW-RS)."""
    from sample_dicom.synthetic import write_ct_series

    c = tw.client()
    before = c.retrieve_series_metadata(STUDY_A, tw.series["a"])
    extra = write_ct_series(tw.gateway.store.root.parent / "extra", 1, 64, 64, seed=9, study_uid=STUDY_A,
                            series_uid=tw.series["a"], patient_id="PA-001", extra={"InstanceNumber": 7})
    c.store_instances([dcmread(extra[0])], study_instance_uid=STUDY_A)
    after = c.retrieve_series_metadata(STUDY_A, tw.series["a"])
    assert len(after) == len(before) + 1


def test_retrieve_instances_as_stored_and_transcoded(tw):
    c = tw.client()
    src = dcmread(tw.files["b"][1])
    sop = str(src.SOPInstanceUID)
    stored = c.retrieve_instance(STUDY_B, tw.series["b"], sop, media_types=(("application/dicom", "*"),))
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80" and stored.PixelData == src.PixelData
    plain = c.retrieve_instance(STUDY_B, tw.series["b"], sop, media_types=(("application/dicom", "1.2.840.10008.1.2.1"),))
    assert plain.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(plain.pixel_array, src.pixel_array)
    series = c.retrieve_series(STUDY_A, tw.series["a"], media_types=(("application/dicom", "*"),))
    assert len(series) >= 6


def test_frames_pass_compressed_bitstreams_through(tw):
    c = tw.client()
    src = dcmread(tw.files["b"][2])
    sop = str(src.SOPInstanceUID)
    stored_frame = next(generate_frames(src.PixelData, number_of_frames=1))
    raw = c.retrieve_instance_frames(STUDY_B, tw.series["b"], sop, [1],
                                     media_types=(("application/octet-stream", "*"),))
    assert raw[0] == stored_frame  # the JPEG-LS bitstream, not re-encoded
    r = httpx.get(f"{tw.dicomweb}/studies/{STUDY_B}/series/{tw.series['b']}/instances/{sop}/frames/1",
                  headers={**tw.auth("rad"), "accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'})
    assert r.status_code == 200 and "transfer-syntax=1.2.840.10008.1.2.4.80" in r.text[:400]
    decoded = c.retrieve_instance_frames(STUDY_B, tw.series["b"], sop, [1],
                                         media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),))
    assert decoded[0] == src.pixel_array.astype("<i2").tobytes() or decoded[0] == src.pixel_array.tobytes()
    a = dcmread(tw.files["a"][0])
    native = c.retrieve_instance_frames(STUDY_A, tw.series["a"], str(a.SOPInstanceUID), [1])
    assert native[0] == a.PixelData
    bad = httpx.get(f"{tw.dicomweb}/studies/{STUDY_A}/series/{tw.series['a']}/instances/{a.SOPInstanceUID}/frames/2",
                    headers=tw.auth("rad"))
    assert bad.status_code == 404 and "1 frame" in bad.json()["detail"]
    jpeg = httpx.get(f"{tw.dicomweb}/studies/{STUDY_B}/series/{tw.series['b']}/instances/{sop}/frames/1",
                     headers={**tw.auth("rad"), "accept": 'multipart/related; type="image/jp2"; transfer-syntax=1.2.840.10008.1.2.4.90'})
    assert jpeg.status_code == 406 and "1.2.840.10008.1.2.4.80" in jpeg.json()["detail"]


def test_rendered_and_thumbnails(tw):
    from PIL import Image

    h = tw.auth("rad")
    a = dcmread(tw.files["a"][0])
    base = f"{tw.dicomweb}/studies/{STUDY_A}/series/{tw.series['a']}"
    r = httpx.get(f"{base}/instances/{a.SOPInstanceUID}/rendered", headers={**h, "accept": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    assert img.shape == (64, 64) and img.std() > 5
    r = httpx.get(f"{base}/thumbnail", headers={**h, "accept": "image/jpeg"})
    assert r.status_code == 200 and max(Image.open(io.BytesIO(r.content)).size) <= 128
    r = httpx.get(f"{tw.dicomweb}/studies/{STUDY_B}/thumbnail?viewport=32,32", headers=h)
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (32, 32)
    r = httpx.get(f"{base}/instances/{a.SOPInstanceUID}/rendered?window=40", headers=h)
    assert r.status_code == 400 and "window" in r.json()["detail"]


# ----------------------------------------------------------------------------- STOW-RS
def test_stow_stores_through_the_gateway(tw, tmp_path):
    from sample_dicom.synthetic import write_ct_series

    files = write_ct_series(tmp_path / "stow", 3, 32, 32, seed=5, patient_id="STOW-1", extra={"PatientName": "STOW^ONE"})
    c = tw.client("tech-a")
    response = c.store_instances([dcmread(f) for f in files])
    assert len(response.ReferencedSOPSequence) == 3 and "FailedSOPSequence" not in response
    study = str(dcmread(files[0]).StudyInstanceUID)
    found = tw.client().search_for_studies(search_filters={"PatientID": "STOW-1"})
    assert _uids(found) == [study]
    # stored durably as Clinic A (the technician's clinic), visible to that technician only
    assert _uids(tw.client("tech-a").search_for_studies(search_filters={"PatientID": "STOW-1"})) == [study]
    assert tw.client("tech-b").search_for_studies(search_filters={"PatientID": "STOW-1"}) == []
    got = tw.client().retrieve_instance(study, str(dcmread(files[0]).SeriesInstanceUID), str(dcmread(files[0]).SOPInstanceUID))
    assert got.PixelData == dcmread(files[0]).PixelData


def _multipart(parts: list[bytes], boundary="telerad-test-boundary") -> tuple[bytes, str]:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts)
    return body + f"--{boundary}--\r\n".encode(), f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_stow_refuses_a_bad_part_and_stores_nothing(tw, tmp_path):
    from sample_dicom.synthetic import write_ct_series

    good = write_ct_series(tmp_path / "ok", 1, 32, 32, seed=6, patient_id="STOW-BAD")[0].read_bytes()
    truncated = good[: len(good) // 3]
    body, ctype = _multipart([good, b"this is not DICOM" * 20, truncated])
    r = httpx.post(tw.dicomweb + "/studies", content=body, headers={**tw.auth("rad"), "content-type": ctype})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert "nothing was stored" in problem["detail"]
    assert [f["part"] for f in problem["failures"]] == [2, 3]
    assert "Part-10" in problem["failures"][0]["reason"]
    assert tw.client().search_for_studies(search_filters={"PatientID": "STOW-BAD"}) == []
    # a part of another study than the URL names is a conflict
    body, ctype = _multipart([good])
    r = httpx.post(f"{tw.dicomweb}/studies/{STUDY_A}", content=body, headers={**tw.auth("rad"), "content-type": ctype})
    assert r.status_code == 409 and "not to" in r.json()["detail"]
    r = httpx.post(tw.dicomweb + "/studies", content=b"x", headers={**tw.auth("rad"), "content-type": "application/json"})
    assert r.status_code == 415


# ----------------------------------------------------------------------------- access
def test_access_by_role_and_clinic(tw):
    url = tw.dicomweb
    assert httpx.get(url + "/studies").status_code == 401
    assert httpx.get(url + "/studies", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    for user in ("rad", "stroke1", "admin1"):
        assert STUDY_B in _uids(tw.client(user).search_for_studies())
    tech = tw.client("tech-a")
    assert STUDY_B not in _uids(tech.search_for_studies()) and STUDY_A in _uids(tech.search_for_studies())
    assert tech.search_for_series(search_filters={"PatientID": "PB-002"}) == []
    h = tw.auth("tech-a")
    for path in (f"/studies/{STUDY_B}/metadata", f"/studies/{STUDY_B}/series",
                 f"/studies/{STUDY_B}/series/{tw.series['b']}/metadata", f"/studies/{STUDY_B}/thumbnail"):
        r = httpx.get(url + path, headers=h)
        assert r.status_code == 403, path
    assert httpx.get(f"{url}/studies/{STUDY_A}/series/{tw.series['a']}/metadata", headers=h).status_code == 200
    body, ctype = _multipart([tw.files["b"][0].read_bytes()])
    r = httpx.post(url + "/studies?clinic=Clinic%20B", content=body, headers={**h, "content-type": ctype})
    assert r.status_code == 403
    r = httpx.post(url + "/studies", content=body, headers={**tw.auth("stroke1"), "content-type": ctype})
    assert r.status_code == 403


def test_viewing_retrieving_and_uploading_are_audited(tw):
    from sqlalchemy import select

    from viewer.models import AuditEntry

    c = tw.client("stroke1")
    c.retrieve_series_metadata(STUDY_B, tw.series["b"])
    c.retrieve_series_metadata(STUDY_B, tw.series["b"])  # once per user and study in a while, not per request
    with tw.gateway.sessions() as s:
        rows = s.execute(select(AuditEntry).where(AuditEntry.user == "stroke1")).scalars().all()
        uploads = s.execute(select(AuditEntry).where(AuditEntry.action == "study.upload")).scalars().all()
    views = [(r.action, r.target) for r in rows if r.action == "study.view"]
    assert views == [("study.view", STUDY_B)]
    assert uploads and all(u.user in ("tech-a", "rad") for u in uploads)


def test_a_technician_cannot_add_to_another_clinics_study(tw):
    """Study B is Clinic B's: an instance of it uploaded by Clinic A's technician is refused, nothing stored."""
    from sample_dicom.synthetic import write_ct_series

    files = write_ct_series(tw.gateway.store.root.parent / "intrude", 1, 32, 32, seed=11, study_uid=STUDY_B)
    body, ctype = _multipart([files[0].read_bytes()])
    h = tw.auth("tech-a")
    for url in (tw.dicomweb + "/studies", f"{tw.dicomweb}/studies/{STUDY_B}"):
        r = httpx.post(url, content=body, headers={**h, "content-type": ctype})
        assert r.status_code == 403 and "nothing was stored" in r.json()["detail"], r.text
    sop = str(dcmread(files[0]).SOPInstanceUID)
    assert tw.client().search_for_instances(search_filters={"SOPInstanceUID": sop}) == []


def test_segmentation_frames_are_bit_packed_like_the_stored_ones(tw, tmp_path):
    """A 1-bit SEG of 30x30 frames (900 bits: frames do not start on byte boundaries), stored by STOW-RS."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from sample_dicom.synthetic import write_ct_series

    ct = [dcmread(f) for f in write_ct_series(tmp_path / "ct", 3, 30, 30, seed=12, patient_id="SEG-1")]
    mask = np.zeros((3, 30, 30), dtype=bool)
    mask[0, 3:9, 4:20] = True
    mask[2, 10:25, 1:7] = True
    seg = hd.seg.Segmentation(
        source_images=ct, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[hd.seg.SegmentDescription(
            segment_number=1, segment_label="test", segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)],
        series_instance_uid=hd.UID(), series_number=99, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="telerad tests", manufacturer_model_name="test", software_versions="0", device_serial_number="0",
        omit_empty_frames=False)
    c = tw.client()
    c.store_instances(ct + [seg])
    study, series, sop = str(seg.StudyInstanceUID), str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID)
    stored = dcmread(io.BytesIO(_part10_bytes(tw, study, series, sop)))  # single part, as stored
    frames = stored.pixel_array.reshape(-1, 30, 30)
    got = c.retrieve_instance_frames(study, series, sop, list(range(1, len(frames) + 1)))
    assert len(got) == len(frames) == 3
    for g, f in zip(got, frames):
        assert g == np.packbits(f.astype(np.uint8).ravel(), bitorder="little").tobytes()
    meta = c.retrieve_series_metadata(study, series)[0]
    assert "BulkDataURI" in meta["7FE00010"] and meta["00620002"]["Value"][0]["00620005"]["Value"] == ["test"]
    from PIL import Image

    r = httpx.get(f"{tw.dicomweb}/studies/{study}/series/{series}/instances/{sop}/frames/3/rendered",
                  headers={**tw.auth("rad"), "accept": "image/png"})
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    assert r.status_code == 200 and img.shape == (30, 30) and set(np.unique(img)) == {0, 255}
    assert np.array_equal(img == 255, frames[2].astype(bool))


def _part10_bytes(tw, study, series, sop) -> bytes:
    r = httpx.get(f"{tw.dicomweb}/studies/{study}/series/{series}/instances/{sop}",
                  headers={**tw.auth("rad"), "accept": "application/dicom; transfer-syntax=*"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    return r.content


@pytest.mark.postgres
def test_search_and_metadata_on_postgresql(tmp_path):
    """The same searches and metadata with the index on PostgreSQL (JSON InstanceNumber, LIKE, date ranges)."""
    import os
    import uuid

    from sqlalchemy import create_engine, text

    pg = os.environ.get("TELERAD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    name = f"telerad_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - say why the PostgreSQL test cannot run
        pytest.fail(f"PostgreSQL at {pg} is needed for this test: {exc}")
    run = None
    try:
        run = start(tmp_path, database_url=pg.rsplit("/", 1)[0] + f"/{name}")
        test_qido_studies_filters_limit_offset_includefield(run)
        test_qido_series_and_instances(run)
        test_series_metadata_is_precomputed_and_points_at_bulk_data(run)
    finally:
        if run is not None:
            run.stop()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
