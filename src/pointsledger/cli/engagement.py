"""referral register|show, profile set|show, and balance with milestone progress (§14, §17)."""

import dataclasses
import sys
import time

from .common import EXIT_OK, open_existing, open_ledger
from .output import emit, format_time, print_fields, print_json

# Shown on the terminal only when a rule of §14 is in use, as one line each, so a
# ledger without the rules prints the balance exactly as before.
ENGAGEMENT_FIELDS = ("bonus", "pending", "next_release_s", "next_release_points", "milestones")
BAR_WIDTH = 20


def print_balance(arguments, balance, times):
    """The balance's fields; on a terminal the rules' figures and a bar per milestone."""
    fields = dataclasses.asdict(balance)
    if arguments.json:
        print_json(fields)
        return
    print_fields({name: value for name, value in fields.items() if name not in ENGAGEMENT_FIELDS}, times)
    if balance.bonus:
        print(f"bonus     {balance.bonus:,}")
    if balance.pending:
        print(f"pending   {balance.pending:,} (next release {balance.next_release_points:,} at "
              f"{format_time(balance.next_release_s)})")
    if balance.milestones:
        print("milestones")
        print_milestones(balance.milestones, sys.stdout.isatty())


def print_milestones(milestones, terminal):
    """One progress bar per milestone: blocks on a terminal, # and - elsewhere."""
    full, empty = ("█", "░") if terminal and _can_encode("█░") else ("#", "-")
    width = max(len(each.milestone_id) for each in milestones)
    for each in milestones:
        done = BAR_WIDTH if each.reached else min(BAR_WIDTH, each.progress * BAR_WIDTH // each.target)
        unit = "purchases" if each.kind == "purchases" else "spent (minor units)"
        print(f"  {each.milestone_id:<{width}}  [{full * done}{empty * (BAR_WIDTH - done)}]  "
              f"{each.progress:,}/{each.target:,} {unit}" + ("  reached" if each.reached else ""))


def _can_encode(text):
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def cmd_referral_register(arguments):
    with open_ledger(arguments) as ledger:
        time_s = arguments.time
        if time_s is None:
            time_s = _recorded_referral_time(ledger, arguments.referral_id)
        referral = ledger.register_referral(arguments.referral_id, arguments.referrer_id, arguments.referee_id,
                                            time_s)
    emit(arguments, vars(referral), ("time_s",))
    return EXIT_OK


def _recorded_referral_time(ledger, referral_id):
    """A retry without --time is the same registration: its recorded time, else now."""
    from ..errors import NotFound

    try:
        return ledger.get_referral(referral_id).time_s
    except NotFound:
        return int(time.time())


def cmd_referral_show(arguments):
    with open_existing(arguments) as ledger:
        referral = ledger.get_referral(arguments.referral_id)
    fields = vars(referral).copy()
    fields.pop("status")
    emit(arguments, fields, ("time_s",))
    return EXIT_OK


def cmd_profile_set(arguments):
    birthday = None if arguments.clear else arguments.birthday
    if birthday is None and not arguments.clear:
        from .common import Usage

        raise Usage("profile set needs a birthday (MM-DD) or --clear")
    with open_ledger(arguments) as ledger:
        profile = ledger.set_member_profile(arguments.member_id, birthday)
    emit(arguments, vars(profile))
    return EXIT_OK


def cmd_profile_show(arguments):
    with open_existing(arguments) as ledger:
        profile = ledger.get_member_profile(arguments.member_id)
    emit(arguments, vars(profile))
    return EXIT_OK
