"""The https upstream's throwaway certificates, and the TLS session a Python client gets."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .common import TLS_NAME, say


@dataclass(frozen=True)
class Tls:
    """The https upstream's certificate, from a throwaway CA that the proxies are told to trust."""

    ca: Path  # the CA certificate: --ca-bundle, proxy_ssl_trusted_certificate
    cert: Path  # the upstream's certificate chain, for localhost and 127.0.0.1
    key: Path  # its private key
    source: str  # what made them: trustme or openssl


NO_CERTS = "neither trustme nor the openssl command could make the certificates"


def make_certificates(directory: Path) -> Tls | None:
    """A CA and a server certificate for localhost and 127.0.0.1 (PEM files in ``directory``),
    made with trustme or else the openssl command; None when neither can make them."""
    directory.mkdir()
    with contextlib.suppress(ImportError):
        return trustme_certificates(directory)
    openssl = shutil.which("openssl")
    if openssl is None:
        say(f"{NO_CERTS}: the https rows are skipped")
        return None
    say("trustme is not installed: making the https certificates with openssl")
    return openssl_certificates(openssl, directory)


def trustme_certificates(directory: Path) -> Tls:
    """The certificates from trustme (a test dependency of the project): ImportError without."""
    import trustme

    tls = Tls(directory / "ca.pem", directory / "server.pem", directory / "key.pem", "trustme")
    ca = trustme.CA()
    server = ca.issue_cert(TLS_NAME, "127.0.0.1")
    ca.cert_pem.write_to_path(tls.ca)
    for index, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(tls.cert, append=index > 0)
    server.private_key_pem.write_to_path(tls.key)
    return tls


def openssl_certificates(openssl: str, directory: Path) -> Tls | None:
    """What trustme would make (P-256 keys, one-day certificates), with the openssl command."""
    tls = Tls(directory / "ca.pem", directory / "server.pem", directory / "key.pem", "openssl")
    ca, cert, key = str(tls.ca), str(tls.cert), str(tls.key)
    ca_key, request, extensions = (directory / name for name in ("ca.key", "req.pem", "ext.cnf"))
    extensions.write_text(
        f"subjectAltName = DNS:{TLS_NAME}, IP:127.0.0.1\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    commands = [
        [openssl, "req", "-x509", *new_key, "-keyout", str(ca_key), "-out", ca, "-days", "1"]
        + ["-subj", "/CN=remoteit-proxy benchmark CA"]
        + ["-addext", "basicConstraints = critical, CA:TRUE"]
        + ["-addext", "keyUsage = critical, keyCertSign, cRLSign"],
        [openssl, "req", *new_key, "-keyout", key, "-out", str(request)]
        + ["-subj", f"/CN={TLS_NAME}"],
        [openssl, "x509", "-req", "-in", str(request), "-CA", ca, "-CAkey", str(ca_key)]
        + ["-days", "1", "-set_serial", f"0x{os.urandom(8).hex()}"]
        + ["-extfile", str(extensions), "-out", cert],
    ]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            say(f"openssl failed, the https rows are skipped: {done.stderr.strip()}")
            return None
    return tls


def tls_session(port: int, tls: Tls) -> str:
    """The protocol and cipher a TLS client in Python (as remoteit-proxy is) negotiates with
    the upstream's https port, for the report."""
    context = ssl.create_default_context(cafile=str(tls.ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=TLS_NAME) as conn,
    ):
        cipher = conn.cipher()
        return f"{conn.version()} {cipher[0] if cipher else '?'}"
