"""docker-compose.yml, checked structurally (no Docker engine runs here): it parses, has the scaled-out
services, every ``TELERAD_*`` variable is a real setting that validates, and the commands parse."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from telerad.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
TELERAD_SERVICES = ("gateway1", "gateway2", "worker1", "worker2")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _substitute(value: str, given: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` interpolation."""

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in given:
            return given[name]
        if op == ":-":
            return arg
        raise AssertionError(f"${{{name}}} must be set ({arg})")

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", one, str(value))


def test_services_and_shared_state(compose):
    services = compose["services"]
    assert set(TELERAD_SERVICES) | {"postgres", "redis", "minio"} <= set(services)
    for name in TELERAD_SERVICES:
        svc = services[name]
        assert svc["build"] == "." and set(svc["depends_on"]) == {"postgres", "redis", "minio"}
        assert any(v.endswith(":/var/lib/telerad") for v in svc["volumes"]), f"{name} keeps its own data volume"
    for name in ("postgres", "redis", "minio"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image is pinned"
        assert "healthcheck" in services[name]
    host_ports = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "no host port is published twice"
    assert services["worker1"].get("ports") is None and services["worker1"]["healthcheck"] == {"disable": True}
    data_volumes = {v.split(":")[0] for n in TELERAD_SERVICES for v in services[n]["volumes"] if "/var/lib/telerad" in v}
    assert len(data_volumes) == 4 and data_volumes <= set(compose["volumes"])


def test_environment_is_valid_settings(compose, monkeypatch):
    given = {"TELERAD_SECRET_KEY": "x" * 40, "MINIO_ROOT_PASSWORD": "minio-secret"}
    for name in TELERAD_SERVICES:
        env = {k: _substitute(v, given) for k, v in compose["services"][name]["environment"].items()}
        for k in list(os.environ):
            if k.startswith("TELERAD_"):
                monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("TELERAD_ENVIRONMENT", "production")  # as the image sets it
        settings = load_settings(ROOT / "config" / "demo.toml")  # raises on an unknown or invalid setting
        assert settings.store.kind == "s3" and settings.store.s3.endpoint_url == "http://minio:9000"
        assert settings.database.url.startswith("postgresql://") and settings.queue.url.startswith("redis://")
        assert settings.store.s3.secret_access_key == "env:MINIO_ROOT_PASSWORD", "the secret is a reference"
        assert env["MINIO_ROOT_PASSWORD"] == "minio-secret"
    with pytest.raises(AssertionError, match=r"TELERAD_SECRET_KEY\} must be set"):
        _substitute(compose["services"]["gateway1"]["environment"]["TELERAD_SECRET_KEY"], {})


def test_commands_parse(compose):
    from pacs_gateway.cli import serve, worker

    for name in TELERAD_SERVICES:
        cmd = compose["services"][name]["command"]
        assert cmd[0] == "telerad"
        parser = {"serve": serve.build_parser, "worker": worker.build_parser}[cmd[1]]()
        args = parser.parse_args(cmd[2:])
        if cmd[1] == "serve":
            assert args.no_workers, f"{name} leaves routing and triage to the workers"
    assert {compose["services"][n]["command"][1] for n in TELERAD_SERVICES} == {"serve", "worker"}
