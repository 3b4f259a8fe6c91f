"""Field validators shared by the settings models."""

from __future__ import annotations


def ae_title(value: str) -> str:
    """A DICOM AE title: 1 to 16 characters, no backslash or control character."""
    value = value.strip()
    if not value or len(value) > 16:
        raise ValueError("an AE title must be 1 to 16 characters")
    if "\\" in value or any(ord(c) < 32 for c in value):
        raise ValueError("an AE title must not contain backslashes or control characters")
    return value
