"""``telerad deliveries [list]`` and ``telerad deliveries retry``: the delivery ledger."""

from __future__ import annotations

import json
import sys

from telerad.cliutil import ArgumentParser, add_common_args, run_cli
from telerad.settings import settings_from_args

STATES = ("queued", "sending", "delivered", "failed")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="telerad deliveries",
        description="Show the delivery ledger per series and destination, or requeue failed deliveries.",
    )
    sub = p.add_subparsers(dest="action", required=True)
    lst = sub.add_parser("list", help="delivery state per series and destination (the default)")
    lst.add_argument("--state", choices=STATES, help="only series with deliveries in this state")
    lst.add_argument("--destination", help="only this destination")
    lst.add_argument("--study", metavar="UID", help="only this Study Instance UID")
    lst.add_argument("--limit", type=int, default=200, help="at most this many rows (default 200)")
    lst.add_argument("--json", action="store_true")
    rt = sub.add_parser("retry", help="requeue failed deliveries (the running gateway sends them)")
    rt.add_argument("--destination", help="only this destination")
    rt.add_argument("--study", metavar="UID", help="only this Study Instance UID")
    rt.add_argument("--series", metavar="UID", help="only this Series Instance UID")
    for sp in (lst, rt):
        add_common_args(sp)
    return p


def _print_table(rows: list[dict], failed: list[dict]) -> None:
    if not rows:
        print("no deliveries")
        return
    print(f"{'SERIES':<26} {'KIND':<10} {'LANE':<8} {'DESTINATION':<16} {'STATE':<10} "
          f"{'QUEUED':>6} {'SENDING':>7} {'DELIVERED':>9} {'FAILED':>6}  LAST ERROR")  # fmt: skip
    for r in rows:
        c = r["counts"]
        uid = r["series_instance_uid"]
        uid = uid if len(uid) <= 26 else "…" + uid[-25:]
        print(
            f"{uid:<26} {r['kind'] or '-':<10} {r['lane']:<8} {r['destination']:<16} {r['state']:<10} "
            f"{c['queued']:>6} {c['sending']:>7} {c['delivered']:>9} {c['failed']:>6}  {r['last_error'] or ''}"
        )
    if failed:
        print(f"\nfailed instances (newest {len(failed)}):")
        for f in failed:
            print(f"  {f['sop_instance_uid']} -> {f['destination']} after {f['attempts']} attempt(s): {f['error']}")
        print("requeue them with: telerad deliveries retry [--destination NAME] [--study UID]")


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args_in = list(sys.argv[1:] if argv is None else argv)
        if not args_in or args_in[0].startswith("-") and args_in[0] not in ("-h", "--help"):
            args_in = ["list", *args_in]
        args = build_parser().parse_args(args_in)
        settings = settings_from_args(args)
        from pacs_gateway.index.db import open_index
        from pacs_gateway.routing import report

        engine, sessions = open_index(settings.database_url)
        try:
            if args.action == "retry":
                n = report.retry_failed(engine, destination=args.destination, study_uid=args.study, series_uid=args.series)
                print(f"requeued {n} failed deliver{'y' if n == 1 else 'ies'}"
                      + (" (the running gateway sends them within routing.sweep_interval_s)" if n else ""))  # fmt: skip
                return 0
            if args.limit < 1:
                from telerad.errors import UsageError

                raise UsageError("--limit must be at least 1")
            with sessions() as s:
                rows = report.list_deliveries(
                    s, state=args.state, destination=args.destination, study_uid=args.study, limit=args.limit
                )
                failed = report.failed_rows(s, destination=args.destination, study_uid=args.study, limit=20)
            if args.json:
                print(json.dumps({"series": rows, "failed": failed}, indent=2))
            else:
                _print_table(rows, failed if args.state in (None, "failed") else [])
            return 0
        finally:
            engine.dispose()

    return run_cli("telerad deliveries", body)
