"""``telerad oncall`` and ``telerad alerts``."""
