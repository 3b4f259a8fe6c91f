"""Report templates: the section headings a radiologist fills in (``HEADING:`` lines start a section)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportTemplate:
    key: str
    title: str
    body: str


TEMPLATES = {t.key: t for t in (
    ReportTemplate("ct_head_stroke", "CT head, stroke protocol", (
        "CLINICAL INDICATION:\nSuspected acute stroke. Onset: \n\n"
        "TECHNIQUE:\nNon-contrast CT of the head.\n\n"
        "FINDINGS:\nHaemorrhage: none.\nEarly ischaemic change (ASPECTS): \nHyperdense vessel sign: \n"
        "Other: \n\n"
        "IMPRESSION:\n")),
    ReportTemplate("ct_perfusion", "CT perfusion", (
        "CLINICAL INDICATION:\nSuspected large-vessel occlusion stroke.\n\n"
        "TECHNIQUE:\nCT perfusion of the brain.\n\n"
        "FINDINGS:\nIschaemic core (rCBF < 30%): \nHypoperfusion (Tmax > 6 s): \nMismatch: \n"
        "Image quality: \n\n"
        "IMPRESSION:\n")),
    ReportTemplate("chest_xray", "Chest X-ray", (
        "CLINICAL INDICATION:\n\n"
        "TECHNIQUE:\nChest radiograph.\n\n"
        "FINDINGS:\nLungs: \nPleura: \nHeart and mediastinum: \nBones and soft tissues: \nLines and tubes: \n\n"
        "IMPRESSION:\n")),
)}


def suggest(kinds: list[str], modalities: list[str]) -> str:
    """The template that fits a study best."""
    if "ctp" in kinds:
        return "ct_perfusion"
    if "CR" in modalities or "DX" in modalities:
        return "chest_xray"
    return "ct_head_stroke"


def triage_paragraph(run) -> str:
    """The automated numbers, labelled as such, for a CT perfusion report's findings (or '')."""
    if run is None or run.state != "done":
        return ""
    label = f"{(run.result or {}).get('algorithm', {}).get('name', 'telerad-ctp')} {run.algorithm_version}"
    if run.status != "ok" or run.reliable is False:
        return f"Automated perfusion analysis ({label}) failed or is unreliable: {run.reason or 'see warnings'}.\n"
    return (f"Automated perfusion analysis ({label}; automated result, not a diagnosis): core {run.core_ml or 0:.1f} mL, "
            f"Tmax>6s {run.tmax6_ml or 0:.1f} mL, Tmax>10s {run.tmax10_ml or 0:.1f} mL, "
            f"mismatch {run.mismatch_ml or 0:.1f} mL.\n")


def sections(body: str) -> list[tuple[str, str]]:
    """``[(heading, text)]`` from a report body; text before the first heading goes under 'REPORT'."""
    out: list[tuple[str, list[str]]] = []
    for line in body.replace("\r\n", "\n").split("\n"):
        stripped = line.strip()
        if stripped.endswith(":") and stripped[:-1].replace(" ", "").isalpha() and stripped[:-1].isupper():
            out.append((stripped[:-1], []))
        else:
            if not out:
                out.append(("REPORT", []))
            out[-1][1].append(line)
    return [(h, "\n".join(lines).strip()) for h, lines in out if "\n".join(lines).strip()]
