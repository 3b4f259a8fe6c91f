"""A throw-away certificate authority for the TLS tests (openssl CLI; keys never leave tmp_path)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _run(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pair:
    key: Path
    cert: Path


def make_ca(folder: Path, name: str = "ca") -> Pair:
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN=telerad test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Pair(key, cert)


def issue(ca: Pair, folder: Path, name: str, cn: str, *, server: bool) -> Pair:
    """A leaf certificate for ``cn`` signed by ``ca`` (server: SAN localhost and 127.0.0.1)."""
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    ext = folder / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    ext.write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"
                   + ("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server else ""))
    _run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
         "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return Pair(key, cert)
