"""Printing: aligned fields, JSON, times."""

import json

from .. import calendar, limits


def print_json(value):
    print(json.dumps(value, default=str, sort_keys=True))


def print_fields(fields, times=()):
    """Aligned `name  value` lines; integer fields named in `times` also shown as UTC."""
    width = max(len(name) for name in fields)
    for name, value in fields.items():
        if isinstance(value, int) and not isinstance(value, bool):
            shown = str(value) if name.endswith(PLAIN_NUMBER_SUFFIXES) else f"{value:,}"
            if name in times:
                shown = f"{value} ({format_time(value)})"
        else:
            shown = "-" if value is None else str(value)
        print(f"{name:<{width}}  {shown}")


PLAIN_NUMBER_SUFFIXES = ("_year", "version", "seq", "_s")


def format_time(time_s):
    if time_s is None:
        return "-"
    if time_s == limits.never_expires_s:
        return "never"
    return calendar.format_utc(time_s)


def emit(arguments, fields, times=()):
    if getattr(arguments, "json", False):
        print_json(fields)
    else:
        print_fields(fields, times)


def plural(count, noun):
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
