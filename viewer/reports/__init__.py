"""Reports: templates, states (draft -> preliminary -> final, addenda), and the DICOM objects of a final report."""
