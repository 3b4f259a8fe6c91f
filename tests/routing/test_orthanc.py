"""Store-and-forward to a real Orthanc playing the lead hospital's PACS.

DCMTK ``storescu`` plays the township modality, telerad (in-process, or as a
``telerad serve`` child for the crash test) routes, Orthanc receives. Every
check goes through Orthanc's REST API.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from pacs_gateway.index.models import Delivery
from pacs_gateway.index.queries import get_study
from sample_dicom.synthetic import write_ct_series
from tests.peers import LOOPBACK, TeleradPeer, have_dcmtk, have_orthanc, run_storescu, stored_ok
from tests.routing.conftest import (
    FAST_ROUTING,
    ledger_counts,
    orthanc_destination,
    orthanc_pixel_hashes,
    source_pixel_hashes,
    wait_until,
)

pytestmark = pytest.mark.skipif(not (have_orthanc() and have_dcmtk()), reason="needs Debian orthanc and dcmtk")
CLINIC_AE = "MODALITY"


@pytest.fixture(scope="module")
def study_1000(tmp_path_factory):
    """A 1,000-image head CT (256x256, so the suite stays quick on 2 cores)."""
    return write_ct_series(tmp_path_factory.mktemp("ct1000"), 1000, 256, 256, seed=5)


@pytest.fixture(scope="module")
def study_1000_hashes(study_1000):
    return source_pixel_hashes(study_1000)


def push(gw_port: int, files, timeout: float = 180.0) -> None:
    result = run_storescu(files, LOOPBACK, gw_port, CLINIC_AE, "TELERAD", timeout=timeout)
    assert len(stored_ok(result)) == len(files), result.stderr[-2000:]


def _study_uid(files) -> str:
    import pydicom

    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["none", "jpeg-ls-lossless"])
def test_1000_image_study_arrives_complete_with_identical_pixels(
    gateway_factory, orthanc_factory, study_1000, study_1000_hashes, compression
):
    orthanc = orthanc_factory()
    gw = gateway_factory(destinations=[orthanc_destination(orthanc, compression=compression)])
    push(gw.settings.dicom.port, study_1000)
    wait_until(lambda: ledger_counts(gw).get("delivered") == 1000, timeout=150, what="1,000 delivered rows")
    assert orthanc.count_instances() == 1000
    hashes, syntaxes = orthanc_pixel_hashes(orthanc)
    assert hashes == study_1000_hashes  # same SOP Instance UIDs, same decoded pixels
    expected = {"none": "1.2.840.10008.1.2.1", "jpeg-ls-lossless": "1.2.840.10008.1.2.4.80"}[compression]
    assert set(syntaxes.values()) == {expected}
    with gw.sessions() as s:
        study = get_study(s, _study_uid(study_1000))
    [d] = study["deliveries"]
    assert d["destination"] == "lead" and d["state"] == "delivered" and d["delivered_at"]
    assert d["counts"] == {"queued": 0, "sending": 0, "delivered": 1000, "failed": 0}
    assert study["series"][0]["deliveries"][0]["counts"]["delivered"] == 1000
    if compression == "none":
        assert d["bytes_saved"] == 0
    else:
        assert d["bytes_saved"] > 0.3 * d["bytes_sent"], d  # CT noise compresses to about 45%


@pytest.mark.parametrize("compression, syntax", [("jpeg2000-lossless", "1.2.840.10008.1.2.4.90"),
                                                 ("deflate", "1.2.840.10008.1.2.1.99")])  # fmt: skip
def test_other_lossless_wire_syntaxes(gateway_factory, orthanc_factory, tmp_path, compression, syntax):
    files = write_ct_series(tmp_path / "src", 24, 128, 128, seed=9)
    orthanc = orthanc_factory()
    gw = gateway_factory(destinations=[orthanc_destination(orthanc, compression=compression)])
    push(gw.settings.dicom.port, files)
    wait_until(lambda: ledger_counts(gw).get("delivered") == 24, timeout=60, what="24 delivered rows")
    hashes, syntaxes = orthanc_pixel_hashes(orthanc)
    assert hashes == source_pixel_hashes(files)
    assert set(syntaxes.values()) == {syntax}
    with gw.sessions() as s:
        saved = s.execute(select(func.sum(Delivery.bytes_saved))).scalar_one()
    assert saved > 0


@pytest.mark.slow
def test_destination_outage_then_everything_arrives_once(gateway_factory, orthanc_factory, tmp_path):
    n = 600
    files = write_ct_series(tmp_path / "src", n, 128, 128, seed=21)
    orthanc = orthanc_factory()
    gw = gateway_factory(destinations=[orthanc_destination(orthanc)])
    push(gw.settings.dicom.port, files)
    wait_until(lambda: orthanc.count_instances() >= 100, timeout=60, interval=0.02, what="first instances in Orthanc")
    orthanc.kill()  # SIGTERM would let Orthanc finish the association: the outage must cut it
    counts = ledger_counts(gw)
    assert counts.get("delivered", 0) < n, "Orthanc must go down mid-study"
    # telerad keeps retrying with backoff while the PACS is down
    wait_until(
        lambda: _max_attempts_with_error(gw) >= 2, timeout=30, what="at least two failed attempts recorded"
    )
    assert ledger_counts(gw).get("failed", 0) == 0
    orthanc.start()
    wait_until(lambda: ledger_counts(gw).get("delivered") == n, timeout=90, what="all rows delivered after restart")
    assert orthanc.count_instances() == n
    assert set(orthanc.sop_instance_uids()) == set(source_pixel_hashes(files))
    with gw.sessions() as s:
        rows = s.execute(select(func.count(Delivery.id), func.count(Delivery.instance_id.distinct()))).one()
    assert rows == (n, n)  # one ledger row per instance: nothing duplicated, nothing missing


def _max_attempts_with_error(gw) -> int:
    with gw.sessions() as s:
        return s.execute(
            select(func.coalesce(func.max(Delivery.attempts), 0)).where(Delivery.last_error.is_not(None))
        ).scalar_one()


@pytest.mark.slow
def test_gateway_sigkill_mid_delivery_resumes_after_restart(orthanc_factory, tmp_path):
    n = 800
    files = write_ct_series(tmp_path / "src", n, 128, 128, seed=33)
    orthanc = orthanc_factory()
    cfg = tmp_path / "telerad.toml"
    routing = {k.split(".", 1)[1]: v for k, v in FAST_ROUTING.items()} | {"lease_s": 3}
    cfg.write_text(
        "[dicom]\nquiet_period_s = 0.5\nbind = \"127.0.0.1\"\n\n[routing]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in routing.items())
        + f'\n[[destinations]]\nname = "lead"\nkind = "dicom"\nhost = "127.0.0.1"\nport = {orthanc.dicom_port}\n'
        f'ae_title = "{orthanc.aet}"\ndefault = true\n'
    )
    peer = TeleradPeer(tmp_path / "var", http=True, extra_args=["--config", str(cfg)])
    peer.start()
    try:
        push(peer.dicom_port, files)
        wait_until(lambda: orthanc.count_instances() >= 150, timeout=60, interval=0.02, what="delivery under way")
        peer.kill()
        before = orthanc.count_instances()
        assert before < n, "the kill must land mid-delivery"
        peer.start()
        wait_until(lambda: orthanc.count_instances() == n, timeout=120, what="the study completes after restart")
        uid = _study_uid(files)
        study = wait_until(
            lambda: (s := peer.get(f"/api/studies/{uid}"))["deliveries"][0]["state"] == "delivered" and s,
            timeout=30, what="API shows delivered",
        )  # fmt: skip
        assert study["deliveries"][0]["counts"]["delivered"] == n
    finally:
        peer.stop()
    assert set(orthanc.sop_instance_uids()) == set(source_pixel_hashes(files))


def _changes(orthanc) -> list[dict]:
    out, since = [], 0
    for _ in range(100):
        page = orthanc.rest(f"/changes?since={since}&limit=1000")
        out += page["Changes"]
        since = page["Last"]
        if page["Done"]:
            return out
    raise AssertionError("Orthanc /changes did not finish")


@pytest.mark.slow
def test_stroke_ctp_overtakes_a_routine_study_in_flight(gateway_factory, orthanc_factory, tmp_path):
    routine = write_ct_series(
        tmp_path / "routine", 2000, 64, 64, seed=41, body_part="ABDOMEN", series_description="ABDOMEN PORTAL VENOUS",
    )  # fmt: skip
    ctp = write_ct_series(
        tmp_path / "ctp", 160, 64, 64, seed=42, n_slices=8, acquisition_number=None, series_description="CTP BRAIN",
    )  # fmt: skip
    orthanc = orthanc_factory()
    # one slot per lane: without lanes the CTP would have to wait for the routine study's slot
    gw = gateway_factory(
        destinations=[orthanc_destination(orthanc)],
        **{"routing.stroke_associations": 1, "routing.routine_associations": 1},
    )
    push(gw.settings.dicom.port, routine)
    wait_until(lambda: orthanc.count_instances() >= 100, timeout=60, interval=0.05, what="routine study in flight")
    push(gw.settings.dicom.port, ctp)
    wait_until(lambda: ledger_counts(gw).get("delivered") == 2160, timeout=120, what="both studies delivered")
    ids = orthanc.rest("/tools/find", "POST", json_body={"Level": "Instance", "Query": {}, "Expand": True})
    series_of = {i["ID"]: i["ParentSeries"] for i in ids}
    ctp_series = orthanc.rest("/tools/find", "POST", json_body={"Level": "Series", "Query": {"SeriesDescription": "CTP BRAIN"}})
    assert len(ctp_series) == 1
    seqs: dict[str, list[int]] = {"ctp": [], "routine": []}
    for ch in _changes(orthanc):
        if ch["ChangeType"] == "NewInstance":
            seqs["ctp" if series_of[ch["ID"]] == ctp_series[0] else "routine"].append(ch["Seq"])
    assert len(seqs["ctp"]) == 160 and len(seqs["routine"]) == 2000
    assert min(seqs["routine"]) < min(seqs["ctp"]), "the routine study was in flight first"
    assert max(seqs["ctp"]) < max(seqs["routine"]), "the CTP's last instance reached Orthanc before the routine study finished"
    with gw.sessions() as s:
        lanes = dict(s.execute(select(Delivery.lane, func.count(Delivery.id)).group_by(Delivery.lane)).all())
    assert lanes == {"stroke": 160, "routine": 2000}


# Orthanc's own HTTP filter checks the auth header on DICOMweb calls (the REST API stays open for the checks).
AUTH_FILTER = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  if string.sub(uri, 1, 10) == '/dicom-web' then
    return httpHeaders['authorization'] == 'Bearer s3cret-token'
  end
  return true
end
"""


