"""``telerad serve``: the DICOM gateway and the web service in one process."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from telerad.cliutil import ArgumentParser, add_common_args, configure_logging, run_cli
from telerad.settings import settings_from_args

log = logging.getLogger("telerad.serve")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="telerad serve", description="Run the DICOM gateway (C-STORE/C-ECHO SCP) and the web service.")
    add_common_args(p)
    p.add_argument("--dicom-port", type=int, help="DICOM port (setting dicom.port, default 11112)")
    p.add_argument("--http-port", type=int, help="HTTP port (setting http.port, default 8080)")
    p.add_argument("--ae-title", help="our AE title (setting dicom.ae_title, default TELERAD)")
    p.add_argument("--dicom-tls-port", type=int, help="DICOM TLS port (setting dicom.tls_port; needs dicom.tls_cert/tls_key)")
    p.add_argument("--accept-any-ae", action="store_true", default=None,
                   help="development only: accept associations from any calling AE title")
    p.add_argument("--load-samples", action="store_true",
                   help="on first start, push the bundled sample studies in through the DICOM port")
    p.add_argument("--no-http", action="store_true", help="run only the DICOM gateway")
    p.add_argument("--no-workers", action="store_true",
                   help="receive and serve the API only; routing, triage and alerts run in 'telerad worker' "
                        "processes on the shared index, queue and store (setting roles = [\"receive\", \"api\"])")
    return p


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(
            args,
            **{
                "dicom.port": args.dicom_port,
                "http.port": args.http_port,
                "dicom.ae_title": args.ae_title,
                "dicom.tls_port": args.dicom_tls_port,
                "dicom.accept_any_ae": args.accept_any_ae,
                "roles": ["receive", "api"] if args.no_workers else None,
            },
        )
        if "work" not in settings.roles:
            from pacs_gateway.cli.worker import check_shared

            check_shared(settings, allow_local=False)  # someone else must route and triage what arrives
        configure_logging(settings.log_level)
        from telerad.app import build_gateway

        gateway = build_gateway(settings)
        gateway.start()
        try:
            if args.load_samples:
                threading.Thread(target=_load_samples, args=(gateway,), name="samples", daemon=True).start()
            _banner(settings)
            if args.no_http or "api" not in settings.roles:
                _wait_for_signal()
            else:
                _run_http(gateway)
        finally:
            log.info("shutting down")
            gateway.stop()
        return 0

    return run_cli("telerad serve", body)


def web_app(gateway):
    """The web app of a running gateway (built by the composition root, :func:`telerad.app.build_web_app`)."""
    from telerad.app import build_web_app

    return build_web_app(gateway)


def _run_http(gateway) -> None:
    import uvicorn

    s = gateway.settings
    app = web_app(gateway)
    tls = {}
    if s.http.tls_cert is not None:
        import ssl

        for field in ("tls_cert", "tls_key", "tls_ca"):
            path = getattr(s.http, field)
            if path is not None and not path.is_file():
                from telerad.errors import ConfigError

                raise ConfigError(f"setting 'http.{field}': {path} is not a readable file")
        tls = {"ssl_certfile": str(s.http.tls_cert), "ssl_keyfile": str(s.http.tls_key)}
        if s.http.tls_ca is not None:
            tls.update(ssl_ca_certs=str(s.http.tls_ca), ssl_cert_reqs=ssl.CERT_OPTIONAL)
    # Open event streams (worklist, alerts) never end by themselves: stop waiting for them after 5 s.
    config = uvicorn.Config(app, host=s.http.bind, port=s.http.port, log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=5, **tls)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        from telerad.errors import ConfigError

        raise ConfigError(f"setting 'http.port': cannot listen on {s.http.bind}:{s.http.port} (is it in use?)")


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _banner(settings) -> None:
    host = "127.0.0.1" if settings.http.bind in ("0.0.0.0", "::") else settings.http.bind
    scheme = "https" if settings.http.tls_cert is not None else "http"
    tls_line = ([f"  DICOM TLS: port {settings.dicom.tls_port}"
                 f"{' (client certificate required)' if settings.dicom.tls_require_client_cert else ''}"]
                if settings.dicom.tls_port else [])
    data = settings.data_dir
    print(
        "\n".join(
            [
                "telerad is running.",
                f"  DICOM:   AE title {settings.dicom.ae_title} on port {settings.dicom.port} (C-STORE, C-ECHO)",
                *tls_line,
                f"  Web:     {scheme}://{host}:{settings.http.port}/healthz",
                f"  API:     {scheme}://{host}:{settings.http.port}/api/studies",
                f"  Reading room: {scheme}://{host}:{settings.http.port}/login (accounts: telerad user list)",
                f"  Viewer:  {scheme}://{host}:{settings.http.port}/ohif/ (DICOMweb: /dicomweb)",
                f"  Studies: telerad studies --data-dir {data}",
                f"  Clinics: telerad clinic list --data-dir {data}",
                "Press Ctrl+C to stop.",
            ]
        ),
        flush=True,
    )


def _load_samples(gateway) -> None:
    """Push the bundled sample studies through our own DICOM port, once per data dir."""
    from datetime import datetime, timezone

    from sqlalchemy import select

    from pacs_gateway.index.models import Setting
    from pacs_gateway.scu import expand_paths, inspect_file, send_files

    with gateway.sessions() as s:
        if s.execute(select(Setting).where(Setting.key == "samples_loaded")).scalar_one_or_none():
            return
    try:
        from sample_dicom.bundled import ensure_sample_studies

        folders = ensure_sample_studies(gateway.settings.data_dir / "samples")
        clinics = gateway.clinics.list()
        calling = clinics[0].ae_title if clinics else "TELERAD"
        total = 0
        for folder in folders:
            infos = [inspect_file(p) for p in expand_paths([folder])]
            results = send_files(infos, "127.0.0.1", gateway.settings.dicom.port, gateway.settings.dicom.ae_title, calling)
            total += sum(r.ok for r in results)
        with gateway.sessions.begin() as s:
            s.merge(Setting(key="samples_loaded", value=str(total), updated_at=datetime.now(timezone.utc)))
        print(f"Loaded {total} sample image(s) from {len(folders)} bundled stud(ies) through DICOM, as clinic AE '{calling}'.",
              flush=True)
    except Exception as exc:  # the service keeps running without samples
        log.error("could not load the sample studies: %s", exc)
        print(f"telerad serve: could not load the sample studies: {exc}", file=sys.stderr, flush=True)
