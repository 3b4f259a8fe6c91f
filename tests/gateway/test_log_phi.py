"""``log_phi``: patient names, IDs and accession numbers reach the log only when it is switched on."""

from __future__ import annotations

import logging

import pytest

from telerad.app import build_gateway
from sample_dicom.synthetic import write_ct_series
from tests.gateway.conftest import CLINIC_AE, make_settings
from tests.peers import run_storescu, stored_ok
from telerad.logctx import HIDDEN, set_log_phi


@pytest.mark.parametrize("log_phi", [False, True])
def test_patient_identifiers_are_logged_only_with_log_phi(tmp_path, caplog, log_phi):
    files = write_ct_series(tmp_path / "ct", n_images=2, rows=32, cols=32, patient_id="PID-7731")
    gw = build_gateway(make_settings(tmp_path, log_phi=log_phi))
    gw.start()
    try:
        with caplog.at_level(logging.INFO):
            assert len(stored_ok(run_storescu(files, "127.0.0.1", gw.settings.dicom.port, CLINIC_AE, "TELERAD"))) == 2
            gw.stop()
        text = "\n".join(caplog.messages)
        assert "new study" in text
        assert ("PID-7731" in text) is log_phi
        assert (HIDDEN in text) is not log_phi
    finally:
        gw.stop()
        set_log_phi(False)