def test_stow_rs_to_orthanc_dicomweb_with_auth_header(gateway_factory, orthanc_factory, tmp_path):
    files = write_ct_series(tmp_path / "src", 60, 128, 128, seed=51)
    lua = tmp_path / "auth.lua"
    lua.write_text(AUTH_FILTER)
    orthanc = orthanc_factory(dicomweb=True, config_overrides={"LuaScripts": [str(lua)]})
    gw = gateway_factory(
        destinations=[
            {"name": "web", "kind": "dicomweb", "url": orthanc.dicomweb_url, "default": True,
             "auth_header": "Authorization: Bearer s3cret-token"},
            {"name": "web-badauth", "kind": "dicomweb", "url": orthanc.dicomweb_url, "default": True,
             "auth_header": "Authorization: Bearer wrong"},
        ],
    )  # fmt: skip
    push(gw.settings.dicom.port, files)
    uid = _study_uid(files)

    def by_dest():
        with gw.sessions() as s:
            return {d["destination"]: d for d in get_study(s, uid)["deliveries"]}

    wait_until(lambda: by_dest().get("web", {}).get("state") == "delivered", timeout=60, what="STOW-RS delivered")
    hashes, _ = orthanc_pixel_hashes(orthanc)
    assert hashes == source_pixel_hashes(files)
    # a refused auth header: the destination is unavailable, so the rows wait and retry (never lost)
    bad = wait_until(lambda: (d := by_dest()["web-badauth"])["last_error"] and d, timeout=30, what="refusal recorded")
    assert "HTTP 403" in bad["last_error"] or "HTTP 401" in bad["last_error"], bad
    assert bad["counts"]["failed"] == 0 and bad["counts"]["delivered"] == 0
