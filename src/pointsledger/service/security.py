"""Transport security: TLS credentials and the rule for serving without tokens (SPEC §10)."""

import dataclasses
import ipaddress
import logging

import grpc

from .logs import log_event


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    """PEM files: the server's certificate and key; with client_ca, clients must present
    a certificate signed by it (mutual TLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    def credentials(self):
        def read(path):
            with open(path, "rb") as handle:
                return handle.read()

        client_ca = read(self.client_ca_file) if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(read(self.key_file), read(self.cert_file))],
            root_certificates=client_ca, require_client_auth=client_ca is not None,
        )


def is_loopback(address):
    """Whether a gRPC bind address only listens on this machine."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind_policy(address, tokens, insecure, warn=True):
    """Without tokens, only a loopback address, unless the caller says insecure (SPEC §10);
    then a warning says that anyone who reaches the address may write."""
    if tokens is None and not is_loopback(address):
        if not insecure:
            raise ValueError(
                f"refusing to serve {address} without tokens: bind to 127.0.0.1, give a token file, "
                "or say --insecure"
            )
        if warn:
            log_event(logging.WARNING, "serving without tokens on a non-loopback address", address=address,
                      hint="--insecure: anyone who can reach this address can read, write and change the programme")
