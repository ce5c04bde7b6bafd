"""balance, history, refund, redeem, adjust, expire: one member or one operation."""

import time

from ..errors import NotFound
from .common import EXIT_OK, open_existing_for_writing
from .engagement import print_balance
from .output import emit, format_time, print_json
from .shard_commands import open_reader


BALANCE_TIMES = ("as_of_s", "next_expiry_s", "next_release_s")
# What balance(as_of) computes at as_of (§15); the rest is the member's record as it is now.
BALANCE_AS_OF = ("available", "next_expiry_s", "next_expiry_points", "tier", "tier_year", "spend_minor",
                 "milestones", "pending", "next_release_s", "next_release_points")


def cmd_balance(arguments):
    with open_reader(arguments) as ledger:
        balance = ledger.balance(arguments.member_id, arguments.as_of)
    print_balance(arguments, balance, BALANCE_AS_OF, BALANCE_TIMES)
    return EXIT_OK


def cmd_history(arguments):
    with open_reader(arguments) as ledger:
        page = ledger.history(arguments.member_id, arguments.limit, arguments.before_seq)
    if arguments.json:
        print_json({"entries": [vars(entry) for entry in page.entries], "next_before_seq": page.next_before_seq})
        return EXIT_OK
    print_entries(page.entries)
    if page.next_before_seq is not None:
        print(f"(more: --before-seq {page.next_before_seq})")
    return EXIT_OK


def print_entries(entries):
    print(f"{'seq':>10}  {'time (UTC)':<20}  {'kind':<8}  {'points':>14}  {'balance':>14}  {'version':>7}  ref")
    for entry in entries:
        print(f"{entry.seq:>10}  {format_time(entry.time_s):<20}  {entry.kind:<8}  {entry.points:>14,}  "
              f"{entry.balance:>14,}  {entry.program_version:>7}  {entry.ref_id}")


def write_result(arguments, result):
    emit(arguments, {"status": result.status, "seq": result.seq, "points": result.points,
                     "balance": result.balance})
    return EXIT_OK


def cmd_refund(arguments):
    with open_existing_for_writing(arguments) as ledger:
        time_s = time_or_recorded(arguments.time, ledger.get_refund, arguments.refund_id)
        result = ledger.refund(arguments.refund_id, arguments.order_id, arguments.amount_minor, time_s)
    return write_result(arguments, result)


def cmd_redeem(arguments):
    with open_existing_for_writing(arguments) as ledger:
        time_s = time_or_recorded(arguments.time, ledger.get_redemption, arguments.redemption_id)
        result = ledger.redeem(arguments.redemption_id, arguments.member_id, arguments.points, time_s)
    return write_result(arguments, result)


def cmd_adjust(arguments):
    with open_existing_for_writing(arguments) as ledger:
        time_s = time_or_recorded(arguments.time, ledger.get_adjustment, arguments.adjustment_id)
        result = ledger.adjust(arguments.adjustment_id, arguments.member_id, arguments.points,
                               arguments.reason, time_s)
    return write_result(arguments, result)


def time_or_recorded(time_s, recorded, operation_id):
    """--time, else the recorded time of an id already used, else now.

    Without --time a retried command must not become a new operation because
    the clock moved: with the recorded time the ledger answers DUPLICATE with
    the original result when the other fields match, and ALREADY_EXISTS naming
    the fields that differ when they do not (issue 9).
    """
    if time_s is not None:
        return time_s
    try:
        return recorded(operation_id).time_s
    except NotFound:
        return int(time.time())


def cmd_expire(arguments):
    with open_existing_for_writing(arguments) as ledger:
        result = ledger.expire(arguments.as_of)
    emit(arguments, vars(result), ("as_of_s",))
    return EXIT_OK
