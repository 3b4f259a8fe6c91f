"""When to try again, and which answers mean "never": backoff and status verdicts.

Backoff is exponential with "equal jitter": attempt ``n`` (1-based) waits a delay
drawn uniformly from ``[b/2, b]`` with ``b = min(retry_max_delay_s,
retry_initial_s * 2**(n-1))``, so senders that failed together do not retry
together. A row older than ``max_age_s`` (since it was queued or last requeued by
``telerad deliveries retry``) is failed instead of retried.

C-STORE statuses (PS3.4 B.2.3, PS3.7 C) are sorted into delivered (success and
warnings), permanent (the destination will never take this instance: 0x0122
SOP class not supported, 0x0124 not authorised, 0xA9xx data set does not match
SOP class, 0xCxxx cannot understand, ...) and transient (0xA7xx out of
resources, processing failures and anything unknown).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


def backoff_delay(attempt: int, initial_s: float, max_delay_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after ``attempt`` failures (``attempt >= 1``)."""
    if attempt < 1:
        raise ValueError(f"Argument 'attempt' should be at least 1, not {attempt!r}.")
    base = min(max_delay_s, initial_s * (2.0 ** min(attempt - 1, 60)))
    r = (rng or random).random()
    return base / 2.0 + r * base / 2.0


def next_attempt(now: datetime, attempt: int, initial_s: float, max_delay_s: float, rng: random.Random | None = None) -> datetime:
    return now + timedelta(seconds=backoff_delay(attempt, initial_s, max_delay_s, rng))


def too_old(queued_at: datetime, now: datetime, max_age_s: float) -> bool:
    return (now - queued_at).total_seconds() >= max_age_s


@dataclass(frozen=True)
class Verdict:
    delivered: bool
    permanent: bool
    message: str


_PERMANENT = {
    0x0105: "no such attribute",
    0x0106: "invalid attribute value",
    0x0107: "attribute list error",
    0x0111: "duplicate SOP instance",
    0x0112: "no such SOP instance",
    0x0116: "attribute value out of range",
    0x0117: "invalid object instance",
    0x0118: "no such SOP class",
    0x0119: "class-instance conflict",
    0x0120: "missing attribute",
    0x0121: "missing attribute value",
    0x0122: "refused: SOP class not supported",
    0x0124: "refused: not authorised",
    0x0211: "unrecognised operation",
    0x0212: "mistyped argument",
}
_WARNINGS = {
    0xB000: "warning: coercion of data elements",
    0xB006: "warning: elements discarded",
    0xB007: "warning: data set does not match SOP class",
}


def classify_status(status: int) -> Verdict:
    """What a C-STORE response status means for the ledger row."""
    code = f"0x{status:04X}"
    if status == 0x0000:
        return Verdict(True, False, "stored")
    if status in _WARNINGS or (status & 0xF000) == 0xB000:
        return Verdict(True, False, f"{_WARNINGS.get(status, 'warning')} ({code})")
    if status in _PERMANENT:
        return Verdict(False, True, f"{_PERMANENT[status]} ({code})")
    if (status & 0xFF00) == 0xA900:
        return Verdict(False, True, f"error: data set does not match SOP class ({code})")
    if (status & 0xF000) == 0xC000:
        return Verdict(False, True, f"error: cannot understand ({code})")
    if (status & 0xFF00) == 0xA700:
        return Verdict(False, False, f"refused: out of resources ({code})")
    return Verdict(False, False, f"failed with status {code}")
