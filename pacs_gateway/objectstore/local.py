"""Local files: ``<data_dir>/store/<study>/<series>/<sop>.dcm``, renamed into place and fsynced.

The implementation is :class:`pacs_gateway.store.ObjectStore` (where the durable write path has
always lived); this module names it as the default backend of :mod:`pacs_gateway.objectstore`.
"""

from __future__ import annotations

from pacs_gateway.store import ObjectStore as LocalStore

__all__ = ["LocalStore"]
