"""Every routing, destination and queue setting is in the README's Configuration table."""

from __future__ import annotations

import re

from tests.peers import REPO_ROOT
from pacs_gateway.routing.config import RoutingSettings
from telerad.settings import QueueSettings


def test_routing_settings_are_documented():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = {m.group(1) for m in re.finditer(r"^\| `([a-z_.]+)` \|", table, re.M)}
    wanted = {"destinations"} | {f"routing.{f}" for f in RoutingSettings.model_fields} | {
        f"queue.{f}" for f in QueueSettings.model_fields
    }
    assert wanted <= names, sorted(wanted - names)
    for cmd in ("telerad destination add", "telerad deliveries retry", "telerad deliveries"):
        assert cmd in readme
