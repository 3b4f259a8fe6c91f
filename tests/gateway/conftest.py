"""Fixtures for gateway tests: an in-process gateway on a free loopback port."""

from __future__ import annotations

import pytest

from telerad.app import build_gateway
from telerad.settings import load_settings
from tests.peers import free_port
from tests.serve_process import wait_for

CLINIC_AE = "MODALITY"


def make_settings(tmp_path, **overrides):
    values = {
        "data_dir": str(tmp_path / "var"),
        "dicom.port": free_port(),
        "dicom.bind": "127.0.0.1",
        "dicom.quiet_period_s": 0.5,
        "clinics": [{"name": "Test Clinic", "ae_title": CLINIC_AE}],
    }
    values.update(overrides)
    return load_settings(None, **values)


@pytest.fixture
def gateway(tmp_path):
    gw = build_gateway(make_settings(tmp_path))
    gw.start()
    yield gw
    gw.stop()


def wait_until(predicate, timeout=20.0, interval=0.1):
    """Poll ``predicate`` until it returns a truthy value; bounded by ``timeout`` seconds."""
    return wait_for(predicate, timeout, interval=interval)
