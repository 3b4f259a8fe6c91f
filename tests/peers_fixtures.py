"""pytest plugin exposing the real-peer harness of :mod:`tests.peers` as fixtures.

Register it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.peers_fixtures"]``.

Fixtures:
    storescp_peer        a started DCMTK storescp (StorescpPeer) writing under tmp_path
    orthanc_peer         a started private Orthanc (OrthancPeer), DICOMweb plugin loaded
    orthanc_factory      call it with OrthancPeer keyword arguments; every peer is stopped at teardown
    small_ct_series      session-wide 20-image 64x64 CT series (list of paths; do not modify)
    ct_series_1000       session-wide 1,000-image 512x512 CT series (~526 MB; do not modify)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sample_dicom.synthetic import write_ct_series
from tests.peers import OrthancPeer, StorescpPeer


@pytest.fixture
def storescp_peer(tmp_path: Path) -> Iterator[StorescpPeer]:
    with StorescpPeer(tmp_path / "storescp" / "received") as peer:
        yield peer


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., OrthancPeer]]:
    peers: list[OrthancPeer] = []

    def make(**kwargs: Any) -> OrthancPeer:
        peer = OrthancPeer(tmp_path / f"orthanc{len(peers)}", **kwargs)
        peers.append(peer)
        return peer.start()

    yield make
    for peer in peers:
        peer.stop()


@pytest.fixture
def orthanc_peer(orthanc_factory: Callable[..., OrthancPeer]) -> OrthancPeer:
    return orthanc_factory(dicomweb=True)


@pytest.fixture(scope="session")
def small_ct_series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_ct_series(tmp_path_factory.mktemp("small_ct"), 20, 64, 64, seed=11)


@pytest.fixture(scope="session")
def ct_series_1000(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_ct_series(tmp_path_factory.mktemp("ct1000"), 1000, 512, 512, seed=1)
