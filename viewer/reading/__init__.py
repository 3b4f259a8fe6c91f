"""The reading room's read side: worklist rows, study status, triage badges, SLA due times."""
