"""Connecting to NATS and making sure the JetStream stream is there (nats-py)."""

import asyncio

STREAM_NAME_FORBIDDEN = " .*>/\\\t\n"
DUPLICATE_WINDOW_S = 120.0
FIRST_CONNECT_S = 10.0  # the first connection; after it, the client reconnects for as long as it runs  # JetStream's default: a retried publish within it is stored once


class BrokerError(Exception):
    """The broker cannot be reached or refused a request (exit status 1, one line)."""


def check_stream_name(name):
    """JetStream stream names: no spaces, dots, wildcards or slashes."""
    if not name or any(character in STREAM_NAME_FORBIDDEN for character in name):
        raise ValueError(f"--stream {name!r}: a stream name has no spaces, '.', '*', '>' or slashes")
    return name


async def connect(url, name, *, reconnect=True):
    """A nats-py connection; with reconnect, it keeps trying for as long as the process runs."""
    import nats

    try:
        # With unlimited reconnects nats-py also retries the FIRST connection for ever: bound it.
        return await asyncio.wait_for(nats.connect(
            url, name=name, connect_timeout=5, allow_reconnect=reconnect,
            max_reconnect_attempts=-1 if reconnect else 0, reconnect_time_wait=0.25,
            error_cb=_quiet, disconnected_cb=_quiet_event, reconnected_cb=_quiet_event,
        ), FIRST_CONNECT_S)
    except asyncio.TimeoutError as error:
        raise BrokerError(f"cannot connect to NATS at {url}: no answer in {FIRST_CONNECT_S:g} s") from error
    except (OSError, nats.errors.Error) as error:
        raise BrokerError(f"cannot connect to NATS at {url}: {error or type(error).__name__}") from error


async def _quiet(error):
    """nats-py prints every failed reconnect attempt with a traceback by default: the callers
    report broker trouble in their own words when an operation fails."""


async def _quiet_event():
    pass


async def ensure_stream(js, stream, prefix):
    """The stream, created (file storage, subjects <prefix>.*) when it is not there yet."""
    from nats.js import api, errors

    try:
        info = await js.stream_info(stream)
    except errors.NotFoundError:
        config = api.StreamConfig(name=stream, subjects=[f"{prefix}.*"], storage=api.StorageType.FILE,
                                  duplicate_window=DUPLICATE_WINDOW_S)
        try:
            return await js.add_stream(config)
        except errors.BadRequestError:  # created meanwhile by another producer or consumer
            return await js.stream_info(stream)
    wanted = f"{prefix}.*"
    if wanted not in (info.config.subjects or []):
        raise BrokerError(f"stream {stream!r} takes the subjects {info.config.subjects}, not {wanted!r} "
                          "(another --prefix?)")
    return info
