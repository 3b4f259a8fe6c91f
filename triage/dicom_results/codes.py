"""Every coded concept the result objects use, in one place.

Established codes come first: SNOMED CT (``SCT``), DICOM (``DCM``), LOINC
(``LN``) and UCUM units. Where no established code exists (the target-mismatch
numbers of acute-stroke triage, the analysis status), the concept is a
**private local code** in the coding scheme ``99TELERAD`` ("99" prefix: a
private scheme per DICOM PS3.16 section 8.2); :data:`LOCAL_SCHEME` declares it
in the Coding Scheme Identification Sequence of every SR and SEG, so a reader
knows whom the codes belong to. Local code values never change meaning: add new
ones, never reuse one.
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept

__all__ = ["LOCAL", "LOCAL_SCHEME", "LOCAL_SCHEME_NAME", "SCT", "DCM", "LN", "UCUM_ML", "UCUM_RATIO",
           "QUALITATIVE_EVALUATIONS", "coding_scheme_identification"]

#: Designator of telerad's private coding scheme (PS3.16 8.2: private schemes start with "99").
LOCAL_SCHEME = "99TELERAD"
LOCAL_SCHEME_NAME = "telerad private codes for automated CT-perfusion stroke triage"


def _c(value: str, scheme: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


class SCT:
    """SNOMED CT."""

    MORPHOLOGICALLY_ABNORMAL_STRUCTURE = _c("49755003", "SCT", "Morphologically Abnormal Structure")
    INFARCT = _c("55641003", "SCT", "Infarct")  # morphologic abnormality: the ischemic core
    ISCHEMIA = _c("52674009", "SCT", "Ischemia")  # morphologic abnormality: hypoperfused tissue
    BRAIN = _c("12738006", "SCT", "Brain")
    LEFT = _c("7771000", "SCT", "Left")
    RIGHT = _c("24028007", "SCT", "Right")
    VOLUME = _c("118565006", "SCT", "Volume")
    YES = _c("373066001", "SCT", "Yes")
    NO = _c("373067005", "SCT", "No")


class DCM:
    """DICOM Controlled Terminology (PS3.16 Annex D)."""

    CT_PERFUSION_ANALYSIS = _c("126301", "DCM", "Perfusion analysis by IV Iodinated Contrast CT technique")
    #: Algorithm family (CID 7162) of the SEG: thresholds on maps, then island removal.
    MORPHOLOGICAL_OPERATIONS = _c("123104", "DCM", "Morphological Operations")
    DEVICE = _c("121007", "DCM", "Device")


class LN:
    """LOINC."""

    CT_PERFUSION_HEAD = _c("39142-5", "LN", "CT perfusion head with contrast IV")  # CID 100


UCUM_ML = _c("mL", "UCUM", "milliliter")
UCUM_RATIO = _c("{ratio}", "UCUM", "ratio")
QUALITATIVE_EVALUATIONS = _c("C0034375", "UMLS", "Qualitative Evaluations")  # TID 1500 row 12


class LOCAL:
    """Private codes in the ``99TELERAD`` scheme (see the module docstring)."""

    # measurement methods (TID 1419 "Measurement Method") and findings without an established code
    METHOD_CORE = _c("TLR001", LOCAL_SCHEME, "rCBF below 30% of contralateral healthy tissue")
    METHOD_TMAX6 = _c("TLR002", LOCAL_SCHEME, "Tmax above 6 s")
    METHOD_TMAX10 = _c("TLR003", LOCAL_SCHEME, "Tmax above 10 s")
    # derived target-mismatch measurements (concept names of NUM items)
    MISMATCH_VOLUME = _c("TLR010", LOCAL_SCHEME, "Perfusion mismatch volume")
    MISMATCH_RATIO = _c("TLR011", LOCAL_SCHEME, "Perfusion mismatch ratio")
    HYPOPERFUSION_INTENSITY_RATIO = _c("TLR012", LOCAL_SCHEME, "Hypoperfusion intensity ratio")
    TARGET_MISMATCH = _c("TLR013", LOCAL_SCHEME, "Target mismatch")
    # qualitative evaluations (concept names of CODE and TEXT items)
    ANALYSIS_STATUS = _c("TLR020", LOCAL_SCHEME, "Automated analysis status")
    ANALYSIS_COMPLETED = _c("TLR021", LOCAL_SCHEME, "Automated analysis completed")
    ANALYSIS_FAILED = _c("TLR022", LOCAL_SCHEME, "Automated analysis failed")
    RESULT_RELIABLE = _c("TLR023", LOCAL_SCHEME, "Automated result reliable")
    QUALITY_WARNING = _c("TLR024", LOCAL_SCHEME, "Quality warning")
    FAILURE_REASON = _c("TLR025", LOCAL_SCHEME, "Reason for analysis failure")
    DISCLAIMER = _c("TLR026", LOCAL_SCHEME, "Disclaimer")
    DEFUSE3_PROFILE = _c("TLR030", LOCAL_SCHEME, "Meets DEFUSE 3 imaging target mismatch profile")
    EXTEND_IA_PROFILE = _c("TLR031", LOCAL_SCHEME, "Meets EXTEND-IA imaging target mismatch profile")
    AFFECTED_SIDE = _c("TLR032", LOCAL_SCHEME, "Affected hemisphere")
    NOTE = _c("TLR033", LOCAL_SCHEME, "Note")


def coding_scheme_identification() -> list[CodingSchemeIdentificationItem]:
    """The Coding Scheme Identification Sequence item that declares ``99TELERAD``."""
    return [CodingSchemeIdentificationItem(
        designator=LOCAL_SCHEME, name=LOCAL_SCHEME_NAME, responsible_organization="telerad project")]
