"""Routing decisions: which destinations a series goes to, and in which priority lane.

Pure functions over plain data, unit-tested against header dicts::

    facts = SeriesFacts.from_headers({"Modality": "CT", "BodyPartExamined": "HEAD"},
                                     kind="ctp", clinic="Township A", calling_ae="CT_A",
                                     study_description="CT head stroke")
    route = decide(settings.routing, facts, default_destinations=["lead"], now=datetime.now())
    route.destinations == ["lead"]; route.priority == "stroke"; route.rule is None

Matching: every field a rule's ``match`` gives must match. Lists mean "any of";
strings compare case-insensitively after trimming (AE titles too). Body part comes
from (0018,0015) Body Part Examined of the series' first instance. The study
description is a regular expression searched case-insensitively. ``time_of_day``
is ``[start, end)`` in local time (``routing.timezone``) and may wrap midnight.
The first matching rule wins; with no match (or no rules) the series goes to the
default destinations with the default priority of its kind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from pacs_gateway.routing.config import RoutingRule, RoutingSettings, RuleMatch


@dataclass(frozen=True)
class SeriesFacts:
    """What rules can match on, for one series."""

    kind: str | None = None
    modality: str | None = None
    body_part: str | None = None
    clinic: str | None = None
    calling_ae: str | None = None
    study_description: str | None = None

    @classmethod
    def from_headers(
        cls,
        headers: Mapping[str, Any],
        *,
        kind: str | None = None,
        clinic: str | None = None,
        calling_ae: str | None = None,
        study_description: str | None = None,
    ) -> "SeriesFacts":
        """Facts from one instance's header dict (DICOM keywords → values)."""
        return cls(
            kind=kind,
            modality=_text(headers.get("Modality")),
            body_part=_text(headers.get("BodyPartExamined")),
            clinic=clinic,
            calling_ae=calling_ae if calling_ae is not None else _text(headers.get("CallingAE")),
            study_description=study_description if study_description is not None else _text(headers.get("StudyDescription")),
        )


@dataclass(frozen=True)
class Route:
    destinations: tuple[str, ...]
    priority: str  # "stroke" | "routine"
    rule: str | None  # the name of the rule that matched, None for the defaults


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _norm(value: str | None) -> str:
    return (value or "").strip().casefold()


def _one_of(wanted: Sequence[str], actual: str | None) -> bool:
    return not wanted or _norm(actual) in {_norm(w) for w in wanted}


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def in_window(now: time, start: time, end: time) -> bool:
    """``start <= now < end``, wrapping midnight when ``end <= start``."""
    if start < end:
        return start <= now < end
    return now >= start or now < end


def matches(match: RuleMatch, facts: SeriesFacts, local_time: time) -> bool:
    if not _one_of(match.kind, facts.kind):
        return False
    if not _one_of(match.modality, facts.modality):
        return False
    if not _one_of(match.body_part, facts.body_part):
        return False
    if not _one_of(match.clinic, facts.clinic):
        return False
    if not _one_of(match.calling_ae, facts.calling_ae):
        return False
    if match.study_description is not None and not _regex(match.study_description).search(facts.study_description or ""):
        return False
    window = match.window()
    if window is not None and not in_window(local_time, *window):
        return False
    return True


def default_priority(kind: str | None, stroke_kinds: Sequence[str]) -> str:
    return "stroke" if kind in stroke_kinds else "routine"


def local_time_of(now: datetime, tz_name: str | None) -> time:
    """Wall-clock time of ``now`` in ``tz_name`` (the host's zone when None)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    local = now.astimezone(ZoneInfo(tz_name)) if tz_name else now.astimezone()
    return local.time().replace(tzinfo=None)


def first_match(rules: Sequence[RoutingRule], facts: SeriesFacts, local_time: time) -> RoutingRule | None:
    for rule in rules:
        if matches(rule.match, facts, local_time):
            return rule
    return None


def decide(
    routing: RoutingSettings,
    facts: SeriesFacts,
    *,
    default_destinations: Sequence[str],
    now: datetime | None = None,
) -> Route:
    """The route of one series: the first matching rule, else the defaults."""
    now = now or datetime.now(timezone.utc)
    rule = first_match(routing.rules, facts, local_time_of(now, routing.timezone))
    fallback = default_priority(facts.kind, routing.stroke_kinds)
    if rule is None:
        return Route(tuple(default_destinations), fallback, None)
    dests = tuple(default_destinations) if rule.destinations is None else tuple(dict.fromkeys(rule.destinations))
    return Route(dests, rule.priority or fallback, rule.name)


def unknown_destinations(routing: RoutingSettings, known: Sequence[str]) -> list[tuple[str, str]]:
    """``[(field, name)]`` for every rule destination that is not a known destination."""
    names = set(known)
    out = []
    for i, rule in enumerate(routing.rules):
        for j, name in enumerate(rule.destinations or ()):
            if name not in names:
                out.append((f"routing.rules.{i}.destinations.{j}", name))
    return out
