"""report revenue (§19) and estimate set | list."""

from .common import EXIT_OK, Usage, open_existing, open_existing_for_writing
from .output import emit, format_time, print_json

# The text table's columns: (heading, CohortRevenue attribute, money).
COLUMNS = (
    ("cohort", "cohort", False), ("rate", "rate", False), ("amount", "amount_minor", True),
    ("points", "points", False), ("allocated", "allocated_minor", True), ("redeemed", "redeemed", False),
    ("expired", "expired", False), ("revenue", "revenue_minor", True),
    ("liability from", "liability_from_minor", True), ("liability to", "liability_to_minor", True),
)
MONEY = tuple(attribute for _, attribute, money in COLUMNS if money)


def cmd_estimate_set(arguments):
    with open_existing_for_writing(arguments) as ledger:
        estimate = ledger.set_redemption_estimate(arguments.estimate_id, arguments.effective_from, arguments.rate)
    emit(arguments, estimate_fields(estimate), ("effective_from_s",))
    return EXIT_OK


def cmd_estimate_list(arguments):
    with open_existing(arguments) as ledger:
        estimates = ledger.redemption_estimates()
    if arguments.json:
        print_json([estimate_fields(each) for each in estimates])
        return EXIT_OK
    if not estimates:
        print("no redemption estimate is set (`pointsledger estimate set` sets one)")
    for estimate in estimates:
        print(f"{estimate.estimate_id}  rate {estimate.rate}  from {format_time(estimate.effective_from_s)}")
    return EXIT_OK


def estimate_fields(estimate):
    return {"status": estimate.status, "estimate_id": estimate.estimate_id,
            "effective_from_s": estimate.effective_from_s, "rate": str(estimate.rate)}


def report_revenue(arguments):
    if arguments.from_time is None or arguments.to_time is None:
        raise Usage("report revenue needs --from and --to")
    if arguments.to_time <= arguments.from_time:
        raise Usage("--to must be a later date than --from: the period is the days from --from up to, "
                    "not including, --to")
    with open_existing(arguments) as ledger:
        report = ledger.revenue(arguments.from_time, arguments.to_time, arguments.cohort or "year")
    if arguments.json:
        print_json(revenue_json(report))
        return EXIT_OK
    unit = 10 ** report.exponent
    print(f"Revenue and contract liability (IFRS 15 / ASC 606), {report.currency}, cohorts by "
          f"{report.cohort}, {format_time(report.from_s)[:10]} up to {format_time(report.to_s)[:10]}")
    print(f"estimate in force at --from {report.total.estimate_from}, at --to {report.total.estimate_to}; "
          f"observed rate {report.observed_decimal if report.observed is not None else '-'}"
          + (f" ({report.observed})" if report.observed is not None else ""))
    rows = [[_cell(row, attribute, money, unit, report.exponent) for _, attribute, money in COLUMNS]
            for row in report.cohorts + [report.total]]
    headings = [heading for heading, _, _ in COLUMNS]
    widths = [max(len(heading), *(len(row[index]) for row in rows)) for index, heading in enumerate(headings)]
    print("  ".join(heading.rjust(width) for heading, width in zip(headings, widths)))
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
    return EXIT_OK


def _cell(row, attribute, money, unit, exponent):
    value = getattr(row, attribute)
    if value is None:
        return ""
    if money:
        return _money(value, unit, exponent)
    return f"{value:,}" if isinstance(value, int) else str(value)


def _money(minor, unit, exponent):
    sign = "-" if minor < 0 else ""
    whole, part = divmod(abs(minor), unit)
    return f"{sign}{whole:,}" + (f".{part:0{exponent}d}" if exponent else "")


def revenue_json(report):
    """Every figure: minor units (integers) and the same as a decimal in currency units (<name>_value)."""
    unit = 10 ** report.exponent

    def row_json(row):
        fields = {
            "cohort": row.cohort, "start_s": row.start_s, "amount_minor": row.amount_minor, "points": row.points,
            "rate": None if row.rate is None else str(row.rate), "allocated_minor": row.allocated_minor,
            "redeemed": row.redeemed, "expired": row.expired, "estimate_from": str(row.estimate_from),
            "estimate_to": str(row.estimate_to), "revenue_minor": row.revenue_minor,
            "liability_from_minor": row.liability_from_minor, "liability_to_minor": row.liability_to_minor,
        }
        for name in MONEY:
            fields[name.replace("_minor", "_value")] = _money(getattr(row, name), unit, report.exponent).replace(",", "")
        return fields

    return {
        "from_s": report.from_s, "to_s": report.to_s, "cohort": report.cohort, "currency": report.currency,
        "exponent": report.exponent, "cohorts": [row_json(row) for row in report.cohorts],
        "total": row_json(report.total),
        "observed": None if report.observed is None else {
            "redeemed": report.observed_redeemed, "points": report.observed_points,
            "decimal": str(report.observed_decimal)},
    }
