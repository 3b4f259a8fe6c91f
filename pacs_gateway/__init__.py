"""The DICOM gateway: receive, store durably, index, detect complete series, route."""
