"""The ``telerad`` command: a dispatcher to each package's subcommand.

Every subcommand lives in the package that owns it, as a module with
``build_parser()`` and ``main(argv=None) -> int``, so tests can call it
in-process. Modules are imported only when their subcommand runs, so
``telerad serve`` never imports numpy-heavy triage code.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("pacs_gateway.cli.serve", "run the DICOM gateway and the web service"),
    "worker": ("pacs_gateway.cli.worker", "run routing, triage and alerts for gateways sharing one index, queue and store"),
    "echo": ("pacs_gateway.cli.echo", "C-ECHO a DICOM peer"),
    "send": ("pacs_gateway.cli.send", "send DICOM files to a peer with C-STORE"),
    "studies": ("pacs_gateway.cli.studies", "list the studies in the index"),
    "clinic": ("pacs_gateway.cli.clinic", "register, list and remove sending clinics"),
    "destination": ("pacs_gateway.cli.destination", "add, list and remove the destinations studies are routed to"),
    "deliveries": ("pacs_gateway.cli.deliveries", "the delivery ledger: state per series and destination; retry failed"),
    "analyze": ("triage.cli", "run CT-perfusion stroke triage on a folder of DICOM files"),
    "oncall": ("stroke.cli.oncall", "add, list and remove the people alerted about strokes (tiers, channels)"),
    "alerts": ("stroke.cli.alerts", "list stroke alerts and acknowledge them"),
    "phantom": ("sample_dicom.cli", "write a digital CT-perfusion phantom with ground truth"),
    "user": ("viewer.auth.cli", "add, list and change the web app's accounts (roles, clinics, passwords)"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return (
        "usage: telerad COMMAND [options]\n\n"
        "commands:\n"
        f"{rows}\n\n"
        "Run 'telerad COMMAND --help' for the options of one command."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from telerad import __version__

        print(f"telerad {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"telerad: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
