"""The index database: clinics, studies, series, instances and events."""
