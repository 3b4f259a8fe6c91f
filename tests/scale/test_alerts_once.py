"""Two worker processes' alert senders on one PostgreSQL index: every alert delivery is sent once."""

from __future__ import annotations

import threading
import time
from collections import Counter

from sqlalchemy import text

from telerad.app import build_gateway
from tests.gateway.conftest import make_settings
from tests.stroke.conftest import SECRET_1, contact
from tests.stroke.receivers import WebhookReceiver

N_ALERTS = 40


def test_two_alert_workers_send_each_delivery_once(tmp_path, pg_url):
    with WebhookReceiver() as hook:
        values = {"database.url": pg_url, "alerts.poll_s": 0.01, "oncall": [contact("Dr On Call", 1, hook)]}
        gws = [build_gateway(make_settings(tmp_path / n, **values, roles=["work"])) for n in ("a", "b")]
        try:
            for i in range(N_ALERTS):  # raised while no sender runs: all due at once
                gws[i % 2].stroke.alerts.raise_alert(
                    key=f"test:{i}", type="stroke.incoming", rule="test", study_uid=f"1.2.3.{i}", series_uid=None,
                    clinic="Clinic", message=f"alert {i}", body={"type": "stroke.incoming", "i": i},
                    requires_ack=False)
            # both processes see the same due sends and try to lease them at the same moment: a third
            # connection holds the rows' locks until both are waiting in their UPDATE
            lock = gws[0].engine.connect()
            tx = lock.begin()
            lock.execute(text("SELECT id FROM alert_deliveries FOR UPDATE"))
            threads = [threading.Thread(target=gw.stroke.worker.tick) for gw in gws]
            for t in threads:
                t.start()
            time.sleep(1.5)
            tx.rollback()
            lock.close()
            for t in threads:
                t.join(timeout=30)
            for gw in gws:
                gw.stroke.worker.start()
            hook.wait(N_ALERTS, timeout=60)
            time.sleep(1.0)  # a duplicate would arrive within a few polls
            ids = Counter(r["headers"]["webhook-id"] for r in hook.accepted())
            assert len(ids) == N_ALERTS
            assert max(ids.values()) == 1, f"sent twice: {[k for k, n in ids.items() if n > 1]}"
        finally:
            for gw in gws:
                gw.stroke.worker.stop()
                gw.engine.dispose()
    assert SECRET_1
