"""``telerad user add|list|passwd|remove|demo``: the accounts of the web app.

Passwords are read from standard input (``--password-stdin``) or asked for on a terminal,
and stored only as argon2id hashes. ``demo`` creates one account per role (a technician per
registered clinic) with generated passwords, prints them once, and leaves existing accounts alone.
"""

from __future__ import annotations

import getpass
import json
import sys

from telerad.cliutil import ArgumentParser, add_common_args, run_cli
from telerad.settings import settings_from_args

PROG = "telerad user"
DEMO = (("radiologist", "radiologist"), ("stroke", "stroke"), ("admin", "admin"))


def build_parser() -> ArgumentParser:
    from viewer.auth.users import ROLES

    p = ArgumentParser(prog=PROG, description="Add, list and change the accounts of the web app (roles: "
                                              + ", ".join(ROLES) + ").")
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--clinic", action="append", default=[], metavar="CLINIC",
                     help="a clinic (name or AE title) a technician works for; repeat for several")
    lst = sub.add_parser("list", help="list the accounts")
    lst.add_argument("--json", action="store_true")
    pw = sub.add_parser("passwd", help="set a new password (older logins stop working)")
    pw.add_argument("name")
    rm = sub.add_parser("remove", help="delete an account")
    rm.add_argument("name")
    demo = sub.add_parser("demo", help="create demo accounts (one per role) and print their passwords once")
    for sp in (add, pw):
        sp.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    for sp in (add, lst, pw, rm, demo):
        add_common_args(sp)
    return p


def _password(args) -> str:
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise SystemExit(f"{PROG}: --password-stdin: standard input gave no password")
        return line
    if not sys.stdin.isatty():
        raise SystemExit(f"{PROG}: give the password with --password-stdin (standard input is not a terminal)")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise SystemExit(f"{PROG}: the two passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(args)
        from pacs_gateway.index.db import index_sessions
        from viewer.auth import users

        with index_sessions(settings.database_url) as sessions:
            if args.action == "add":
                password = _password(args)
                with sessions.begin() as s:
                    users.add_user(s, args.name, args.role, password, args.clinic)
                print(f"user '{args.name}' added ({args.role}{', ' + ', '.join(args.clinic) if args.clinic else ''})")
            elif args.action == "passwd":
                password = _password(args)
                with sessions.begin() as s:
                    users.set_password(s, args.name, password)
                print(f"password of '{args.name}' changed; older logins no longer work")
            elif args.action == "remove":
                with sessions.begin() as s:
                    users.remove_user(s, args.name)
                print(f"user '{args.name}' removed")
            elif args.action == "demo":
                _demo(sessions, settings)
            else:
                with sessions() as s:
                    rows = users.list_users(s)
                if args.json:
                    print(json.dumps(rows, indent=2))
                elif not rows:
                    print("no users (add one with 'telerad user add NAME --role ROLE --password-stdin')")
                else:
                    for r in rows:
                        print(f"{r['name']:<24} {r['role']:<12} {', '.join(r['clinics']) or '-'}"
                              f"{'  (disabled)' if r['disabled'] else ''}")
        return 0

    return run_cli(PROG, body)


def _demo(sessions, settings) -> None:
    """Demo accounts with generated passwords, printed once; existing accounts are kept as they are."""
    from pacs_gateway.clinics import ClinicRegistry
    from viewer.auth import users
    from viewer.auth.passwords import generate_password

    registry = ClinicRegistry(sessions)
    registry.sync_config(settings.clinics)
    wanted = list(DEMO) + [(f"tech-{c.ae_title.lower()}", "technician", c.name) for c in registry.list()]
    made = []
    with sessions.begin() as s:
        existing = {u["name"] for u in users.list_users(s)}
        for item in wanted:
            name, role = item[0], item[1]
            if name in existing:
                continue
            password = generate_password()
            users.add_user(s, name, role, password, list(item[2:]))
            made.append((name, role, password))
    if not made:
        print("demo accounts exist already (passwords were printed when they were made; "
              "change one with 'telerad user passwd NAME')")
        return
    print("Demo accounts (passwords shown only now):")
    for name, role, password in made:
        print(f"  {name:<24} {role:<12} {password}")
