"""One triage job: claim the run, analyse in the worker, store, alert, then results as DICOM.

The alert goes out as soon as the numbers and the summary PNG exist; maps, slice
PNGs and the SEG/SR/SC objects follow. Any failure becomes a result the stroke
team sees ("automated perfusion analysis failed: <reason>; read manually"),
never silence: a rejected series, a failed analysis, an unexpected error, and a
worker that keeps crashing (after ``triage.max_attempts`` tries).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from pacs_gateway.index.models import Clinic, Instance, Series, Study
from stroke import compute, results, rules
from stroke.compute import WorkerCrashed
from stroke.config import AlertRule
from stroke.models import TriageRun
from telerad.clock import isoformat, utcnow

if TYPE_CHECKING:
    from pacs_gateway.service import Gateway
    from stroke.alerts import AlertService
    from stroke.compute import ComputePool

log = logging.getLogger(__name__)
OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
#: the rule name of an alert that only tells the team a later analysis replaced the one they were alerted on
UPDATE_RULE = "update: the later analysis matches no rule"


def _publish(store, outputs_rel: str) -> None:
    """Upload triage outputs to a remote object store; a failure costs other hosts the PNGs, never the alert."""
    try:
        store.put_tree(outputs_rel)
    except Exception as exc:  # noqa: BLE001
        log.error("triage outputs %s not published to the object store: %s", outputs_rel, exc)


def _fail_doc(run: TriageRun, reason: str) -> dict:
    return {"status": "error", "error": reason, "study_instance_uid": run.study_uid,
            "series_instance_uid": run.series_uid, "algorithm": {"name": "telerad-ctp", "version": run.algorithm_version},
            "quality": {"reliable": False, "warnings": [{"code": "triage_error", "severity": "fatal", "message": reason}]}}


class TriageRunner:
    def __init__(self, gateway: Gateway, alerts: AlertService, pool: ComputePool):
        self.gw, self.alerts, self.pool = gateway, alerts, pool
        self.settings = gateway.settings
        self.outputs_root = gateway.store.root / "_triage"

    # claiming ------------------------------------------------------------------------
    def _claim(self, run_id: int) -> TriageRun | None:
        now = utcnow()
        with self.gw.sessions.begin() as s:
            n = s.execute(update(TriageRun).where(TriageRun.id == run_id, TriageRun.state == "queued").values(
                state="running", attempts=TriageRun.attempts + 1, started_at=now, owner=OWNER,
                lease_until=now + timedelta(seconds=self.settings.triage.lease_s))).rowcount
            return s.get(TriageRun, run_id) if n == 1 else None

    def _set(self, run_id: int, **values) -> None:
        with self.gw.sessions.begin() as s:
            s.execute(update(TriageRun).where(TriageRun.id == run_id, TriageRun.owner == OWNER).values(**values))

    def run(self, run_id: int) -> str:
        run = self._claim(run_id)
        if run is None:
            return "not queued"  # a duplicate task, or another worker has it
        try:
            return self._run(run)
        except WorkerCrashed as exc:
            if run.attempts < self.settings.triage.max_attempts:
                log.error("triage of series %s: %s; will retry (attempt %d of %d)", run.series_uid, exc,
                          run.attempts, self.settings.triage.max_attempts)
                self._set(run.id, state="queued", reason=str(exc), lease_until=None)
                return "retry"
            return self._give_up(run, f"{exc}, {run.attempts} times")
        except Exception as exc:  # a bug or a broken file: say so, never stay silent
            log.exception("triage of series %s failed unexpectedly", run.series_uid)
            return self._give_up(run, f"internal error: {type(exc).__name__}: {exc}")

    def _give_up(self, run: TriageRun, reason: str) -> str:
        with self.gw.sessions() as s:
            analysed = s.get(TriageRun, run.id).status is not None
        if analysed:  # the numbers and the alert are out; only the result objects failed
            log.error("triage of series %s: result objects not stored or routed: %s", run.series_uid, reason)
            self._set(run.id, state="done", reason=f"result objects failed: {reason}", finished_at=utcnow(),
                      lease_until=None)
            return "error"
        doc = _fail_doc(run, reason)
        self._set(run.id, state="done", status="error", reason=reason, result=doc, reliable=False,
                  finished_at=utcnow(), lease_until=None)
        self._alert(run, doc, has_summary=False)
        return "error"

    # the job -------------------------------------------------------------------------
    def _inputs(self, run: TriageRun):
        with self.gw.sessions() as s:
            study = s.execute(select(Study).where(Study.study_uid == run.study_uid)).scalar_one()
            # One read of the study's series: "which are CTP" and "is a CT series still arriving (no kind yet: maybe
            # more time points of this CTP)" must come from the same snapshot. Read apart (SQLite gives each SELECT
            # its own), a series completed between the two reads was in neither, and a CTP stored one series per
            # time point was analysed without it, then again with it (two alerts).
            series = list(s.execute(select(Series).where(Series.study_id == study.id)).scalars())
            ctp = [sr for sr in series if sr.kind == "ctp"]
            arriving = any(sr.state == "receiving" and sr.modality == "CT" for sr in series)
            files = {sr.series_uid: list(s.execute(select(Instance.path).where(Instance.series_id == sr.id)
                                                   .order_by(Instance.id)).scalars()) for sr in ctp}
            covering = s.execute(select(TriageRun).where(
                TriageRun.study_uid == run.study_uid, TriageRun.id != run.id, TriageRun.state == "done",
                TriageRun.algorithm_version == run.algorithm_version, TriageRun.finished_at >= run.queued_at)
            ).scalars().all()
        return study, ctp, files, covering, arriving

    def _run(self, run: TriageRun) -> str:
        study, ctp, files, covering, arriving = self._inputs(run)
        if arriving or any(sr.state != "complete" for sr in ctp):
            # more images of the study are arriving: look again in a moment (the job stays queued)
            self._set(run.id, state="queued", attempts=run.attempts - 1, lease_until=None, owner=None)
            return "later"
        if any(run.series_uid in (c.source_series or []) for c in covering):
            self._set(run.id, state="covered", finished_at=utcnow(), lease_until=None)
            return "covered"
        sources = sorted(files)
        store = self.gw.store
        outputs_rel = f"_triage/{run.study_uid}/{run.series_uid}"
        job = {"key": f"{run.id}:{run.generation}", "files": [str(store.path(p)) for u in sources for p in files[u]],
               "scratch": str(store.tmp / f"triage-{run.id}"), "outputs": str(store.path(outputs_rel)),
               "backend": self.settings.triage.backend, "device": self.settings.triage.device,
               "objects_dir": str(store.tmp), "write_maps": self.settings.triage.write_maps,
               "created": isoformat(run.queued_at)}
        timeout = self.settings.triage.lease_s
        store.fetch([p for u in sources for p in files[u]])  # a remote store: into its local cache first
        doc = self.pool.call(compute.analyze_job, job, timeout=timeout)
        if doc.get("status") != "rejected":
            _publish(store, outputs_rel)  # the summary PNG, for alerts and the viewer on other hosts
        doc.setdefault("algorithm", {"name": "telerad-ctp", "version": run.algorithm_version})
        status = "ok" if doc.get("status") == "ok" else "failed"
        reason = None if rules.outcome(doc) == "triage" else rules.failure_reason(doc)
        self._set(run.id, status=status, reason=reason, result=doc, reliable=bool((doc.get("quality") or {}).get("reliable")),
                  core_ml=doc.get("core_ml"), tmax6_ml=doc.get("tmax6_ml"), tmax10_ml=doc.get("tmax10_ml"),
                  mismatch_ml=doc.get("mismatch_ml"), mismatch_ratio=doc.get("mismatch_ratio"),
                  source_series=sources, outputs_dir=outputs_rel if doc.get("status") != "rejected" else None)
        log.info("triage of series %s: %s (core %s mL, Tmax>6s %s mL)", run.series_uid, doc.get("status"),
                 _ml(doc.get("core_ml")), _ml(doc.get("tmax6_ml")))
        self._alert(run, doc, has_summary=doc.get("status") != "rejected")
        objects = []
        if doc.get("status") != "rejected":
            written = self.pool.call(compute.finish_job, job, timeout=timeout)
            _publish(store, outputs_rel)
            objects = results.store_objects(self.gw, written, clinic_id=study.clinic_id)
            results.route_objects(self.gw, run.study_uid, objects, kind="ctp")
        self._set(run.id, state="done", finished_at=utcnow(), lease_until=None,
                  objects=[{k: o[k] for k in ("series_uid", "sop_uid", "modality")} for o in objects])
        return status

    # alerting ------------------------------------------------------------------------
    def _alert(self, run: TriageRun, doc: dict, *, has_summary: bool) -> int | None:
        if not self.settings.alerts.enabled:
            return None
        on = rules.outcome(doc)
        rule = rules.decide(self.settings.alerts.rules, on, doc)
        # no rule matches: still tell a team that was alerted on an earlier analysis of the study, which this one
        # replaces (raise_alert raises it only if there is such an alert, and supersedes it)
        update_only = rule is None
        if update_only:
            rule = AlertRule(name=UPDATE_RULE, on=on, tier=1, escalate=False)
        alert_type = rules.ALERT_TYPES[on]
        clinic = self._clinic(run.study_uid)
        now = utcnow()
        body = rules.build_body(alert_type, study_uid=run.study_uid, series_uid=run.series_uid, clinic=clinic,
                                  result=doc, public_url=self.settings.alerts.public_url, created_at=now,
                                  run_id=run.id, has_summary=has_summary)
        version = (doc.get("algorithm") or {}).get("version") or run.algorithm_version
        # one alert per analysis: a series analysed again after more of its images arrived (generation 2, ...) is
        # alerted again, superseding the study's earlier triage alerts; a rerun of the same analysis is not
        generation = "" if run.generation <= 1 else f":g{run.generation}"
        alert_id = self.alerts.raise_alert(
            key=f"triage:{run.series_uid}:{version}{generation}", type=alert_type, rule=rule.name,
            study_uid=run.study_uid, series_uid=run.series_uid, clinic=clinic, message=body["message"], body=body,
            requires_ack=rule.escalate, tier=rule.tier, triage_run_id=run.id,
            supersedes_types=(rules.ALERT_TYPES["triage"], rules.ALERT_TYPES["triage_failed"]),
            only_to_supersede=update_only)
        if alert_id is None and update_only:
            log.info("triage of series %s: no alert rule matched, or the live alert already says the same",
                     run.series_uid)
        return alert_id

    def _clinic(self, study_uid: str) -> str | None:
        with self.gw.sessions() as s:
            return s.execute(select(Clinic.name).join(Study, Study.clinic_id == Clinic.id)
                             .where(Study.study_uid == study_uid)).scalar()


def _ml(value) -> str:
    """A volume for the log: one decimal, or 'n/a' when the analysis gave none."""
    return "n/a" if value is None else f"{value:.1f}"
