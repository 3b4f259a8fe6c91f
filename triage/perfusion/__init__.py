"""The CT-perfusion pipeline (pure numpy/scipy, no DICOM): see ``pipeline.run_pipeline`` and docs/perfusion.md."""
