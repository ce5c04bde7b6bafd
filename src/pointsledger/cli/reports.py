"""report liability / report rollforward."""

import argparse

from .. import calendar
from .arguments import REVENUE_DAYS, ROLLFORWARD_DAYS, date_argument, end_date_argument
from .common import EXIT_OK, Usage
from .revenue_commands import report_revenue
from .output import ALL_TIME_LABEL, emit, format_time, plural, print_json, split_fields
from .shard_commands import open_reader

LIABILITY_HEADER = ("as_of_s", "currency", "point_value")
# The only figures cut at as_of (§15): bucket points by expiry instant relative to it.
LIABILITY_AS_OF = ("expiring_30_days", "expiring_60_days", "expiring_90_days", "overdue")
LIABILITY_AS_OF_LABELS = {
    "expiring_30_days": "expiring in 30 days", "expiring_60_days": "expiring in 60 days",
    "expiring_90_days": "expiring in 90 days", "overdue": "overdue (due, not yet expired)",
    "pending": "pending (return window)",
}
# Engagement figures (§17): printed as lines only when the ledger has any.
LIABILITY_ENGAGEMENT = ("bonus", "pending")
ROLLFORWARD_TIMES = ("from_s", "to_s")


def cmd_report(arguments):
    if arguments.cohort is not None and arguments.name != "revenue":
        raise Usage("--cohort belongs to `report revenue`")
    _report_dates(arguments, REVENUE_DAYS if arguments.name == "revenue" else ROLLFORWARD_DAYS)
    if arguments.name == "revenue":
        if getattr(arguments, "shard_list", None):
            # D_c = A·S/(A+S) is not a sum over shards: it needs every shard's counters, not their reports.
            raise Usage("--shards is not taken by `report revenue` yet: run it on each shard's store")
        if arguments.as_of is not None:
            raise Usage("--as-of belongs to `report liability`")
        return report_revenue(arguments)
    if arguments.name == "rollforward":
        return report_rollforward(arguments)
    if arguments.from_time is not None or arguments.to_time is not None:
        raise Usage("--from and --to belong to `report rollforward`")
    with open_reader(arguments) as ledger:
        report = ledger.liability(arguments.as_of)
    fields = dict(vars(report))
    fields["issued"] = report.issued
    header, as_of, all_time = split_fields(fields, LIABILITY_AS_OF + ("pending",), LIABILITY_HEADER)
    if arguments.json:
        print_json(dict(header, all_time=with_values(all_time, report.point_value),
                        as_of=with_values(as_of, report.point_value)))
        return EXIT_OK
    as_of_text = format_time(report.as_of_s)
    print(f"Points liability ({report.currency}, one point = {report.point_value} {report.currency} "
          f"in the programme in force at {as_of_text})")
    print(f"  {ALL_TIME_LABEL}")
    print(f"  {'':<30}{'points':>20}{'value':>20}")
    for name, points in after_earned(all_time).items():
        if isinstance(points, int) and (points or name not in LIABILITY_ENGAGEMENT):
            print_line(name.replace("_", " "), points, report.point_value)
    print(f"  outstanding by tier (tiers as of {as_of_text})")
    for tier, points in report.outstanding_by_tier.items():
        print_line(f"  {tier}", points, report.point_value)
    print(f"  as of {as_of_text}: points held now, by expiry date")
    for name in LIABILITY_AS_OF + (("pending",) if report.pending else ()):
        print_line(LIABILITY_AS_OF_LABELS[name], as_of[name], report.point_value)
    return EXIT_OK


def after_earned(fields):
    """The fields with `bonus` moved to just after `earned`, so a text report reads top-down as
    a sum (opening + earned + bonus ... = closing); JSON keeps the dataclass order."""
    if "bonus" not in fields or "earned" not in fields:
        return fields
    ordered = {}
    for name, value in fields.items():
        if name != "bonus":
            ordered[name] = value
        if name == "earned":
            ordered["bonus"] = fields["bonus"]
    return ordered


def with_values(totals, point_value):
    """The totals with the money value of each, <name>_value (points × point_value, exact decimal text), as
    the text report prints and the gRPC Liability carries them."""
    values = {}
    for name, points in totals.items():
        if isinstance(points, int) and not isinstance(points, bool):
            values[f"{name}_value"] = str(points * point_value)
        elif name == "outstanding_by_tier":
            values["outstanding_by_tier_value"] = {tier: str(each * point_value) for tier, each in points.items()}
    return dict(totals, **values)


def print_line(label, points, point_value):
    print(f"    {label:<28}{points:>20,}{point_value * points:>20,.2f}")


def _report_dates(arguments, why):
    """--from and --to as UTC midnights, or the report parser's error (exit 2) saying why a date is needed."""
    for option, name, parse in (("--from", "from_time", date_argument), ("--to", "to_time", end_date_argument)):
        text = getattr(arguments, name)
        if text is not None:
            try:
                setattr(arguments, name, parse(text, why))
            except argparse.ArgumentTypeError as error:
                arguments.report_parser.error(f"argument {option}: {error}")


def report_rollforward(arguments):
    if arguments.from_time is None or arguments.to_time is None:
        raise Usage("report rollforward needs --from and --to")
    # One rule with the API: --to equal to --from is an empty period (harmless, every line 0); before it, an error.
    if arguments.to_time < arguments.from_time:
        raise Usage("--to must not be an earlier date than --from: the period is the days from --from up to, "
                    "not including, --to")
    with open_reader(arguments) as ledger:
        report = ledger.rollforward(arguments.from_time, arguments.to_time)
    fields = dict(vars(report))
    # §17: the fraction expired / (earned + bonus + positive adjustments) and its 6-place decimal; no
    # float form of the ratio (no floats in the ledger's output: `breakage` has it exactly).
    del fields["breakage_rate"]
    breakage = fields.pop("breakage")
    if arguments.json:
        fields["breakage"] = {"expired": breakage.expired, "credited": breakage.credited,
                              "decimal": None if breakage.decimal is None else str(breakage.decimal)}
    else:
        fields["breakage"] = f"{breakage.expired:,}/{breakage.credited:,}" + (
            "" if breakage.decimal is None else f" = {breakage.decimal}")
    first_day, last_day, days = period_days(report.from_s, report.to_s)
    if arguments.json:
        print_json(dict(fields, first_day=first_day, last_day=last_day, days=days))
        return EXIT_OK
    covered = f"the UTC days {first_day} through {last_day}" if days else "an empty period"
    print(f"Points rollforward for {covered} ({plural(days, 'day')}: "
          f"{format_time(report.from_s)} up to {format_time(report.to_s)})")
    emit(arguments, after_earned(fields), ROLLFORWARD_TIMES)
    return EXIT_OK


def period_days(from_s, to_s):
    """(first day, last day, number of days) of the UTC days [from_s, to_s) a rollforward covers
    (None, None, 0) for an empty period."""
    days = (to_s - from_s) // calendar.SECONDS_PER_DAY
    if not days:
        return None, None, 0
    last_day = calendar.format_utc(to_s - calendar.SECONDS_PER_DAY)[:10]
    return calendar.format_utc(from_s)[:10], last_day, days
