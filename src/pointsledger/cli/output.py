"""Printing: aligned fields, JSON, times."""

import json

from .. import calendar, limits


def print_json(value):
    print(json.dumps(value, default=str, sort_keys=True))


def print_fields(fields, times=(), indent="", width=None):
    """Aligned `name  value` lines; integer fields named in `times` also shown as UTC."""
    width = width or max(len(name) for name in fields)
    for name, value in fields.items():
        if isinstance(value, int) and not isinstance(value, bool):
            shown = str(value) if name.endswith(PLAIN_NUMBER_SUFFIXES) else f"{value:,}"
            if name in times:
                shown = f"{value} ({format_time(value)})"
        else:
            shown = "-" if value is None else str(value)
        print(f"{indent}{name:<{width}}  {shown}")


PLAIN_NUMBER_SUFFIXES = ("_year", "version", "seq", "_s")


def format_time(time_s):
    if time_s is None:
        return "-"
    if time_s == limits.never_expires_s:
        return "never"
    return calendar.format_utc(time_s)


def split_fields(fields, as_of_names, header_names):
    """(header, as-of figures, all-time totals) of a report's fields: what is cut at as_of, apart.

    Any field not named as header or as-of is an all-time total: the ledger's
    counters and balances hold everything recorded, whatever as_of says (§15).
    """
    header = {name: value for name, value in fields.items() if name in header_names}
    as_of = {name: value for name, value in fields.items() if name in as_of_names}
    all_time = {name: value for name, value in fields.items() if name not in header_names and name not in as_of_names}
    return header, as_of, all_time


ALL_TIME_LABEL = "all-time totals: everything recorded up to now, not cut at the as-of date"


def emit(arguments, fields, times=()):
    if getattr(arguments, "json", False):
        print_json(fields)
    else:
        print_fields(fields, times)


def plural(count, noun):
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
