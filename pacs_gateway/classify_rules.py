"""Classification rule set: text folding, keyword sets, pydantic models and the loader.

The rules themselves are data in ``classify_rules.toml`` next to this module; this
module validates them (pydantic, ``extra="forbid"``) and compiles each keyword set to
one regular expression.  :func:`load_rules` reads a site's own file; a bad file raises
:class:`ClassifyRulesError` naming the field.  Used by :mod:`pacs_gateway.classify`.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from telerad.errors import ConfigError

TextField = Literal[
    "SeriesDescription", "ProtocolName", "ImageType", "BodyPartExamined",
    "StudyDescription", "ContrastBolusAgent",
]
TEXT_FIELDS: tuple[str, ...] = TextField.__args__  # type: ignore[attr-defined]
_SEPARATORS = re.compile(r"[\s_\-/\\.,:;]+")
_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_RULES_FILE = "classify_rules.toml"


class ClassifyRulesError(ConfigError):
    """The classification rule file is unreadable or invalid; the message names the field."""


def fold(text: str) -> str:
    """Normalise text for matching: NFKC, casefold, strip accents, one space per separator run."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("đ", "d")
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return _SEPARATORS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def token(text: str) -> str:
    """Normalise a code-string value (body part, image type token) for equality tests."""
    return fold(text).upper()


def code(text: str) -> str:
    """Normalise a code string with its separators removed: 'HEAD_NECK' and 'HeadNeck' agree."""
    return token(text).replace(" ", "")


def _term_pattern(term: str) -> str:
    """Regex for one folded term; ASCII alphanumeric edges must not touch other ASCII alphanumerics."""
    left = r"(?<![a-z0-9])" if term[0] in _ASCII_ALNUM else ""
    right = r"(?![a-z0-9])" if term[-1] in _ASCII_ALNUM else ""
    return left + re.escape(term) + right


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeywordSet(_Strict):
    """Terms (grouped by vendor or language) searched in the named header fields."""

    fields: tuple[TextField, ...] = Field(min_length=1)
    terms: dict[str, tuple[str, ...]] = Field(min_length=1)
    _regex: re.Pattern[str] = PrivateAttr()

    @field_validator("terms")
    @classmethod
    def _terms_not_blank(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for group, items in value.items():
            if not items:
                raise ValueError(f"term group {group!r} is empty; remove it or add terms")
            for term in items:
                if not fold(term):
                    raise ValueError(f"term {term!r} in group {group!r} is blank after normalisation")
        return value

    def model_post_init(self, _context: Any) -> None:
        folded = sorted({fold(t) for items in self.terms.values() for t in items}, key=len, reverse=True)
        self._regex = re.compile("|".join(_term_pattern(t) for t in folded))

    def find(self, texts: Mapping[str, str], fields: tuple[str, ...] | None = None) -> dict[str, list[str]]:
        """Matched folded terms per field, for ``fields`` (default: this set's fields)."""
        hits: dict[str, list[str]] = {}
        for name in fields if fields is not None else self.fields:
            if name in self.fields and texts.get(name):
                found = self._regex.findall(texts[name])
                if found:
                    hits[name] = sorted(set(found))
        return hits


class ModalityRules(_Strict):
    ct: tuple[str, ...] = Field(min_length=1)
    xray: tuple[str, ...] = Field(min_length=1)
    ct_sop_classes: tuple[str, ...] = ()
    xray_sop_classes: tuple[str, ...] = ()


class ExcludeRules(_Strict):
    sop_class_prefixes: tuple[str, ...] = ()
    image_type: tuple[str, ...] = ()
    keywords: KeywordSet


class CTPRules(_Strict):
    min_repetitions: int = Field(ge=2)
    min_positions: int = Field(ge=1)
    min_repeated_fraction: float = Field(gt=0.0, le=1.0)
    position_tolerance_mm: float = Field(gt=0.0, le=5.0)
    veto_body_parts: tuple[str, ...] = ()
    keywords: KeywordSet
    exclude: KeywordSet
    veto: KeywordSet


class CTARules(_Strict):
    max_slice_thickness_mm: float = Field(gt=0.0)
    keywords: KeywordSet
    neurovascular: KeywordSet


class ContrastRules(_Strict):
    agent_null_values: tuple[str, ...] = ()
    noncontrast: KeywordSet
    keywords: KeywordSet


class RegionRules(_Strict):
    head_body_parts: tuple[str, ...] = Field(min_length=1)
    neck_body_parts: tuple[str, ...] = ()
    head: KeywordSet
    neck: KeywordSet
    other: KeywordSet


class ClassifyRules(_Strict):
    """The whole rule set; see ``classify_rules.toml`` for the meaning of every field."""

    version: Literal[1]
    modality: ModalityRules
    exclude: ExcludeRules
    ctp: CTPRules
    cta: CTARules
    contrast: ContrastRules
    region: RegionRules


def load_rules(path: str | Path | None = None) -> ClassifyRules:
    """Read and validate a rule file (default: the one shipped in this package).

    Raises :class:`ClassifyRulesError` naming the file and the offending field.
    """
    where = str(path) if path is not None else f"pacs_gateway/{_RULES_FILE}"
    try:
        if path is None:
            raw = resources.files("pacs_gateway").joinpath(_RULES_FILE).read_bytes()
        else:
            raw = Path(path).read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise ClassifyRulesError(f"classification rules {where}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClassifyRulesError(f"classification rules {where}: not valid TOML: {exc}") from None
    try:
        return ClassifyRules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(top level)'}': {err['msg']}"
            for err in exc.errors()
        )
        raise ClassifyRulesError(f"classification rules {where}: {problems}") from None


DEFAULT_RULES: ClassifyRules = load_rules()
