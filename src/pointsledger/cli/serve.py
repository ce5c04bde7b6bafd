"""serve: the gRPC service over the ledger."""

import errno
import socket

from .common import data_directory, EXIT_OK, Failed, one_line, Usage


def cmd_serve(arguments):
    from .. import service  # grpc is imported only by the commands that need it

    check_address_free(arguments.address)
    try:
        # Creates the ledger with the example programme when it is new, as every writing command does.
        result = service.serve(
            data_directory(arguments), arguments.address, tokens_file=arguments.tokens_file,
            tls_cert=arguments.tls_cert, tls_key=arguments.tls_key, tls_client_ca=arguments.tls_client_ca,
            insecure=arguments.insecure, metrics_port=arguments.metrics_port, sync=not arguments.no_sync,
            **({} if arguments.group_wait_ms is None else {"group_wait_s": arguments.group_wait_ms / 1000}),
        )
    except ValueError as error:  # flags that do not go together (TLS halves, no tokens off loopback)
        raise Usage(one_line(error)) from None
    except RuntimeError as error:
        # grpc: "Failed to bind to address ...; set GRPC_VERBOSITY=debug ..." (a race the check below lost).
        if "bind" not in str(error).lower():
            raise
        raise Failed(f"cannot listen on {arguments.address}: the port is in use or the address is not "
                     "this machine's") from None
    return result if isinstance(result, int) else EXIT_OK


def check_address_free(address):
    """Refuse, in one line, an address another process listens on, before the store is opened.

    grpc binds with SO_REUSEPORT: a second server on a port would share it with the first
    without a word. A plain socket without that option cannot bind next to a listener.
    """
    host, _, port = address.rpartition(":")
    if address.startswith("unix:") or not port.isdigit() or int(port) == 0:
        return
    host = host.strip("[]")
    try:
        family, kind, protocol, _, where = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise Failed(f"cannot listen on {address}: {host!r} does not resolve ({error.strerror})") from None
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(where)
        except OSError as error:
            why = "the port is in use" if error.errno == errno.EADDRINUSE else error.strerror
            raise Failed(f"cannot listen on {address}: {why}") from None
