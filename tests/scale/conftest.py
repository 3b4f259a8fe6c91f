"""Fixtures for the scaled-out tests: a moto S3 server, a private PostgreSQL database, a Redis queue name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import free_port

PG_URL = os.environ.get("TELERAD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TELERAD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class MotoServer:
    """``moto_server`` (moto's S3 in server mode) on a free loopback port, as a child process."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "MotoServer":
        exe = str(Path(sys.executable).with_name("moto_server"))  # the project's venv first
        if not Path(exe).exists():
            exe = shutil.which("moto_server") or exe
        if not Path(exe).exists():
            pytest.fail("moto_server is missing: install the dev extra (moto[server])")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not answer within {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def store_settings(self, bucket: str) -> dict:
        """Dotted settings for ``load_settings`` pointing a gateway at this server."""
        return {"store.kind": "s3", "store.s3.bucket": bucket, "store.s3.endpoint_url": self.url,
                "store.s3.access_key_id": "testing", "store.s3.secret_access_key": "testing",
                "store.s3.create_bucket": True}

    def env(self, bucket: str) -> dict[str, str]:
        """The same as ``TELERAD_*`` environment variables (for child processes)."""
        return {"TELERAD_STORE__KIND": "s3", "TELERAD_STORE__S3__BUCKET": bucket,
                "TELERAD_STORE__S3__ENDPOINT_URL": self.url, "TELERAD_STORE__S3__ACCESS_KEY_ID": "testing",
                "TELERAD_STORE__S3__SECRET_ACCESS_KEY": "env:TEST_S3_SECRET", "TEST_S3_SECRET": "testing",
                "TELERAD_STORE__S3__CREATE_BUCKET": "true"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")


@pytest.fixture(scope="session")
def moto(tmp_path_factory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture
def bucket() -> str:
    return f"telerad-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (created and dropped here)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"telerad_scale_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(reason=f"no PostgreSQL server at {PG_URL}: {exc.orig}")
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture
def redis_queue() -> Iterator[dict]:
    """Settings for a Redis queue with a name of its own; its keys are removed afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(reason=f"no Redis server at {REDIS_URL}: {exc}")
    name = f"scale-{uuid.uuid4().hex[:10]}"
    yield {"queue.url": REDIS_URL, "queue.name": name}
    for key in client.scan_iter(f"*{name}*", count=500):
        client.delete(key)
    client.close()
