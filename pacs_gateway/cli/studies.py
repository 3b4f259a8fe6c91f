"""``telerad studies``: list the studies in the index."""

from __future__ import annotations

import json

from telerad.cliutil import ArgumentParser, add_common_args, run_cli
from telerad.settings import settings_from_args


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="telerad studies", description="List the studies telerad has received.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--limit", type=int, default=50, help="at most this many studies, newest first (default 50)")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(args)
        from pacs_gateway.index import queries
        from pacs_gateway.index.db import index_sessions

        with index_sessions(settings.database_url) as sessions:
            with sessions() as s:
                studies = queries.list_studies(s, limit=max(1, args.limit))
        if args.json:
            print(json.dumps(studies, indent=2))
            return 0
        if not studies:
            print(f"no studies in {settings.data_dir}")
            return 0
        print(f"{'STUDY INSTANCE UID':<58} {'CLINIC':<24} {'SERIES':>6} {'IMAGES':>7} {'STATE':<10} KINDS")
        for st in studies:
            print(
                f"{st['study_instance_uid']:<58} {(st['clinic'] or st['calling_ae'] or '-')[:24]:<24} "
                f"{len(st['series']):>6} {st['instance_count']:>7} {st['state']:<10} {','.join(st['kinds']) or '-'}"
            )
        return 0

    return run_cli("telerad studies", body)
