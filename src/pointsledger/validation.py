"""Validation of the inputs every operation shares (§2, §15): ids, integers, times, amounts.

Each check returns the value in its stored form or raises InvalidArgument naming the field and
the value. Both engines and every layer above them (ledger, operations, importer, service, CLI)
use these, so an input is refused with the same words wherever it enters.
"""

from . import calendar, limits
from .errors import InvalidArgument


def utf8_of(field, value):
    """The UTF-8 bytes of a text field, or InvalidArgument naming the field."""
    if not isinstance(value, str):
        raise InvalidArgument(field, value, "must be a string")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(field, value, "must be valid UTF-8") from None


def validate_id(field, value, max_bytes=limits.id_bytes_max):
    """The UTF-8 key of an id, or InvalidArgument naming the field."""
    key = utf8_of(field, value)
    if not 1 <= len(key) <= max_bytes:
        raise InvalidArgument(field, value, f"must be 1 to {max_bytes} bytes of UTF-8")
    for byte in key:
        if byte < 0x20 or byte == 0x7F:
            raise InvalidArgument(field, value, "must not contain control characters")
    return key


def validate_int(field, value, low, high):
    # numpy integers arrive from columnar input; bool is an int but never a number here.
    if isinstance(value, bool) or not hasattr(value, "__index__") or isinstance(value, float):
        raise InvalidArgument(field, value, "must be an integer")
    number = int(value.__index__())
    if not low <= number <= high:
        raise InvalidArgument(field, number, f"must be between {low} and {high}")
    return number


def validate_time(field, value):
    return validate_int(field, value, limits.time_s_min, limits.time_s_max_exclusive - 1)


def validate_amount(field, value):
    return validate_int(field, value, limits.amount_minor_min, limits.amount_minor_max)


def validate_midnight(field, time_s, why):
    """A period boundary of a report kept in per-day counters: a UTC midnight, or InvalidArgument
    naming the field, `why` midnights only, and the day the instant is inside (a time moved to its
    midnight silently would be reported as the time given)."""
    if time_s % calendar.SECONDS_PER_DAY:
        day = calendar.format_utc(time_s - time_s % calendar.SECONDS_PER_DAY)[:10]
        raise InvalidArgument(field, time_s, f"must be a UTC midnight: {why}, and {calendar.format_utc(time_s)} "
                                             f"is inside {day}")
    return time_s
