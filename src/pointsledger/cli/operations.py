"""balance, history, refund, redeem, adjust, expire: one member or one operation."""

import time

from .common import EXIT_OK, open_existing, open_ledger
from .output import emit, format_time, print_json


BALANCE_TIMES = ("as_of_s", "next_expiry_s")


def cmd_balance(arguments):
    with open_existing(arguments) as ledger:
        balance = ledger.balance(arguments.member_id, arguments.as_of)
    emit(arguments, vars(balance), BALANCE_TIMES)
    return EXIT_OK


def cmd_history(arguments):
    with open_existing(arguments) as ledger:
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
    with open_ledger(arguments) as ledger:
        result = ledger.refund(arguments.refund_id, arguments.order_id, arguments.amount_minor,
                               now_or(arguments.time))
    return write_result(arguments, result)


def cmd_redeem(arguments):
    with open_ledger(arguments) as ledger:
        result = ledger.redeem(arguments.redemption_id, arguments.member_id, arguments.points,
                               now_or(arguments.time))
    return write_result(arguments, result)


def cmd_adjust(arguments):
    with open_ledger(arguments) as ledger:
        result = ledger.adjust(arguments.adjustment_id, arguments.member_id, arguments.points,
                               arguments.reason, now_or(arguments.time))
    return write_result(arguments, result)


def now_or(time_s):
    return int(time.time()) if time_s is None else time_s


def cmd_expire(arguments):
    with open_ledger(arguments) as ledger:
        result = ledger.expire(arguments.as_of)
    emit(arguments, vars(result), ("as_of_s",))
    return EXIT_OK
