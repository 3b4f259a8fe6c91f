"""Header-only series classification: ``ctp``, ``ncct_head``, ``cta_head``, ``xray`` or ``other``.

Input is the list of per-instance header dicts of one series, keyed by DICOM keyword
(the :data:`HEADER_KEYWORDS` that the gateway extracts with ``stop_before_pixels``).
Values may be pydicom types, plain ``str``/``int``/``float``, lists, or backslash
joined strings; missing and empty values are fine.

Order of decisions for one series (:func:`classify_series`):

1. no instances → ``other``; Modality CR/DX/DR/RG or a CR/DX SOP class → ``xray``;
   not CT → ``other``; localizers, dose pages, bolus-tracking monitor scans and
   perfusion result maps (rule set ``exclude``) → ``other``.
2. ``ctp`` by structure: at least ``min_positions`` table positions each acquired at
   ``min_repetitions`` or more distinct time points.  Structure beats keywords: a 4D
   series named "Head 5mm" is ``ctp``; a single volume named "Perfusion" is not.
   Keywords decide only when the structure cannot be told (no positions or no times).
3. CTA evidence (keywords, or contrast agent plus thin slices) in a head or
   neurovascular region → ``cta_head``; head region without contrast → ``ncct_head``.
4. everything else → ``other``.

:func:`classify_study` adds the one-series-per-time-point CTP layout: CT series of a
study with the same set of table positions and distinct acquisition times, at least
``min_repetitions`` of them, are all ``ctp``.

The rules are data (``classify_rules.toml`` next to this module), validated by
:mod:`pacs_gateway.classify_rules` when this module is imported; :func:`load_rules`
reads a site's own file and every function takes it as ``rules=``.
Pure Python: no numpy, no pydicom.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

from pacs_gateway.classify_rules import (
    DEFAULT_RULES, TEXT_FIELDS, ClassifyRules, ClassifyRulesError, code, fold, load_rules, token,
)

__all__ = [
    "HEADER_KEYWORDS", "KINDS", "ClassifyRules", "ClassifyRulesError", "DEFAULT_RULES",
    "classify_series", "classify_study", "header_values", "load_rules", "summarize",
]

KINDS: tuple[str, ...] = ("ctp", "ncct_head", "cta_head", "xray", "other")

HEADER_KEYWORDS: tuple[str, ...] = (
    "Modality", "SOPClassUID", "SeriesDescription", "ProtocolName", "StudyDescription",
    "BodyPartExamined", "ImageType", "ContrastBolusAgent", "SliceThickness",
    "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber",
    "AcquisitionNumber", "AcquisitionTime", "ContentTime",
    "TemporalPositionIdentifier", "NumberOfTemporalPositions",
)
"""DICOM keywords the gateway extracts per instance (no pixel data needed)."""


# ---------------------------------------------------------------------------------------
# Header value coercion (values come from pydicom, JSON, or hand-written dicts)


def _is_sequence(value: Any) -> bool:
    return not isinstance(value, (str, bytes, bytearray)) and hasattr(value, "__iter__")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1", "replace").strip("\x00 ")
    if _is_sequence(value):
        return "\\".join(_text(v) for v in value)
    return str(value).strip()


def _parts(value: Any) -> list[str]:
    """Multi-valued element as stripped strings (list, MultiValue or backslash string)."""
    if _is_sequence(value):
        return [_text(v) for v in value]
    return [p.strip() for p in _text(value).split("\\")] if _text(value) else []


def _finite(text: Any) -> float | None:
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _float(value: Any) -> float | None:
    """First value of a numeric element (DS/IS, number, list or backslash string)."""
    parts = _parts(value)
    return _finite(parts[0]) if parts else None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    """All ``count`` values of a numeric element, or None when any is missing or bad."""
    if _is_sequence(value):
        numbers = tuple(_finite(v) for v in value)
    else:
        numbers = tuple(_finite(p) for p in _text(value).split("\\"))
    return None if len(numbers) != count or None in numbers else numbers  # type: ignore[return-value]


def _number_or_text(value: Any) -> int | str | None:
    text = _text(value)
    if not text:
        return None
    try:
        return int(float(text))
    except ValueError:
        return text


def _seconds(value: Any) -> float | str | None:
    """DICOM TM (``HHMMSS.FFFFFF``, or the old ``HH:MM:SS``) as seconds of the day."""
    text = _text(value).replace(":", "")
    if not text:
        return None
    try:
        hours, minutes = int(text[0:2]), int(text[2:4] or 0)
        return hours * 3600 + minutes * 60 + float(text[4:] or 0)
    except ValueError:
        return text


def header_values(dataset: Any) -> dict[str, Any]:
    """Pick :data:`HEADER_KEYWORDS` from a pydicom Dataset (or a mapping) as JSON-friendly values.

    Missing elements are left out.  Numbers stay numbers, multi-valued elements become lists.
    """

    def plain(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return _text(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if _is_sequence(value):
            return [plain(v) for v in value]
        return str(value)

    out: dict[str, Any] = {}
    for keyword in HEADER_KEYWORDS:
        value = dataset.get(keyword) if isinstance(dataset, Mapping) else getattr(dataset, keyword, None)
        if value is not None and value != "":
            out[keyword] = plain(value)
    return out


# ---------------------------------------------------------------------------------------
# A series seen through its headers


@dataclass
class _SeriesView:
    instances: list[Mapping[str, Any]]
    rules: ClassifyRules

    @cached_property
    def modality(self) -> str:
        values = Counter(token(_text(i.get("Modality"))) for i in self.instances)
        values.pop("", None)
        return values.most_common(1)[0][0] if values else ""

    @cached_property
    def sop_classes(self) -> set[str]:
        return {_text(i.get("SOPClassUID")) for i in self.instances} - {""}

    @cached_property
    def texts(self) -> dict[str, str]:
        """Folded distinct values per text field, joined with ' | '."""
        out: dict[str, str] = {}
        for name in TEXT_FIELDS:
            raw = {" ".join(_parts(i.get(name))) for i in self.instances}
            values = {fold(v) for v in raw} - {""}
            out[name] = " | ".join(sorted(values))
        return out

    @cached_property
    def image_type(self) -> set[str]:
        return {token(p) for p in {p for i in self.instances for p in _parts(i.get("ImageType"))}} - {""}

    @cached_property
    def body_parts(self) -> set[str]:
        return {code(_text(i.get("BodyPartExamined"))) for i in self.instances} - {""}

    @cached_property
    def slice_thickness(self) -> float | None:
        values = [t for t in (_float(i.get("SliceThickness")) for i in self.instances) if t is not None]
        return statistics.median(values) if values else None

    @cached_property
    def contrast_agent(self) -> bool:
        null = {fold(v) for v in self.rules.contrast.agent_null_values} | {""}
        agents = {_text(i.get("ContrastBolusAgent")) for i in self.instances}
        return any(fold(a) not in null for a in agents)

    @cached_property
    def normal(self) -> tuple[float, float, float]:
        """Slice normal from the most common ImageOrientationPatient (axial when unknown)."""
        orientations = Counter(
            tuple(round(v, 3) for v in o)
            for o in (_floats(i.get("ImageOrientationPatient"), 6) for i in self.instances) if o
        )
        if orientations:
            r, c = orientations.most_common(1)[0][0][:3], orientations.most_common(1)[0][0][3:]
            n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
            length = sum(v * v for v in n) ** 0.5
            if length > 1e-6:
                return (n[0] / length, n[1] / length, n[2] / length)
        return (0.0, 0.0, 1.0)

    @cached_property
    def z(self) -> list[float | None]:
        """Position of each instance along the slice normal, mm (None when unknown)."""
        n = self.normal
        out: list[float | None] = []
        for inst in self.instances:
            p = _floats(inst.get("ImagePositionPatient"), 3)
            out.append(p[0] * n[0] + p[1] * n[1] + p[2] * n[2] if p else None)
        return out

    @cached_property
    def time_keys(self) -> list[tuple[Any, ...]] | None:
        """Per-instance acquisition-time identity, or None when the headers carry no time at all.

        Uses (TemporalPositionIdentifier, AcquisitionTime, AcquisitionNumber); ContentTime
        only when all three are missing everywhere, since reconstructions of one
        acquisition made later differ in ContentTime alone.
        """
        keys = [
            (_number_or_text(i.get("TemporalPositionIdentifier")), _seconds(i.get("AcquisitionTime")),
             _number_or_text(i.get("AcquisitionNumber")))
            for i in self.instances
        ]
        if any(k != (None, None, None) for k in keys):
            return keys
        content = [(_seconds(i.get("ContentTime")),) for i in self.instances]
        return content if any(k != (None,) for k in content) else None

    @cached_property
    def clusters(self) -> list[tuple[float, list[int]]] | None:
        """Table positions: (centre z mm, instance indices), sorted by z; None without positions."""
        known = sorted((z, idx) for idx, z in enumerate(self.z) if z is not None)
        if not known or len(known) * 2 < len(self.instances):
            return None
        tol = self.rules.ctp.position_tolerance_mm
        groups: list[list[tuple[float, int]]] = [[known[0]]]
        for z, idx in known[1:]:
            if z - groups[-1][-1][0] > tol:
                groups.append([])
            groups[-1].append((z, idx))
        return [(statistics.fmean(z for z, _ in g), [idx for _, idx in g]) for g in groups]

    def is_ct(self) -> bool:
        if self.modality:
            return self.modality in {token(m) for m in self.rules.modality.ct}
        return bool(self.sop_classes & set(self.rules.modality.ct_sop_classes))

    def is_xray(self) -> bool:
        return (self.modality in {token(m) for m in self.rules.modality.xray}
                or bool(self.sop_classes & set(self.rules.modality.xray_sop_classes)))


def _structure(view: _SeriesView, trace: dict[str, Any]) -> str:
    """'4d' (enough positions acquired at many times), 'dynamic_few_positions' (a
    bolus-tracking style repeat of one or a few slices), 'not_4d', or 'unknown' (no
    positions or no time information in the headers)."""
    rules = view.rules.ctp
    clusters, keys = view.clusters, view.time_keys
    if clusters is None:
        temporal = {k[0] for k in keys if len(k) == 3} - {None} if keys else set()
        declared = max((_float(i.get("NumberOfTemporalPositions")) or 0 for i in view.instances), default=0)
        trace.update(positions=None, time_points=len(temporal))
        if len(temporal) >= rules.min_repetitions and declared >= rules.min_repetitions:
            return "4d"
        return "unknown"
    if keys is None:
        # No time element at all (stripped by an anonymiser?): count the instances stacked
        # at each position instead; a plain volume has one per position.
        trace["time"] = "no time elements; counting instances per position"
        keys = [("instance", idx) for idx in range(len(view.instances))]
    repetitions = [len({keys[idx] for idx in members}) for _, members in clusters]
    repeated = [len(m) for (_, m), r in zip(clusters, repetitions) if r >= rules.min_repetitions]
    trace.update(positions=len(clusters), max_repetitions=max(repetitions), time_points=len(set(keys)))
    located = sum(len(m) for _, m in clusters)
    if not repeated or sum(repeated) < rules.min_repeated_fraction * located:
        return "not_4d"
    return "4d" if len(repeated) >= rules.min_positions else "dynamic_few_positions"


def _region(view: _SeriesView) -> str:
    """'head', 'neck', 'other' or 'unknown'.

    Evidence in order: the series' own text (SeriesDescription, ProtocolName), then
    BodyPartExamined (code lists, then its text), then StudyDescription.
    """
    region = view.rules.region
    keyword_sets = (("head", region.head), ("neck", region.neck), ("other", region.other))

    def by_text(fields: tuple[str, ...]) -> str | None:
        return next((name for name, terms in keyword_sets if terms.find(view.texts, fields)), None)

    found = by_text(("SeriesDescription", "ProtocolName"))
    if found:
        return found
    if view.body_parts & {code(p) for p in region.head_body_parts}:
        return "head"
    if view.body_parts & {code(p) for p in region.neck_body_parts}:
        return "neck"
    return by_text(("BodyPartExamined",)) or by_text(("StudyDescription",)) or "unknown"


def _excluded(view: _SeriesView) -> str | None:
    rules = view.rules.exclude
    for uid in view.sop_classes:
        if any(uid == p or uid.startswith(p + ".") for p in rules.sop_class_prefixes):
            return f"SOP class {uid}"
    tokens = view.image_type & {token(t) for t in rules.image_type}
    if tokens:
        return f"ImageType {sorted(tokens)}"
    hits = rules.keywords.find(view.texts)
    return f"keywords {hits}" if hits else None


def _ctp_blocked(view: _SeriesView) -> bool:
    rules = view.rules.ctp
    vetoed = view.body_parts & {code(p) for p in rules.veto_body_parts}
    return bool(vetoed or rules.veto.find(view.texts))


def _decide(view: _SeriesView, trace: dict[str, Any]) -> str:
    rules = view.rules
    if not view.instances:
        trace["reason"] = "no instances"
        return "other"
    if view.is_xray():
        trace["reason"] = f"x-ray modality {view.modality or sorted(view.sop_classes)}"
        return "xray"
    if not view.is_ct():
        trace["reason"] = f"not CT (modality {view.modality or 'missing'})"
        return "other"
    excluded = _excluded(view)
    if excluded:
        trace["reason"] = f"excluded: {excluded}"
        return "other"

    structure = trace["structure"] = _structure(view, trace)
    if structure == "dynamic_few_positions":
        trace["reason"] = "one or a few slices repeated over time (bolus tracking or test bolus)"
        return "other"
    if not _ctp_blocked(view):
        if structure == "4d":
            trace["reason"] = "same table positions acquired at many times"
            return "ctp"
        ctp_words = rules.ctp.keywords.find(view.texts)
        if structure == "unknown" and ctp_words and not rules.ctp.exclude.find(view.texts):
            trace["reason"] = f"perfusion keywords {ctp_words} (structure unknown)"
            return "ctp"

    region = trace["region"] = _region(view)
    noncontrast = rules.contrast.noncontrast.find(view.texts)
    cta_words = rules.cta.keywords.find(view.texts)
    thin = view.slice_thickness is not None and view.slice_thickness <= rules.cta.max_slice_thickness_mm
    if "SeriesDescription" in noncontrast:
        cta = False
    elif noncontrast:
        cta = bool(set(cta_words) - {"ProtocolName"})
    else:
        cta = bool(cta_words) or (view.contrast_agent and thin)
    if cta:
        neurovascular = rules.cta.neurovascular.find(view.texts)
        trace["reason"] = f"CTA ({cta_words or 'contrast agent, thin slices'}), region {region}"
        if region == "head" or (region in ("neck", "unknown") and neurovascular):
            return "cta_head"
        return "other"
    contrast = not noncontrast and (view.contrast_agent or bool(rules.contrast.keywords.find(view.texts)))
    trace["reason"] = f"region {region}, {'contrast' if contrast else 'no contrast'}"
    return "ncct_head" if region == "head" and not contrast else "other"


# ---------------------------------------------------------------------------------------
# Public API


def classify_series(instances: list[dict], *, rules: ClassifyRules | None = None) -> str:
    """Kind of one series from its per-instance header dicts (order does not matter)."""
    return _decide(_SeriesView(list(instances), rules or DEFAULT_RULES), {})


def summarize(instances: list[dict], *, rules: ClassifyRules | None = None) -> dict[str, Any]:
    """Kind plus the evidence behind it (for logs and debugging; no patient data)."""
    view = _SeriesView(list(instances), rules or DEFAULT_RULES)
    trace: dict[str, Any] = {"instances": len(view.instances)}
    trace["kind"] = _decide(view, trace)
    trace.update(modality=view.modality, slice_thickness_mm=view.slice_thickness)
    return trace


def classify_study(series: dict[str, list[dict]], *, rules: ClassifyRules | None = None) -> dict[str, str]:
    """Kinds of all series of one study (series_uid -> kind).

    Also finds CTP stored as one series per time point: CT series (not excluded, not
    already 4D) with the same table positions, at least ``min_positions`` of them, and
    at least ``min_repetitions`` distinct acquisition times among them are each ``ctp``.
    """
    rules = rules or DEFAULT_RULES
    tol = rules.ctp.position_tolerance_mm
    kinds: dict[str, str] = {}
    groups: list[tuple[tuple[float, ...], list[float], list[str], set[frozenset]]] = []
    for uid, instances in series.items():
        view = _SeriesView(list(instances), rules)
        kinds[uid] = _decide(view, {})
        if kinds[uid] in ("ctp", "xray") or not view.is_ct() or _excluded(view) or _ctp_blocked(view):
            continue
        clusters, keys = view.clusters, view.time_keys
        if clusters is None or keys is None or len(clusters) < rules.ctp.min_positions:
            continue
        centres = [c for c, _ in clusters]
        time_signature = frozenset(keys)
        for normal, other_centres, uids, signatures in groups:
            same_normal = sum(a * b for a, b in zip(normal, view.normal)) > 0.999
            if same_normal and len(other_centres) == len(centres) and all(
                abs(a - b) <= tol for a, b in zip(other_centres, centres)
            ):
                uids.append(uid)
                signatures.add(time_signature)
                break
        else:
            groups.append((view.normal, centres, [uid], {time_signature}))
    for _, _, uids, signatures in groups:
        if len(signatures) >= rules.ctp.min_repetitions:
            kinds.update((uid, "ctp") for uid in uids)
    return kinds
