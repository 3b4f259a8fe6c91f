"""``telerad clinic add|list|remove``: the clinics allowed to send (calling-AE allow-list)."""

from __future__ import annotations

import json

from telerad.cliutil import ArgumentParser, registry_parser, run_cli
from telerad.settings import settings_from_args


def build_parser() -> ArgumentParser:
    p, add, _, _ = registry_parser("telerad clinic", "Register the township clinics allowed to send studies.",
                                   add="register a clinic", list_="list registered clinics", remove="remove a clinic")
    add.add_argument("--ae-title", required=True, help="the calling AE title of the clinic's modality")
    add.add_argument("--host", help="the clinic's DICOM host, for results sent back")
    add.add_argument("--port", type=int, help="the clinic's DICOM port")
    return p


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(args)
        from pacs_gateway.clinics import ClinicRegistry
        from pacs_gateway.index.db import index_sessions

        with index_sessions(settings.database_url) as sessions:
            reg = ClinicRegistry(sessions)
            if args.action == "add":
                if args.port is not None and not 1 <= args.port <= 65535:
                    from telerad.errors import UsageError

                    raise UsageError("--port must be between 1 and 65535")
                try:
                    c = reg.add(args.name, args.ae_title, args.host, args.port)
                except ValueError as exc:
                    if type(exc).__name__ == "ValidationError":
                        from telerad.errors import UsageError

                        raise UsageError(f"--ae-title: {exc.errors()[0]['msg']}") from None
                    raise
                print(f"registered clinic '{c.name}' (AE title {c.ae_title})")
            elif args.action == "remove":
                reg.remove(args.name)
                print(f"removed clinic '{args.name}'")
            else:
                clinics = reg.list()
                if args.json:
                    print(json.dumps([c.__dict__ for c in clinics], indent=2))
                elif not clinics:
                    print("no clinics registered")
                else:
                    print(f"{'NAME':<32} {'AE TITLE':<16} {'ADDRESS':<24} SOURCE")
                    for c in clinics:
                        addr = f"{c.host}:{c.port}" if c.host else "-"
                        print(f"{c.name:<32} {c.ae_title:<16} {addr:<24} {c.source}")
            return 0

    return run_cli("telerad clinic", body)
