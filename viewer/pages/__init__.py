"""Server-rendered pages: worklist, study, technician, stroke team, admin."""
