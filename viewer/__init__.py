"""The web service: health, the study API (and, later, worklist, reporting, alerts)."""
