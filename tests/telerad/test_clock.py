"""The one ISO-8601 formatter of stored times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from telerad.clock import as_utc, isoformat


def test_naive_times_are_utc_and_keep_their_microseconds():
    naive = datetime(2026, 12, 2, 5, 3, 44, 123456)  # as SQLite hands it back
    assert isoformat(naive) == "2026-12-02T05:03:44.123456+00:00"
    assert isoformat(naive.replace(microsecond=0)) == "2026-12-02T05:03:44+00:00"
    assert isoformat(None) is None


def test_aware_times_keep_their_offset():
    cet = datetime(2026, 12, 2, 6, 0, tzinfo=timezone(timedelta(hours=1)))
    assert isoformat(cet) == "2026-12-02T06:00:00+01:00" == as_utc(cet).isoformat()
