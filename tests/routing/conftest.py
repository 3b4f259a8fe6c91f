"""Fixtures for routing tests: an in-process gateway with destinations, and ledger helpers."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from sqlalchemy import func, select

from pacs_gateway.index.models import Delivery
from pacs_gateway.service import Gateway
from telerad.app import build_gateway
from tests.gateway.conftest import make_settings
from tests.peers import LOOPBACK, OrthancPeer
from tests.peers_fixtures import orthanc_factory  # noqa: F401  (fixture)

FAST_ROUTING = {
    "routing.sweep_interval_s": 1,
    "routing.retry_initial_s": 0.5,
    "routing.retry_max_delay_s": 2.0,
    "routing.lease_s": 5,
    "routing.dimse_timeout_s": 10,
    "routing.connect_timeout_s": 3,
}


def dicom_destination(name: str, port: int, ae_title: str, *, default: bool = True, **extra) -> dict:
    return {"name": name, "kind": "dicom", "host": LOOPBACK, "port": port, "ae_title": ae_title, "default": default, **extra}


def orthanc_destination(orthanc: OrthancPeer, name: str = "lead", **extra) -> dict:
    return dicom_destination(name, orthanc.dicom_port, orthanc.aet, **extra)


@pytest.fixture
def gateway_factory(tmp_path) -> Iterator[Callable[..., Gateway]]:
    """``make(destinations=[...], **setting_overrides)``: a started in-process gateway."""
    made: list[Gateway] = []

    def make(*, destinations=(), sub: str = "gw", **overrides) -> Gateway:
        values = {**FAST_ROUTING, "destinations": list(destinations), **overrides}
        gw = build_gateway(make_settings(tmp_path / sub, **values))
        gw.start()
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.stop()


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last value {value!r})")


def ledger_counts(gw: Gateway) -> dict[str, int]:
    with gw.sessions() as s:
        return dict(s.execute(select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)).all())


def source_pixel_hashes(files: list[Path]) -> dict[str, str]:
    """``{SOP Instance UID: sha256 of the decoded pixel array}`` of source files."""

    def one(path: Path) -> tuple[str, str]:
        ds = pydicom.dcmread(path)
        return str(ds.SOPInstanceUID), _hash(ds)

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, files))


def _hash(ds) -> str:
    arr = np.ascontiguousarray(ds.pixel_array)
    return hashlib.sha256(arr.dtype.str.encode() + str(arr.shape).encode() + arr.tobytes()).hexdigest()


def orthanc_pixel_hashes(orthanc: OrthancPeer, headers: dict | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """``({SOP UID: pixel hash}, {SOP UID: stored transfer syntax})`` for every instance, via the REST API."""
    found = orthanc.rest("/tools/find", "POST", json_body={"Level": "Instance", "Query": {}, "Expand": True},
                         headers=headers)  # fmt: skip

    def one(item) -> tuple[str, str, str]:
        data = orthanc.rest(f"/instances/{item['ID']}/file", raw=True, headers=headers)
        ds = pydicom.dcmread(io.BytesIO(data))
        return item["MainDicomTags"]["SOPInstanceUID"], _hash(ds), str(ds.file_meta.TransferSyntaxUID)

    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(one, found))
    return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}
