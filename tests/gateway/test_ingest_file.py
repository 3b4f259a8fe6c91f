"""Gateway.ingest_file: the C-STORE durability path for a whole Part-10 file (used by STOW-RS)."""

from __future__ import annotations

import shutil

import pytest
from pydicom import dcmread

from pacs_gateway import status
from pacs_gateway.errors import BadDataset
from pacs_gateway.ingest import Outcome
from tests.gateway.conftest import CLINIC_AE
from tests.gateway.helpers import dataset_bytes, instance_count, stored_path
from sample_dicom.synthetic import write_ct_series


def test_ingest_file_stores_indexes_and_consumes(gateway, tmp_path):
    files = write_ct_series(tmp_path / "ct", n_images=2, rows=64, cols=64)
    original = dataset_bytes(files[0])
    copy = tmp_path / "copy.dcm"
    shutil.copy(files[0], copy)
    r = gateway.ingest_file(files[0], calling_ae=CLINIC_AE)
    assert r.ok and r.outcome is Outcome.STORED and r.status == status.SUCCESS
    ds = dcmread(copy, stop_before_pixels=True)
    assert (r.study_uid, r.series_uid, r.sop_uid) == (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert not files[0].exists()  # consumed
    assert dataset_bytes(stored_path(gateway, r.sop_uid)) == original
    assert instance_count(gateway) == 1
    again = gateway.ingest_file(copy)
    assert again.ok and again.outcome is Outcome.DUPLICATE and not copy.exists()
    assert not list(gateway.store.tmp.iterdir())


def test_ingest_file_refuses_malformed_with_a_specific_error(gateway, tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all" * 20)
    r = gateway.ingest_file(junk)
    assert r.status == status.CANNOT_PARSE and "Part-10" in r.error and not r.ok
    files = write_ct_series(tmp_path / "ct", n_images=1, rows=64, cols=64)
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) - 1000])  # pixel data cut short
    r = gateway.ingest_file(files[0])
    assert r.status == status.TRUNCATED and "truncated" in r.error
    assert not junk.exists() and not files[0].exists()
    assert instance_count(gateway) == 0
    assert not list(gateway.store.tmp.iterdir())


def test_check_file_reads_the_header_as_ingest_file_would_and_stores_nothing(gateway, tmp_path):
    files = write_ct_series(tmp_path / "ct", n_images=2, rows=64, cols=64)
    header = gateway.check_file(files[0])
    ds = dcmread(files[0], stop_before_pixels=True)
    assert (header.study_uid, header.series_uid, header.sop_uid) == (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) - 1000])  # pixel data cut short
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all" * 20)
    for path, code, words in ((junk, status.CANNOT_PARSE, "Part-10"), (files[1], status.TRUNCATED, "truncated")):
        with pytest.raises(BadDataset, match=words) as err:
            gateway.check_file(path)
        assert err.value.status == code and path.exists()  # the same reason ingest_file gives; the file stays
    assert files[0].exists() and instance_count(gateway) == 0
