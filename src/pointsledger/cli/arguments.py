"""Argument types: times, dates, bounded integers, ids, addresses, seconds.

A value these refuse is exit status 2 (argparse's usage error), found before
the ledger is touched; the ranges are the ledger's own (SPEC §15), so a value
that passes here is refused by the ledger only for what it holds.
"""

import argparse
import re
import time

from .. import calendar, limits
from ..validation import validate_id
from ..errors import InvalidArgument
from ..operations import validate_birthday, validate_reason

DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
PORT_MAX = 65_535


def time_argument(text):
    """Unix seconds, ISO 8601 UTC (2026-03-15T00:00:00Z), a date (2026-03-15, midnight UTC) or "now"."""
    given = text.strip()
    if given == "now":
        return int(time.time())
    if re.fullmatch(r"-?[0-9]+", given):
        value = int(given)
    else:
        value = calendar.parse_utc(given + "T00:00:00Z" if DATE_PATTERN.fullmatch(given) else given)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"{given!r} is not a time: give Unix seconds, 2026-03-15T00:00:00Z, 2026-03-15 or now"
        )
    if not limits.time_s_min <= value < limits.time_s_max_exclusive:
        raise argparse.ArgumentTypeError(
            f"{given!r} is outside the event-time range {calendar.format_utc(limits.time_s_min)} "
            f"to {calendar.format_utc(limits.time_s_max_exclusive - 1)}"
        )
    return value


ROLLFORWARD_DAYS = "the rollforward covers whole UTC days, midnight to midnight"
REVENUE_DAYS = "revenue positions are known only at UTC midnights: --from and --to are UTC days"


def date_argument(text, why=ROLLFORWARD_DAYS):
    """A UTC date, YYYY-MM-DD, as its midnight: the report counts whole UTC days (SPEC §17, §19)."""
    return _date(text, limits.time_s_max_exclusive - 1, why)


def end_date_argument(text, why=ROLLFORWARD_DAYS):
    """As date_argument, for an exclusive end (--to): the day after the last one covered, so it may be
    the end of the event-time range itself (2100-01-01), or the last day could not be covered."""
    return _date(text, limits.time_s_max_exclusive, why)


def _date(text, latest, why):
    given = text.strip()
    value = calendar.parse_utc(given + "T00:00:00Z") if DATE_PATTERN.fullmatch(given) else None
    if value is None:
        raise argparse.ArgumentTypeError(f"{given!r} is not a date: give YYYY-MM-DD ({why})")
    if not limits.time_s_min <= value <= latest:
        raise argparse.ArgumentTypeError(
            f"{given!r} is outside {calendar.format_utc(limits.time_s_min)[:10]} to {calendar.format_utc(latest)[:10]}"
        )
    return value


def integer_argument(low, high, *, nonzero=False):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low:,} and {high:,}")
        if nonzero and value == 0:
            raise argparse.ArgumentTypeError("0 is not allowed: give a non-zero integer")
        return value

    return parse


def _checked(check):
    """An argument type from one of the ledger's validators: its reason becomes the usage error."""
    def parse(text):
        try:
            check(text)
        except InvalidArgument as error:
            raise argparse.ArgumentTypeError(f"{error.reason} (got {text!r})") from None
        return text

    return parse


def id_argument(field):
    return _checked(lambda text: validate_id(field, text))


reason_argument = _checked(validate_reason)


def birthday_argument(text):
    """MM-DD, a day that exists (29 February does): the ledger's own check, named birthday."""
    try:
        validate_birthday(text)
    except InvalidArgument as error:
        reason = error.reason.replace("or null to clear it", "or --clear to remove it")
        raise argparse.ArgumentTypeError(f"birthday {reason} (got {text!r})") from None
    return text


def address_argument(text):
    """host:port with a port 0 to 65535 (0: any free port)."""
    host, separator, port = text.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port (like 127.0.0.1:50051)")
    if not 0 <= int(port) <= PORT_MAX:
        raise argparse.ArgumentTypeError(f"port {port} is not between 0 and {PORT_MAX:,}")
    return text


def positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 86400 seconds")
    return value
