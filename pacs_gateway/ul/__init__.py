"""A small, fast DICOM Upper Layer acceptor for the storage hot path (see ``acceptor.py``)."""
