"""The object store behind one interface: local files (the default) or S3-compatible storage.

Every stored object has a *relpath* (``<study>/<series>/<sop>.dcm`` and variants), the value the
index keeps in ``instances.path``. A store offers:

- ``tmp``: this process's own spool folder (``<root>/.tmp/<host>-<pid>``); ``clean_tmp()`` at start
  removes only its own leftovers and those of dead processes of the same host, never another
  gateway's files;
- ``place(tmp, relpath, dirs) -> relpath``: take a received temp file; ``sync_files``/``sync_dirs``
  then make it durable, and both must return before the index commit (and so before a C-STORE
  Success). For S3 this is the PUT answering 200; the object's key is made unique per upload, so two
  gateways never overwrite each other's objects;
- ``path(relpath)``: where the object is (or will be) readable as a local file, and
  ``fetch(relpaths)``: make it so (a no-op for local files; S3 downloads into a bounded local cache,
  several objects at once). Readers (routing, triage) call ``fetch`` before they open ``path``;
- ``same_bytes``, ``read``, ``remove``, ``put_tree`` (publish files written locally under a
  relpath prefix, such as triage outputs), ``usage_pct`` (of the local disk), ``close``.

:func:`open_store` builds the one the settings ask for.
"""

from __future__ import annotations

from pacs_gateway.objectstore.local import LocalStore

__all__ = ["LocalStore", "open_store"]


def open_store(settings) -> LocalStore:
    """The configured store: ``store.kind = "local"`` (``<data_dir>/store``) or ``"s3"``."""
    cfg = getattr(settings, "store", None)
    if cfg is None or cfg.kind == "local":
        return LocalStore(settings.store_dir)
    from pacs_gateway.objectstore.s3 import S3Store

    return S3Store.from_settings(cfg, cache_root=settings.data_dir / "s3cache")
