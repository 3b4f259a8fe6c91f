"""telerad: teleradiology gateway with automated CT-perfusion stroke triage.

This small package holds what every part of telerad shares: the typed settings
object and the ``telerad`` command-line dispatcher.
"""

__version__ = "0.1.0"
