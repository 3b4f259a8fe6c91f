"""The DICOM TLS server context (PS3.15 Annex B.9 / BCP 195: TLS 1.2 or newer)."""

from __future__ import annotations

import ssl

from telerad.errors import ConfigError


def server_context(cert, key, ca=None, *, require_client_cert: bool = False, section: str = "dicom") -> ssl.SSLContext:
    """A server-side context from PEM files; a bad file is a ConfigError naming the setting."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"setting '{section}.tls_cert'/'{section}.tls_key': cannot load {cert} / {key}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"setting '{section}.tls_ca': cannot load {ca}: {getattr(exc, 'strerror', None) or exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx
