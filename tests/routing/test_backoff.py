"""Backoff with jitter, the max age, and which C-STORE statuses are permanent."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from pacs_gateway.routing.retry import backoff_delay, classify_status, next_attempt, too_old


def test_backoff_doubles_within_jitter_bounds_and_is_capped():
    rng = random.Random(7)
    for attempt, base in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (12, 30.0), (500, 30.0)]:
        for _ in range(200):
            d = backoff_delay(attempt, 2.0, 30.0, rng)
            assert base / 2 <= d <= base, (attempt, d)


def test_backoff_jitter_spreads_senders_that_failed_together():
    rng = random.Random(1)
    delays = [backoff_delay(4, 1.0, 60.0, rng) for _ in range(500)]
    assert max(delays) - min(delays) > 3.0  # spread over most of [4, 8]
    assert len({round(d, 3) for d in delays}) > 400


def test_backoff_rejects_attempt_zero():
    with pytest.raises(ValueError, match="'attempt'"):
        backoff_delay(0, 1.0, 10.0)


def test_next_attempt_and_max_age():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    when = next_attempt(now, 1, 10.0, 100.0, random.Random(3))
    assert now + timedelta(seconds=5) <= when <= now + timedelta(seconds=10)
    assert not too_old(now - timedelta(seconds=59), now, 60)
    assert too_old(now - timedelta(seconds=60), now, 60)


@pytest.mark.parametrize(
    "status, delivered, permanent, words",
    [
        (0x0000, True, False, "stored"),
        (0xB000, True, False, "coercion"),
        (0xB007, True, False, "warning"),
        (0x0122, False, True, "SOP class not supported"),
        (0x0124, False, True, "not authorised"),
        (0xA900, False, True, "does not match SOP class"),
        (0xA9FF, False, True, "does not match SOP class"),
        (0xC000, False, True, "cannot understand"),
        (0xC211, False, True, "cannot understand"),
        (0xA700, False, False, "out of resources"),
        (0xA702, False, False, "out of resources"),
        (0x0110, False, False, "0x0110"),
        (0x0213, False, False, "0x0213"),
    ],
)
def test_status_verdicts(status, delivered, permanent, words):
    v = classify_status(status)
    assert (v.delivered, v.permanent) == (delivered, permanent)
    assert words in v.message and f"0x{status:04X}" in v.message or status == 0
