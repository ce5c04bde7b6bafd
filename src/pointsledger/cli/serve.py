"""serve: the gRPC service over the ledger."""

from .common import data_directory, EXIT_OK, one_line, Usage


def cmd_serve(arguments):
    from .. import service  # grpc is imported only by the commands that need it

    try:
        # Creates the ledger with the example programme when it is new, as every writing command does.
        result = service.serve(
            data_directory(arguments), arguments.address, tokens_file=arguments.tokens_file,
            tls_cert=arguments.tls_cert, tls_key=arguments.tls_key, tls_client_ca=arguments.tls_client_ca,
            insecure=arguments.insecure, metrics_port=arguments.metrics_port, sync=not arguments.no_sync,
        )
    except ValueError as error:  # flags that do not go together (TLS halves, no tokens off loopback)
        raise Usage(one_line(error)) from None
    return result if isinstance(result, int) else EXIT_OK
