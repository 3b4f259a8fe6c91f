"""Stroke CT-perfusion triage: arrays in, numbers out.

``analyze(series, backend="numpy", device="cpu") -> TriageResult`` is the library entry point.
Attributes are imported on first use, so ``from triage.version import ALGORITHM`` (what the
gateway needs) does not load numpy into the receiving process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from triage.version import ALGORITHM

if TYPE_CHECKING:  # pragma: no cover
    from triage.api import analyze
    from triage.result import TriageResult

__all__ = ["ALGORITHM", "TriageResult", "analyze"]


def __getattr__(name: str) -> Any:
    if name == "analyze":
        from triage.api import analyze

        return analyze
    if name == "TriageResult":
        from triage.result import TriageResult

        return TriageResult
    raise AttributeError(f"module 'triage' has no attribute {name!r}")
