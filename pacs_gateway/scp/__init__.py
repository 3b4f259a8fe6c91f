"""The DICOM Storage/Verification SCP: AE wiring (``ae.py``) and handlers (``handlers.py``)."""
