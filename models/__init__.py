"""Compute backends for the perfusion engine behind one small protocol (see ``models.backend``).

``get_backend("numpy")`` is the reference; ``get_backend("torch", device="cuda")`` runs the same
kernels with torch (optional extra ``telerad[torch]``).
"""

from models.backend import BACKENDS, Backend, Deconvolved, get_backend

__all__ = ["BACKENDS", "Backend", "Deconvolved", "get_backend"]
