"""Wires triage-in-the-loop into the running gateway: roster, alerts, worker process, jobs."""

from __future__ import annotations

import logging

from stroke.alerts import AlertService
from stroke.delivery import AlertWorker
from stroke.jobs import TriageJobs
from stroke.pool import ComputePool
from stroke.roster import Roster
from stroke.runner import TriageRunner

log = logging.getLogger(__name__)


class StrokeLoop:
    def __init__(self, gateway):
        s = gateway.settings
        self.roster = Roster(gateway.sessions)
        self.roster.sync_config(s.oncall)
        self.alerts = AlertService(s.alerts, gateway.sessions, self.roster, on_new=lambda: self.worker.notify())
        self.worker = AlertWorker(s.alerts, gateway.sessions, self.alerts, gateway.store.root)
        self.pool = ComputePool()
        self.runner = TriageRunner(gateway, self.alerts, self.pool)
        self.jobs = TriageJobs(gateway, self.runner, self.alerts)

    def start(self) -> None:
        if self.jobs.settings.triage.enabled:
            self.pool.warm()
        self.worker.start()
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
        self.worker.stop()
        self.pool.stop()
