"""``telerad destination add|list|remove``: where routed studies go."""

from __future__ import annotations

import json

from telerad.cliutil import ArgumentParser, registry_parser, run_cli
from telerad.settings import settings_from_args


def build_parser() -> ArgumentParser:
    p, add, _, rm = registry_parser("telerad destination", "Manage the destinations routed studies are delivered to.",
                                    add="add a destination", list_="list destinations", remove="remove a destination")
    add.add_argument("--kind", required=True, choices=["dicom", "dicomweb"], help="C-STORE peer or STOW-RS server")
    add.add_argument("--host", help="dicom: the peer's host")
    add.add_argument("--port", type=int, help="dicom: the peer's port")
    add.add_argument("--ae-title", help="dicom: the peer's (called) AE title")
    add.add_argument("--calling-ae", help="dicom: our AE title towards it (default dicom.ae_title)")
    add.add_argument("--compression", choices=["none", "jpeg2000-lossless", "jpeg-ls-lossless", "deflate"],
                     help="dicom: lossless compression for the wire, when the peer accepts it")
    add.add_argument("--tls", action="store_true", help="dicom: DICOM over TLS")
    add.add_argument("--tls-ca-file", help="CA bundle to verify the peer (dicom TLS or https)")
    add.add_argument("--tls-cert-file", help="our client certificate (PEM)")
    add.add_argument("--tls-key-file", help="our client key (PEM)")
    add.add_argument("--tls-no-verify", action="store_true", help="do not verify the peer's certificate (testing only)")
    add.add_argument("--url", help="dicomweb: the DICOMweb root, e.g. https://pacs.example/dicom-web")
    add.add_argument("--auth-header", help="dicomweb: a header such as 'Authorization: Bearer TOKEN'")
    add.add_argument("--default", action="store_true", help="route every series here when no rule says otherwise")
    rm.add_argument("--force", action="store_true", help="also drop its pending deliveries")
    return p


def _config_from(args):
    from pacs_gateway.routing.destinations import parse_destination

    tls = None
    if args.tls or args.tls_ca_file or args.tls_cert_file or args.tls_key_file or args.tls_no_verify:
        tls = {
            k: v
            for k, v in {
                "enabled": True,
                "ca_file": args.tls_ca_file,
                "cert_file": args.tls_cert_file,
                "key_file": args.tls_key_file,
                "verify": not args.tls_no_verify,
            }.items()
            if v is not None
        }
    return parse_destination(
        name=args.name, kind=args.kind, host=args.host, port=args.port, ae_title=args.ae_title,
        calling_ae=args.calling_ae, compression=args.compression, url=args.url, auth_header=args.auth_header,
        default=args.default, tls=tls,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(args)
        from pacs_gateway.index.db import index_sessions
        from pacs_gateway.routing.destinations import DestinationRegistry

        with index_sessions(settings.database_url) as sessions:
            reg = DestinationRegistry(sessions)
            if args.action == "add":
                info = reg.add(_config_from(args))
                default = " (default)" if info.is_default else ""
                print(f"added {info.kind} destination '{info.name}' -> {info.address()}{default}")
            elif args.action == "remove":
                dropped = reg.remove(args.name, force=args.force)
                extra = f"; dropped {dropped} pending deliveries" if dropped else ""
                print(f"removed destination '{args.name}'{extra}")
            else:
                dests = reg.list()
                if args.json:
                    print(json.dumps([{**d.config.public(), "source": d.source} for d in dests], indent=2))
                elif not dests:
                    print("no destinations")
                else:
                    print(f"{'NAME':<24} {'KIND':<9} {'ADDRESS':<44} {'DEFAULT':<8} SOURCE")
                    for d in dests:
                        print(f"{d.name:<24} {d.kind:<9} {d.address():<44} {'yes' if d.is_default else 'no':<8} {d.source}")
            return 0

    return run_cli("telerad destination", body)
