"""The result of one CT-perfusion analysis: numbers, verdicts, quality and maps."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from triage.version import ALGORITHM  # noqa: F401  (re-exported: name and version of the algorithm)

#: Top-level keys of ``TriageResult.to_json_dict()`` (the ``telerad analyze --json`` object), in order.
JSON_KEYS: tuple[str, ...] = (
    "status",
    "study_instance_uid",
    "series_instance_uid",
    "algorithm",
    "core_ml",
    "tmax6_ml",
    "tmax10_ml",
    "mismatch_ml",
    "mismatch_ratio",
    "hypoperfusion_intensity_ratio",
    "affected_side",
    "eligibility",
    "quality",
    "timings_s",
)


@dataclass(frozen=True)
class TriageResult:
    """One analysis of one CTP series.

    ``status`` is "ok" or "failed"; a failed result has ``None`` volumes and its reasons as
    ``severity == "fatal"`` entries in ``quality["warnings"]``.

    maps : float32 (Z, Y, X) "cbf" (mL/100 g/min), "cbv" (mL/100 g), "mtt" (s), "tmax" (s), "rcbf"
        (fraction of healthy contralateral CBF); bool (Z, Y, X) "core", "tmax6", "tmax10", "brain".
        Empty for a failed result.
    """

    status: str
    study_instance_uid: str
    series_instance_uid: str
    algorithm: dict
    core_ml: float | None
    tmax6_ml: float | None
    tmax10_ml: float | None
    mismatch_ml: float | None
    mismatch_ratio: float | None
    hypoperfusion_intensity_ratio: float | None
    affected_side: str | None
    eligibility: dict
    quality: dict
    timings_s: dict
    maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json_dict(self) -> dict[str, Any]:
        """The ``telerad analyze --json`` object: JSON-safe (no NaN, no arrays of maps)."""
        return {key: json_safe(getattr(self, key)) for key in JSON_KEYS}


def json_safe(value: Any) -> Any:
    """Convert numpy scalars/small arrays, tuples and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value
