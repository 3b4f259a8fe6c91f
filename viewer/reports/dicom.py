"""The DICOM objects of a signed report: a Basic Text SR and an Encapsulated PDF, in the report's study.

Patient and study attributes are copied from a stored instance of the study, so the objects
file with the images at the clinic and in the PACS. An addendum is a new SR that quotes the
original and names it in the Predecessor Documents Sequence; the original stays as it was.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from telerad import __version__
from viewer.reports.templates import sections

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
          "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID", "StudyDescription",
          "IssuerOfPatientID")
HEADING_CODES = {  # TID 2000-style section containers (DCM)
    "CLINICAL INDICATION": ("121060", "History"), "HISTORY": ("121060", "History"),
    "TECHNIQUE": ("121064", "Current Procedure Descriptions"),
    "FINDINGS": ("121070", "Findings"), "IMPRESSION": ("121072", "Impressions"),
    "IMPRESSIONS": ("121072", "Impressions"), "ADDENDUM": ("121070", "Findings"),
}
ITEM_CODES = {"121060": ("121060", "History"), "121064": ("121065", "Procedure Description"),
              "121070": ("121071", "Finding"), "121072": ("121073", "Impression")}


def _code(value: str, meaning: str, scheme: str = "DCM") -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _item(value_type: str, relationship: str, code: Dataset, text: str | None = None) -> Dataset:
    it = Dataset()
    it.RelationshipType, it.ValueType = relationship, value_type
    it.ConceptNameCodeSequence = Sequence([code])
    if value_type == "CONTAINER":
        it.ContinuityOfContent = "SEPARATE"
    if text is not None:
        it.TextValue = text
    return it


def _base(source: Dataset, sop_class: str, modality: str, series_uid: str, series_number: int,
          series_description: str, now: datetime) -> Dataset:
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    for kw in COPIED:
        if kw in source:
            setattr(ds, kw, getattr(source, kw))
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID",
               "AccessionNumber", "StudyDate", "StudyTime"):
        if kw not in ds:
            setattr(ds, kw, "")
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = modality, series_uid, series_number
    ds.SeriesDescription = series_description
    ds.InstanceNumber = 1
    ds.Manufacturer, ds.SoftwareVersions = "telerad", __version__
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime
    return ds


def basic_text_sr(source: Dataset, *, body: str, signer: str, institution: str | None, now: datetime,
                  series_uid: str, instance_number: int = 1, predecessor: dict | None = None) -> Dataset:
    """A verified, complete Basic Text SR of ``body`` (sections from its ``HEADING:`` lines)."""
    ds = _base(source, BASIC_TEXT_SR, "SR", series_uid, 9901, "Radiology report", now)
    ds.InstanceNumber = instance_number
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "Diagnostic imaging report", "LN")])
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = signer
    observer.VerificationDateTime = now.strftime("%Y%m%d%H%M%S")
    observer.VerifyingOrganization = institution or "telerad"
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    ds.VerifyingObserverSequence = Sequence([observer])
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    if predecessor:
        ref = Dataset()
        ref.StudyInstanceUID = ds.StudyInstanceUID
        series = Dataset()
        series.SeriesInstanceUID = predecessor["series_uid"]
        sop = Dataset()
        sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = BASIC_TEXT_SR, predecessor["sop_uid"]
        series.ReferencedSOPSequence = Sequence([sop])
        ref.ReferencedSeriesSequence = Sequence([series])
        ds.PredecessorDocumentsSequence = Sequence([ref])
    observer_item = _item("PNAME", "HAS OBS CONTEXT", _code("121008", "Person Observer Name"))
    observer_item.PersonName = signer
    content = [observer_item]
    for heading, text in sections(body):
        code = HEADING_CODES.get(heading, ("121070", "Findings"))
        container = _item("CONTAINER", "CONTAINS", _code(*code))
        container.ContentSequence = Sequence([_item("TEXT", "CONTAINS", _code(*ITEM_CODES[code[0]]),
                                                    text if heading in HEADING_CODES else f"{heading}: {text}")])
        content.append(container)
    ds.ContentSequence = Sequence(content)
    return ds


def encapsulated_pdf(source: Dataset, *, pdf: bytes, title: str, now: datetime, series_uid: str,
                     instance_number: int = 1) -> Dataset:
    ds = _base(source, ENCAPSULATED_PDF, "DOC", series_uid, 9902, "Radiology report (PDF)", now)
    ds.InstanceNumber = instance_number
    ds.ConversionType = "WSD"
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "Diagnostic imaging report", "LN")])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def write(ds: Dataset, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
