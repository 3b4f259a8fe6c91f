"""The perfusion algorithm's name and version, importable without numpy (the gateway keys jobs on it).

Bump the version on any change that can move a number (docs/perfusion.md lists the versions).
"""

ALGORITHM: dict[str, str] = {"name": "telerad-ctp", "version": "2.2.0"}
