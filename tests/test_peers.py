"""The real-peer harness works: DCMTK storescu/storescp/echoscu and a private Orthanc."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import CTImageStorage

from sample_dicom.synthetic import compress_series, write_ct_series, write_xray
from tests.peers import (
    LOOPBACK,
    OrthancPeer,
    PeerError,
    StorescpPeer,
    TeleradPeer,
    free_port,
    pixel_sha256,
    propose_args,
    run_echoscu,
    run_storescu,
    run_storescu_concurrently,
    store_results,
    stored_ok,
    tree_cpu_seconds,
)
from tests.peers_fixtures import orthanc_factory, orthanc_peer, small_ct_series, storescp_peer  # noqa: F401


def _sop_uids(paths) -> set[str]:
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in paths}


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))


def test_echo_and_store_to_storescp(storescp_peer, small_ct_series):
    assert run_echoscu(LOOPBACK, storescp_peer.port).returncode == 0
    result = run_storescu(small_ct_series, LOOPBACK, storescp_peer.port)
    assert result.returncode == 0, result.stderr
    assert stored_ok(result) == [str(p) for p in small_ct_series]
    assert _sop_uids(storescp_peer.files()) == _sop_uids(small_ct_series)


def test_echo_to_a_closed_port_fails():
    assert run_echoscu(LOOPBACK, free_port(), timeout=3).returncode != 0


def test_directory_send_and_concurrent_associations(tmp_path, small_ct_series):
    with StorescpPeer(tmp_path / "recv", fork=True) as peer:
        result = run_storescu(small_ct_series[0].parent, LOOPBACK, peer.port)
        assert len(stored_ok(result)) == len(small_ct_series), result.stderr
        (tmp_path / "recv").rename(tmp_path / "first")
        (tmp_path / "recv").mkdir()
        batches = [small_ct_series[i::4] for i in range(4)]
        results = run_storescu_concurrently(batches, LOOPBACK, peer.port, timeout=120)
        assert [len(stored_ok(r)) for r in results] == [len(b) for b in batches]
        assert _sop_uids(peer.files()) == _sop_uids(small_ct_series)


def test_restricted_storescp_refuses_other_sop_classes(tmp_path):
    ct = write_ct_series(tmp_path / "ct", 2, 32, 32)
    xray = write_xray(tmp_path / "xr", 32, 32)
    with StorescpPeer(tmp_path / "recv", accepted_sop_classes=[CTImageStorage]) as peer:
        result = run_storescu([ct[0], xray, ct[1]], LOOPBACK, peer.port, extra_args=["-nh"])
        assert store_results(result) == [
            (str(ct[0]), "Success"),
            (str(xray), "no presentation context"),
            (str(ct[1]), "Success"),
        ]
        assert _sop_uids(peer.files()) == _sop_uids(ct)


@pytest.mark.parametrize("syntax", ["rle", "j2k-lossless", "jpeg-ls"])
def test_compressed_files_arrive_compressed(tmp_path, syntax):
    files = compress_series(write_ct_series(tmp_path / "ct", 2, 32, 32), tmp_path / syntax, syntax)
    tsuid = pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    with StorescpPeer(tmp_path / "recv", extra_args=["+B"]) as peer:
        result = run_storescu(files, LOOPBACK, peer.port, extra_args=propose_args(tsuid))
        assert len(stored_ok(result)) == 2, result.stderr
        received = peer.files()
    assert {pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p in received} == {tsuid}
    assert sorted(pixel_sha256(p) for p in received) == sorted(pixel_sha256(p) for p in files)


def test_store_to_orthanc_and_read_back(orthanc_peer, small_ct_series):
    assert run_echoscu(LOOPBACK, orthanc_peer.dicom_port, called_ae="ORTHANC").returncode == 0
    result = run_storescu(small_ct_series, LOOPBACK, orthanc_peer.dicom_port, called_ae="ORTHANC")
    assert len(stored_ok(result)) == len(small_ct_series), result.stderr
    assert orthanc_peer.count_instances() == len(small_ct_series)
    assert len(orthanc_peer.instances()) == len(small_ct_series)
    by_uid = orthanc_peer.sop_instance_uids()
    assert set(by_uid) == _sop_uids(small_ct_series)
    first = pydicom.dcmread(small_ct_series[0], stop_before_pixels=True)
    assert orthanc_peer.instance_pixel_sha256(by_uid[first.SOPInstanceUID]) == pixel_sha256(small_ct_series[0])
    studies = orthanc_peer.rest("/dicom-web/studies")
    assert studies[0]["0020000D"]["Value"] == [first.StudyInstanceUID]


def test_orthanc_outage_and_restart(orthanc_factory, small_ct_series):
    peer = orthanc_factory(known_modalities={"gateway": ("TELERAD", LOOPBACK, 11112)})
    assert peer.rest("/modalities") == ["gateway"]
    first, rest = small_ct_series[:5], small_ct_series[5:]
    assert len(stored_ok(run_storescu(first, LOOPBACK, peer.dicom_port))) == 5
    peer.stop()
    assert not peer.running
    assert run_echoscu(LOOPBACK, peer.dicom_port, timeout=3).returncode != 0
    assert stored_ok(run_storescu(rest, LOOPBACK, peer.dicom_port, timeout=30)) == []
    peer.start()
    assert peer.count_instances() == 5
    assert len(stored_ok(run_storescu(rest, LOOPBACK, peer.dicom_port))) == len(rest)
    assert set(peer.sop_instance_uids()) == _sop_uids(small_ct_series)


def test_orthanc_refuses_sop_class_filtering(tmp_path):
    with pytest.raises(PeerError, match="StorescpPeer"):
        OrthancPeer(tmp_path, accepted_sop_classes=[CTImageStorage])


def test_orthanc_start_failure_is_reported(tmp_path):
    busy = socket.socket()
    busy.bind((LOOPBACK, 0))
    busy.listen()
    try:
        peer = OrthancPeer(tmp_path, http_port=busy.getsockname()[1], start_timeout=20)
        with pytest.raises(PeerError, match="Orthanc"):
            peer.start()
        assert not peer.running
    finally:
        busy.close()


def test_pixel_hash_ignores_encoding(tmp_path):
    (src,) = write_ct_series(tmp_path / "ct", 1, 32, 32)
    (j2k,) = compress_series([src], tmp_path / "j2k", "j2k-lossless")
    (other,) = write_ct_series(tmp_path / "other", 1, 32, 32, seed=5)
    assert pixel_sha256(j2k) == pixel_sha256(src) == pixel_sha256(Path(src).read_bytes())
    assert pixel_sha256(other) != pixel_sha256(src)


def test_telerad_peer_receives_and_counts_cpu(tmp_path, small_ct_series):
    with TeleradPeer(tmp_path / "data") as peer:
        cpu0 = tree_cpu_seconds(peer.pid)
        result = run_storescu(small_ct_series[:5], LOOPBACK, peer.dicom_port, called_ae="TELERAD")
        assert len(stored_ok(result)) == 5, result.stderr
        assert len(peer.stored_files()) == 5
        assert tree_cpu_seconds(peer.pid) > cpu0
        study_uid = pydicom.dcmread(small_ct_series[0], stop_before_pixels=True).StudyInstanceUID
        assert study_uid in json.dumps(peer.get("/api/studies"))
        peer.kill()
        assert not peer.running
        peer.start()
        assert len(peer.stored_files()) == 5
    assert not peer.running
