"""``telerad alerts [list]`` and ``telerad alerts ack ID --user NAME``.

Every alert states the algorithm and its version and the quality warnings of its
numbers; they are an automated result, not a diagnosis.
"""

from __future__ import annotations

import json

from telerad.cliutil import ArgumentParser, add_common_args, run_cli
from telerad.settings import settings_from_args

PROG = "telerad alerts"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="List stroke alerts and acknowledge them.")
    sub = p.add_subparsers(dest="action")
    lst = sub.add_parser("list", help="list alerts, newest first (the default)")
    ack = sub.add_parser("ack", help="acknowledge an alert (stops its escalation)")
    ack.add_argument("id", type=int)
    ack.add_argument("--user", required=True, help="who acknowledges")
    show = sub.add_parser("show", help="one alert with every step and delivery")
    show.add_argument("id", type=int)
    for sp in (p, lst, ack, show):
        sp.add_argument("--json", action="store_true", help="print JSON")
        add_common_args(sp)
    lst.add_argument("--limit", type=int, default=50)
    return p


def _line(a: dict) -> str:
    sent = sum(d["state"] == "delivered" for d in a["deliveries"])
    ack = f" by {a['acknowledged_by']}" if a["acknowledged_by"] else ""
    return (f"{a['id']:<5} {a['created_at'][:19]:<20} {a['type']:<21} {a['state'] + ack:<28} tier {a['tier']}  "
            f"{sent}/{len(a['deliveries'])} sent  {a['clinic'] or '-'}\n      {a['message']}")


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(args)
        from pacs_gateway.index.db import index_sessions
        from stroke.alerts import AlertService
        from stroke.roster import Roster

        with index_sessions(settings.database_url) as sessions:
            svc = AlertService(settings.alerts, sessions, Roster(sessions))
            if args.action == "ack":
                a = svc.acknowledge(args.id, args.user)
                print(json.dumps(a, indent=2) if args.json else f"alert {a['id']} acknowledged by {a['acknowledged_by']}")
            elif args.action == "show":
                a = svc.get(args.id)
                if args.json:
                    print(json.dumps(a, indent=2))
                else:
                    print(_line(a))
                    for st in a["steps"]:
                        print(f"      {st['at'][:23]} {st['step']:<13} tier {st['tier']} {st['user'] or ''} {st['detail'] or ''}")
                    for d in a["deliveries"]:
                        print(f"      tier {d['tier']} {d['channel']:<8} {d['contact']:<24} {d['state']:<10} "
                              f"attempts {d['attempts']} {d['last_error'] or ''}")
            else:
                alerts = svc.list(limit=getattr(args, "limit", 50))
                if args.json:
                    print(json.dumps(alerts, indent=2))
                elif not alerts:
                    print("no alerts")
                else:
                    for a in alerts:
                        print(_line(a))
            return 0

    return run_cli(PROG, body)
