"""Triage exceptions. Domain errors subclass built-ins (nibabel style)."""

from telerad.errors import TeleradError


class TriageError(TeleradError):
    """Base class for every triage error."""


class NotCTPError(TriageError, ValueError):
    """The input is not a usable CT-perfusion series (CLI exit code 2).

    The message names the problem, e.g. "only 8 time points; at least 15 are needed".
    """

    exit_code = 2


class AnalysisFailed(TriageError, RuntimeError):
    """A real CTP whose analysis could not produce trustworthy numbers (exit code 3).

    Raised only inside the pipeline; ``triage.analyze`` turns it into a result with
    ``status == "failed"`` so alerting can report it.
    """

    exit_code = 3
