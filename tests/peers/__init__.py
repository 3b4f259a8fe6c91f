"""Real DICOM peers for tests and benchmarks: DCMTK tools and a private Orthanc.

Everything runs on 127.0.0.1, every wait is bounded, and every child process
gets ``TCP_NODELAY=1`` in its environment (the Debian DCMTK and Orthanc
builds leave Nagle's algorithm on otherwise and crawl at ~20 images/s on
loopback).

Public API::

    free_port() -> int
    dcmtk_env(**extra) -> dict[str, str]
    run_echoscu(host, port, *, calling_ae="ECHOSCU", called_ae="ANY-SCP", timeout=10.0) -> CompletedProcess
    run_storescu(files_or_dir, host, port, calling_ae="STORESCU", called_ae="ANY-SCP", *,
                 extra_args=(), timeout=300.0) -> CompletedProcess   (always -v)
    run_storescu_concurrently(batches, host, port, calling_ae="STORESCU", called_ae="ANY-SCP", *,
                 extra_args=(), timeout=300.0) -> list[CompletedProcess]   (one association per batch)
    store_results(completed) -> list[(file, status)];  stored_ok(completed) -> list[file]
    storescu_command(files_or_dir, host, port, calling_ae, called_ae, extra_args=()) -> list[str]
    wait_for_echo(host, port, *, timeout=30.0, called_ae="ANY-SCP", proc=None, log=None) -> None
    pixel_sha256(path_or_bytes) -> str
    propose_args(transfer_syntax_uid) -> list[str]
    storescp_profile(accepted_sop_classes) -> str
    StorescpPeer(directory, port=None, *, fork=False, aet="STORESCP", extra_args=(),
                 accepted_sop_classes=None)
    OrthancPeer(tmpdir, dicom_port=None, http_port=None, *, aet="ORTHANC",
                known_modalities=None, dicomweb=False, config_overrides=None)
    TeleradPeer(data_dir, dicom_port=None, http_port=None, *, ae_title="TELERAD",
                accept_any_ae=True, http=True, extra_args=(), env=None)
    tree_cpu_seconds(pid) -> float

Modules: ``_common`` (process helpers), ``dcmtk``, ``orthanc``, ``telerad``.
"""

from __future__ import annotations


from tests.peers._common import LOOPBACK, PathLike, PeerError, dcmtk_env, free_port, pixel_sha256, tree_cpu_seconds
from tests.peers.dcmtk import (
    STORESCU_PROPOSE,
    VERIFICATION_SOP_CLASS,
    StorescpPeer,
    have_dcmtk,
    propose_args,
    run_echoscu,
    run_storescu,
    run_storescu_concurrently,
    store_results,
    storescp_profile,
    storescu_command,
    stored_ok,
    wait_for_echo,
)
from tests.peers.orthanc import DICOMWEB_PLUGIN, ORTHANC_BINARY, OrthancPeer, have_orthanc
from tests.peers.telerad import REPO_ROOT, TeleradPeer

__all__ = [
    "DICOMWEB_PLUGIN",
    "LOOPBACK",
    "ORTHANC_BINARY",
    "REPO_ROOT",
    "STORESCU_PROPOSE",
    "VERIFICATION_SOP_CLASS",
    "OrthancPeer",
    "PathLike",
    "PeerError",
    "StorescpPeer",
    "TeleradPeer",
    "dcmtk_env",
    "free_port",
    "have_dcmtk",
    "have_orthanc",
    "pixel_sha256",
    "propose_args",
    "run_echoscu",
    "run_storescu",
    "run_storescu_concurrently",
    "store_results",
    "storescp_profile",
    "storescu_command",
    "stored_ok",
    "tree_cpu_seconds",
    "wait_for_echo",
]
