"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW, moto), with a bounded local read cache.

Writes: the index writer hands each received temp file to :meth:`S3Store.place`, which starts its
PUT on a small thread pool and returns the object's relpath at once; :meth:`S3Store.sync_files`
(called by the writer before its index commit) waits for every PUT of the batch and raises
:class:`StoreError` when one failed, so the batch answers 0xA7xx and nothing is indexed. S3 answers
200 only once the object is durable, so a C-STORE Success still means "durable and indexed".

Keys are ``<prefix><study>/<series>/<sop>.<token>.dcm`` with a random token per upload: two
gateways that receive the same SOP Instance UID at once each write their own object, and the one
whose index commit loses leaves an unreferenced object, never a changed one.

Reads: :meth:`S3Store.fetch` downloads objects into ``<data_dir>/s3cache/<relpath>`` (several at
once), so readers open local files as with the local store. A placed object is kept in the cache
too. The cache is trimmed to ``store.cache_max_gb`` by removing the least recently written files
older than ``CACHE_MIN_AGE_S`` (a reader that holds an open file keeps reading it).
"""

from __future__ import annotations

import filecmp
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pacs_gateway.errors import StoreError
from pacs_gateway.store import ObjectStore, discard

log = logging.getLogger(__name__)

CACHE_MIN_AGE_S = 600.0  # a cached file younger than this is never trimmed
_MISSING = ("404", "NoSuchKey", "NotFound")


def _secret(value: str | None) -> str | None:
    if value and value.startswith("env:"):
        return os.environ.get(value[4:]) or None
    return value


class S3Store(ObjectStore):
    kind = "s3"

    def __init__(self, cache_root: Path, *, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 region: str = "us-east-1", access_key_id: str | None = None, secret_access_key: str | None = None,
                 create_bucket: bool = False, workers: int = 16, cache_max_bytes: int = 20 << 30,
                 timeout_s: float = 30.0):
        try:
            import boto3
            from botocore.config import Config
        except ImportError:  # pragma: no cover - boto3 is a core dependency
            raise StoreError("store.kind = 's3' needs boto3 (pip install boto3)") from None
        super().__init__(Path(cache_root))
        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.cache_max_bytes = cache_max_bytes
        config = Config(max_pool_connections=max(10, workers * 2), connect_timeout=min(10.0, timeout_s),
                        read_timeout=timeout_s, retries={"max_attempts": 4, "mode": "standard"},
                        s3={"addressing_style": "path"})
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id,
            aws_secret_access_key=_secret(secret_access_key), config=config)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3")
        self._local = threading.local()
        self._added = 0
        self._trim_lock = threading.Lock()
        self._check_bucket(create_bucket)

    @classmethod
    def from_settings(cls, cfg, *, cache_root: Path) -> "S3Store":
        s3 = cfg.s3
        return cls(cache_root, bucket=s3.bucket, prefix=s3.prefix, endpoint_url=s3.endpoint_url, region=s3.region,
                   access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key,
                   create_bucket=s3.create_bucket, workers=s3.workers, cache_max_bytes=int(cfg.cache_max_gb * (1 << 30)),
                   timeout_s=s3.timeout_s)

    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def _check_bucket(self, create: bool) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code not in _MISSING or not create:
                why = "does not exist (set store.s3.create_bucket or create it)" if code in _MISSING else f"answered {code}"
                raise StoreError(f"setting 'store.s3.bucket': bucket '{self.bucket}' {why}") from None
        except BotoCoreError as exc:
            raise StoreError(f"setting 'store.s3.endpoint_url': cannot reach {self.where()}: {exc}") from None
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StoreError(f"setting 'store.s3.bucket': cannot create '{self.bucket}': {code}") from None

    def key(self, relpath: str) -> str:
        return self.prefix + relpath

    # writing ---------------------------------------------------------------------------
    def _pending(self) -> list[tuple[Future, Path]]:
        if not hasattr(self._local, "pending"):
            self._local.pending = []
        return self._local.pending

    def place(self, tmp: Path, relpath: str, dirs: set[str]) -> str:
        base = relpath[:-4] if relpath.endswith(".dcm") else relpath
        placed = f"{base}.{uuid.uuid4().hex[:12]}.dcm"
        self._pending().append((self._pool.submit(self._upload, Path(tmp), placed), self.path(placed)))
        return placed

    def _upload(self, tmp: Path, relpath: str) -> None:
        size = tmp.stat().st_size
        with open(tmp, "rb") as body:
            self.client.put_object(Bucket=self.bucket, Key=self.key(relpath), Body=body, ContentLength=size,
                                   ContentType="application/dicom")
        self._keep(tmp, relpath, size)

    def _keep(self, tmp: Path, relpath: str, size: int) -> None:
        """Move a local copy into the cache (a failure only costs a later download)."""
        target = self.path(relpath)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        except OSError:
            discard(tmp)
            return
        self._added += size
        if self._added > self.cache_max_bytes // 10:
            self._added = 0
            threading.Thread(target=self.trim_cache, name="s3-cache-trim", daemon=True).start()

    def sync_files(self, paths: list[Path]) -> None:
        """Wait for every PUT this thread started; raise :class:`StoreError` if one of ``paths`` failed.

        (A PUT left over from a batch that failed before its sync is waited for, never reported.)
        """
        self._wait_uploads({str(p) for p in paths})

    def sync_dirs(self, relpaths: set[str]) -> None:
        """The same wait (a PUT is durable when S3 answers it; there are no directories to sync)."""
        self._wait_uploads(None)

    def _wait_uploads(self, batch: set[str] | None) -> None:
        pending, self._local.pending = self._pending(), []
        errors = []
        for fut, cached in pending:
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - any failure means "not durable"
                discard(cached)
                if batch is None or str(cached) in batch:
                    errors.append(exc)
        if errors:
            raise StoreError(f"cannot store in {self.where()}: {type(errors[0]).__name__}: {errors[0]}")

    def write(self, relpath: str, chunks: list[bytes], crc_of: bytes):
        stored = super().write(relpath, chunks, crc_of)
        try:
            self.client.upload_file(str(self.path(relpath)), self.bucket, self.key(relpath))
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"cannot store {relpath} in {self.where()}: {exc}") from None
        return stored

    def put_tree(self, relpath: str) -> int:
        """Upload every file under ``root / relpath`` (triage maps and PNGs) to the same keys."""
        base = self.path(relpath)
        files = [p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")] if base.is_dir() else []
        futs = [self._pool.submit(self.client.upload_file, str(p), self.bucket, self.key(str(p.relative_to(self.root))))
                for p in files]
        for f in futs:
            try:
                f.result()
            except Exception as exc:  # noqa: BLE001
                raise StoreError(f"cannot publish {relpath} to {self.where()}: {exc}") from None
        return len(files)

    def remove(self, relpath: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(relpath))
        super().remove(relpath)

    # reading ---------------------------------------------------------------------------
    def _relpaths(self, paths: Iterable) -> list[str]:
        """Relpaths from relpaths or from paths under the cache root (relative or absolute)."""
        out = []
        root, resolved = self.root, self.root.resolve()
        for p in paths:
            p = Path(p)
            try:
                rel = p.relative_to(root)
            except ValueError:
                try:
                    rel = p.resolve().relative_to(resolved) if p.is_absolute() or p.parts[:1] == root.parts[:1] else p
                except ValueError:
                    rel = p
            out.append(str(rel))
        return out

    def fetch(self, paths) -> None:
        """Download the objects that are not in the cache yet, several at once."""
        missing = [r for r in dict.fromkeys(self._relpaths(paths)) if not self.path(r).is_file()]
        if not missing:
            return
        for fut in [self._pool.submit(self._download, r) for r in missing]:
            fut.result()

    def _download(self, relpath: str) -> bool:
        """Download one object into the cache; False when it does not exist."""
        from botocore.exceptions import ClientError

        tmp = self.tmp / f"{uuid.uuid4().hex}.get"
        try:
            self.client.download_file(self.bucket, self.key(relpath), str(tmp))
        except ClientError as exc:
            discard(tmp)
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                return False
            raise StoreError(f"cannot read {relpath} from {self.where()}: {exc}") from None
        except Exception:
            discard(tmp)
            raise
        self._keep(tmp, relpath, tmp.stat().st_size)
        return True

    def read(self, relpath: str) -> bytes:
        self.fetch([relpath])
        return super().read(relpath)

    def same_bytes(self, tmp: Path, relpath: str) -> bool:
        try:
            self.fetch([relpath])
            return filecmp.cmp(tmp, self.path(relpath), shallow=False)
        except (OSError, StoreError):
            return False

    def exists(self, relpath: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(relpath))
            return True
        except ClientError:
            return False

    # the cache -------------------------------------------------------------------------
    def trim_cache(self) -> int:
        """Remove the oldest cached files beyond ``cache_max_bytes``; returns how many."""
        if not self._trim_lock.acquire(blocking=False):
            return 0
        try:
            files = []
            for dirpath, dirnames, names in os.walk(self.root):
                if Path(dirpath) == self.root:
                    dirnames[:] = [d for d in dirnames if d != ".tmp"]
                for n in names:
                    try:
                        st = os.stat(os.path.join(dirpath, n))
                    except OSError:
                        continue
                    files.append((st.st_mtime, st.st_size, os.path.join(dirpath, n)))
            total = sum(f[1] for f in files)
            removed, cutoff = 0, time.time() - CACHE_MIN_AGE_S
            for mtime, size, path in sorted(files):
                if total <= self.cache_max_bytes or mtime > cutoff:
                    break
                discard(path)
                total -= size
                removed += 1
            if removed:
                log.info("object cache: removed %d file(s) beyond %.1f GiB", removed, self.cache_max_bytes / (1 << 30))
            return removed
        finally:
            self._trim_lock.release()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - best effort
            pass
