"""Triage results as standard DICOM objects (highdicom): SEG masks, a TID 1500 SR and SC summaries.

Public API::

    build_result_objects(result, source_datasets_or_paths, *, series=None, created=None)
        -> [SEG, SR, SC summary, SC key slice]     (status "ok")
        -> [SR, SC summary, SC key slice]          (status "failed": no masks, the SR says why)

Every object is a new series in the source study, labelled "AUTOMATED RESULT -
NOT FOR DIAGNOSIS", with the algorithm's name and version as manufacturer model
name and software versions, and reproducible UIDs (see :mod:`.identity`).
Codes, including the private ``99TELERAD`` ones, are in :mod:`.codes`.
The builders per object are :func:`.seg.build_seg`, :func:`.sr.build_sr` and
:func:`.sc.build_sc`; this package is pure (no networking): the gateway stores
and routes what it returns.
"""

from triage.dicom_results.build import build_result_objects
from triage.dicom_results.identity import AUTOMATED_LABEL, ResultObjectError

__all__ = ["AUTOMATED_LABEL", "ResultObjectError", "build_result_objects"]
