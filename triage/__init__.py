"""Stroke CT-perfusion triage: arrays in, numbers out.

``analyze(series, backend="numpy", device="cpu") -> TriageResult`` is the library entry point.
"""

from triage.api import analyze
from triage.result import ALGORITHM, TriageResult

__all__ = ["ALGORITHM", "TriageResult", "analyze"]
