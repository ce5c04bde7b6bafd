"""report liability / report rollforward."""

from .common import EXIT_OK, open_existing, Usage
from .output import emit, format_time, print_json


LIABILITY_LINES = ("earned", "adjusted_positive", "adjusted_negative", "clawed_back", "redeemed", "expired",
                   "outstanding", "expiring_30_days", "expiring_60_days", "expiring_90_days", "overdue")


def cmd_report(arguments):
    if arguments.name == "rollforward":
        return report_rollforward(arguments)
    if arguments.from_time is not None or arguments.to_time is not None:
        raise Usage("--from and --to belong to `report rollforward`")
    with open_existing(arguments) as ledger:
        report = ledger.liability(arguments.as_of)
    fields = dict(vars(report))
    fields["issued"] = report.issued
    if arguments.json:
        print_json(fields)
        return EXIT_OK
    print(f"Points liability as of {format_time(report.as_of_s)} ({report.currency}, "
          f"one point = {report.point_value} {report.currency})")
    print(f"  {'':<22}{'points':>20}{'value':>20}")
    for name in LIABILITY_LINES:
        value = report.point_value * fields[name]
        print(f"  {name.replace('_', ' '):<22}{fields[name]:>20,}{value:>20,.2f}")
    print("  outstanding by tier")
    for tier, points in report.outstanding_by_tier.items():
        print(f"    {tier:<20}{points:>20,}{report.point_value * points:>20,.2f}")
    return EXIT_OK


def report_rollforward(arguments):
    if arguments.from_time is None or arguments.to_time is None:
        raise Usage("report rollforward needs --from and --to")
    with open_existing(arguments) as ledger:
        report = ledger.rollforward(arguments.from_time, arguments.to_time)
    fields = dict(vars(report))
    fields["breakage_rate"] = None if report.breakage_rate is None else float(report.breakage_rate)
    emit(arguments, fields, ("from_s", "to_s"))
    return EXIT_OK
