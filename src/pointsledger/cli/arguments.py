"""Argument types: times, bounded integers, seconds."""

import argparse
import re
import time

from .. import calendar


def time_argument(text):
    """Unix seconds, ISO 8601 UTC (2026-03-15T00:00:00Z), a date (2026-03-15, midnight UTC) or "now"."""
    given = text.strip()
    if given == "now":
        return int(time.time())
    if re.fullmatch(r"-?[0-9]+", given):
        return int(given)
    parsed = calendar.parse_utc(given + "T00:00:00Z" if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", given) else given)
    if parsed is None:
        raise argparse.ArgumentTypeError(
            f"{given!r} is not a time: give Unix seconds, 2026-03-15T00:00:00Z, 2026-03-15 or now"
        )
    return parsed


def integer_argument(low, high):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low:,} and {high:,}")
        return value

    return parse


def positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 86400 seconds")
    return value
