"""Library entry point: ``analyze(series) -> TriageResult``."""

from __future__ import annotations

from triage.result import TriageResult
from triage.series import PerfusionSeries


def analyze(series: PerfusionSeries, *, backend: str = "numpy", device: str = "cpu") -> TriageResult:
    """Analyse one CTP series.

    series : PerfusionSeries with hu (T, Z, Y, X) float32 HU.
    backend : "numpy" (reference) or "torch"; device : "cpu" or "cuda" (torch only).

    Raises NotCTPError when the input is not a usable CTP (fewer than 15 time points, a single
    phase, bad geometry or sampling). A real CTP that cannot be analysed (no usable AIF,
    uncorrectable motion) returns a result with ``status == "failed"`` and the reasons as fatal
    entries in ``quality["warnings"]``.
    """
    from triage.perfusion.pipeline import run_pipeline

    return run_pipeline(series, backend=backend, device=device)
