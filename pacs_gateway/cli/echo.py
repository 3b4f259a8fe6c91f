"""``telerad echo HOST PORT``: check that a DICOM peer answers."""

from __future__ import annotations

from telerad.cliutil import ArgumentParser, run_cli


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="telerad echo", description="Send a C-ECHO to a DICOM peer.")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--called-ae", default="ANY-SCP", help="the peer's AE title (default ANY-SCP)")
    p.add_argument("--calling-ae", default="TELERAD", help="our AE title (default TELERAD)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    return p


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        from pacs_gateway.scu import echo

        st = echo(args.host, args.port, args.called_ae, args.calling_ae, args.timeout)
        if st != 0:
            print(f"C-ECHO to {args.called_ae}@{args.host}:{args.port} answered status 0x{st:04X}")
            return 1
        print(f"C-ECHO to {args.called_ae}@{args.host}:{args.port}: success")
        return 0

    return run_cli("telerad echo", body)
