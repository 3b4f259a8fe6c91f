"""Compressed transfer syntaxes sent by DCMTK storescu are stored as sent."""

from __future__ import annotations

import pytest
from pydicom import dcmread

from sample_dicom.synthetic import SYNTAXES, available_syntaxes, compress_series, write_ct_series
from tests.gateway.conftest import CLINIC_AE
from tests.gateway.helpers import dataset_bytes, stored_path
from tests.peers import propose_args, run_storescu, stored_ok

STORESCU_SYNTAXES = ["deflate", "implicit", "rle", "jpeg-baseline", "jpeg-lossless", "jpeg-ls", "j2k-lossless", "j2k"]


@pytest.mark.parametrize("name", STORESCU_SYNTAXES)
def test_compressed_syntax_round_trips(gateway, tmp_path, name):
    if name not in available_syntaxes():
        pytest.skip(reason=f"no encoder for {name} on this machine")
    bits = 8 if name == "jpeg-baseline" else 16
    src = write_ct_series(tmp_path / "src", n_images=3, rows=64, cols=64, bits_allocated=bits)
    files = compress_series(src, tmp_path / name, name)
    uid = SYNTAXES[name]
    assert dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == uid
    r = run_storescu(files, "127.0.0.1", gateway.settings.dicom.port, CLINIC_AE, "TELERAD", extra_args=propose_args(uid))
    assert len(stored_ok(r)) == 3, r.stderr[-1500:]
    for f in files:
        sop = dcmread(f, stop_before_pixels=True).SOPInstanceUID
        stored = stored_path(gateway, sop)
        assert dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == uid
        assert dataset_bytes(stored) == dataset_bytes(f)


def test_htj2k_is_negotiated_and_stored(gateway, tmp_path):
    """storescu cannot propose HTJ2K, so telerad's own sender does.

    No HTJ2K encoder is installed here; a JPEG 2000 codestream is a valid HTJ2K
    codestream (Part 15 decoders read Part 1), so the lossless J2K files are
    relabelled as HTJ2K Lossless.
    """
    from pydicom.uid import HTJ2KLossless

    from pacs_gateway.scu import inspect_file, send_files

    src = write_ct_series(tmp_path / "src", n_images=2, rows=64, cols=64)
    files = compress_series(src, tmp_path / "j2k", "j2k-lossless")
    relabelled = []
    for f in files:
        ds = dcmread(f)
        ds.file_meta.TransferSyntaxUID = HTJ2KLossless
        out = tmp_path / f"ht-{f.name}"
        ds.save_as(out, enforce_file_format=True)
        relabelled.append(out)
    results = send_files([inspect_file(f) for f in relabelled], "127.0.0.1", gateway.settings.dicom.port, "TELERAD", CLINIC_AE)
    assert all(r.ok for r in results), [r.message for r in results]
    for f in relabelled:
        ds = dcmread(f, stop_before_pixels=True)
        stored = stored_path(gateway, ds.SOPInstanceUID)
        assert dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == HTJ2KLossless
        assert dataset_bytes(stored) == dataset_bytes(f)
