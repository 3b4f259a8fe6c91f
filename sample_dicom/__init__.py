"""Sample data: digital CT-perfusion phantoms with ground truth (arrays here; DICOM writers alongside)."""
