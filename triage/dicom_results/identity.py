"""What every generated object shares: labels, equipment, reproducible UIDs and timestamps.

UIDs are new (never a source UID) but derived, not random: each is a ``2.25``
UID of a name-based (SHA-1, version 5) UUID of the source study and series, the algorithm name and version, a
digest of the result (numbers, quality and masks; not the timings) and the
object's role. Building the objects twice from the same result gives the same
UIDs, so a re-run after a crash replaces the stored objects instead of adding
a second copy of them to the PACS; any change of a number gives new UIDs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import uuid
from dataclasses import dataclass

import numpy as np
import pydicom

from triage.errors import TriageError
from triage.result import TriageResult

__all__ = ["AUTOMATED_LABEL", "Identity", "ResultObjectError", "result_digest"]

#: The words every generated series carries in its description and labels.
AUTOMATED_LABEL = "AUTOMATED RESULT - NOT FOR DIAGNOSIS"
MANUFACTURER = "telerad"
#: Series numbers of the generated series (high, so that PACS list them after the acquisitions).
SERIES_NUMBERS = {"seg": 9001, "sr": 9002, "sc": 9003}
_NAMESPACE = uuid.UUID("5b0e3c1e-8f3a-5d7e-9c2a-7e1e5ad1c0de")  # fixed namespace of telerad result UIDs
_DESCRIPTIONS = {"seg": "CTP core + Tmax>6s SEG", "sr": "CTP volumes SR", "sc": "CTP summary"}


class ResultObjectError(TriageError, ValueError):
    """The result objects cannot be built from these inputs; the message names the argument and the fix."""

    exit_code = 2


def result_digest(result: TriageResult) -> str:
    """SHA-256 over what the objects show: the JSON result without timings, and the masks."""
    doc = result.to_json_dict()
    doc.pop("timings_s", None)
    h = hashlib.sha256(json.dumps(doc, sort_keys=True, allow_nan=False).encode())
    for name in ("core", "tmax6", "tmax10"):
        mask = result.maps.get(name)
        if mask is not None:
            h.update(name.encode())
            h.update(np.packbits(np.asarray(mask, dtype=bool)).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Identity:
    """Labels, equipment and UIDs of one result's objects.

    ``created`` is the instance creation / content / series date-time written
    into every object (pass a fixed value for byte-reproducible objects).
    """

    study_uid: str
    source_series_uid: str
    algorithm_name: str
    algorithm_version: str
    software_versions: tuple[str, ...]
    digest: str
    created: _dt.datetime

    @classmethod
    def of(cls, result: TriageResult, created: _dt.datetime | None = None) -> Identity:
        algo = result.algorithm or {}
        name, version = str(algo.get("name") or ""), str(algo.get("version") or "")
        if not name or not version:
            raise ResultObjectError("Argument 'result' should carry result.algorithm['name'] and ['version'] "
                                    f"(got {algo!r}); build results with triage.analyze().")
        if not result.study_instance_uid:
            raise ResultObjectError("Argument 'result' has no study_instance_uid; the result objects must go "
                                    "into the source study.")
        versions = [f"{name} {version}"]
        if algo.get("model"):
            versions.append(f"{algo['model']} {algo.get('model_version', '')}".strip())
        if algo.get("backend"):
            versions.append(f"{algo['backend']} backend {algo.get('backend_version', '')}".strip())
        return cls(study_uid=result.study_instance_uid, source_series_uid=result.series_instance_uid,
                   algorithm_name=name, algorithm_version=version, software_versions=tuple(versions),
                   digest=result_digest(result), created=created or _dt.datetime.now())

    def uid(self, *role: object) -> str:
        """A reproducible new UID for one role, e.g. ``uid("seg", "series")``."""
        parts = ["telerad-result", self.study_uid, self.source_series_uid, self.algorithm_name,
                 self.algorithm_version, self.digest, *map(str, role)]
        return f"2.25.{uuid.uuid5(_NAMESPACE, chr(0).join(parts)).int}"  # PS3.5 B.2 UUID-derived UID

    @property
    def algorithm_label(self) -> str:
        return f"{self.algorithm_name} {self.algorithm_version}"

    def series_description(self, kind: str) -> str:
        return f"{AUTOMATED_LABEL} {_DESCRIPTIONS[kind]}"[:64]

    def series_number(self, kind: str) -> int:
        return SERIES_NUMBERS[kind]

    def equipment(self) -> dict:
        """Keyword arguments for highdicom constructors: General Equipment with the algorithm in it."""
        return {"manufacturer": MANUFACTURER, "manufacturer_model_name": self.algorithm_name[:64],
                "software_versions": list(self.software_versions),
                "device_serial_number": self.algorithm_label[:64]}

    def stamp(self, ds: pydicom.Dataset) -> pydicom.Dataset:
        """Write ``created`` into every date/time that highdicom fills with "now"."""
        date, time = self.created.strftime("%Y%m%d"), self.created.strftime("%H%M%S")
        for prefix in ("InstanceCreation", "Content", "Series"):
            setattr(ds, f"{prefix}Date", date)
            setattr(ds, f"{prefix}Time", time)
        for item in ds.get("ContributingEquipmentSequence", []):  # highdicom names itself, with "now"
            if "ContributionDateTime" in item:
                item.ContributionDateTime = self.created.strftime("%Y%m%d%H%M%S")
        if "DateOfSecondaryCapture" in ds:
            ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = date, time
        return ds
