"""``telerad oncall add|list|remove``: the on-call roster (tiers and each contact's channels).

Contacts from ``[[oncall]]`` in the config are synced at every gateway start;
contacts added here stay until removed here. A running gateway sees changes at its next alert.
"""

from __future__ import annotations

import json

from telerad.cliutil import ArgumentParser, registry_parser, run_cli
from telerad.settings import settings_from_args

PROG = "telerad oncall"


def build_parser() -> ArgumentParser:
    p, add, _, _ = registry_parser(PROG, "Manage who is alerted about strokes: tier 1 first, the next tier when "
                                   "nobody acknowledges within alerts.escalation_timeout_s.",
                                   add="put a contact on the roster", list_="list the roster",
                                   remove="take a contact off the roster")
    add.add_argument("--tier", type=int, required=True, help="1 is alerted first; higher tiers on escalation")
    add.add_argument("--email", help="e-mail address (needs alerts.smtp.host)")
    add.add_argument("--webhook", help="URL to POST signed alerts to (Standard Webhooks)")
    add.add_argument("--webhook-secret", help="the receiver's signing secret, whsec_<base64>")
    return p


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(args)
        from pacs_gateway.index.db import index_sessions
        from stroke.roster import Roster, parse_contact

        if args.action == "add":  # validate before touching the index
            contact = parse_contact(name=args.name, tier=args.tier, email=args.email, webhook=args.webhook,
                                    webhook_secret=args.webhook_secret)
        with index_sessions(settings.database_url) as sessions:
            roster = Roster(sessions)
            if args.action == "add":
                c = roster.add(contact)
                print(f"added '{c.name}' to tier {c.tier} ({', '.join(ch for ch, _ in c.channels())})")
            elif args.action == "remove":
                roster.remove(args.name)
                print(f"removed '{args.name}' from the roster")
            else:
                contacts = roster.list()
                if args.json:
                    print(json.dumps([c.public() for c in contacts], indent=2))
                elif not contacts:
                    print("nobody is on call (add someone with 'telerad oncall add NAME --tier 1 --email ...')")
                else:
                    print(f"{'TIER':<5} {'NAME':<28} {'E-MAIL':<32} {'WEBHOOK':<40} SOURCE")
                    for c in contacts:
                        print(f"{c.tier:<5} {c.name:<28} {c.email or '-':<32} {c.webhook_url or '-':<40} {c.source}")
            return 0

    return run_cli(PROG, body)
