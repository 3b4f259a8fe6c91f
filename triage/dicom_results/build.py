"""``build_result_objects``: the SEG, SR and SC of one triage result, ready to store or route."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

import pydicom

from triage.dicom_results.identity import Identity, ResultObjectError
from triage.dicom_results.sc import build_sc
from triage.dicom_results.seg import build_seg
from triage.dicom_results.sources import SourceLike, load_sources, select_sources
from triage.dicom_results.sr import build_sr
from triage.result import TriageResult
from triage.series import PerfusionSeries

__all__ = ["build_result_objects"]


def build_result_objects(result: TriageResult, source_datasets_or_paths: SourceLike | Sequence[SourceLike], *,
                         series: PerfusionSeries | None = None, created: _dt.datetime | None = None,
                         ) -> list[pydicom.Dataset]:
    """DICOM objects of ``result``, each a new series in the source study.

    source_datasets_or_paths : the CTP the result was computed from, as pydicom Datasets, file paths or
        folders (read recursively, pixels only where needed). Other files may be mixed in.
    series : the PerfusionSeries that was analysed (optional); when given, its geometry is checked
        against the files and the summary shows its pre-contrast mean instead of the first frame.
    created : date-time written into the objects (default now); UIDs do not depend on it.

    Returns ``[SEG, SR, SC summary, SC key slice]`` for a result with status "ok", and
    ``[SR, SC summary, SC key slice]`` for a failed one (no masks, so no SEG; the SR and the
    images say that the analysis failed and why). Raises ResultObjectError naming the problem
    when the sources do not match the result.
    """
    if not isinstance(result, TriageResult):
        raise ResultObjectError(f"Argument 'result' should be a TriageResult (from triage.analyze), "
                                f"not {type(result).__name__}.")
    ident = Identity.of(result, created)
    shape = None
    if result.ok:
        if not all(name in result.maps for name in ("core", "tmax6")):
            raise ResultObjectError("Argument 'result' has status 'ok' but no 'core'/'tmax6' maps; pass the "
                                    "result of triage.analyze() itself, not one rebuilt from JSON.")
        shape = tuple(result.maps["core"].shape)
    datasets = load_sources(source_datasets_or_paths)
    sources = select_sources(datasets, result, shape, None if series is None else series.affine)
    base = None
    if series is not None:
        from triage.outputs import baseline_image

        base = baseline_image(series)
        if base.shape != (len(sources.frames), int(sources.frames[0].Rows), int(sources.frames[0].Columns)):
            raise ResultObjectError(f"Argument 'series' has shape {series.hu.shape}, which does not match the "
                                    "source files; pass the series that was analysed.")
    objects: list[pydicom.Dataset] = []
    seg = None
    if result.ok:
        seg = build_seg(result, sources, ident)
        objects.append(seg)
    objects.append(build_sr(result, sources, ident, seg))
    objects.extend(build_sc(result, sources, ident, base))
    return objects
