"""referral register|show, profile set|show, and balance with milestone progress (§14, §17)."""

import dataclasses
import sys
import time

from .common import EXIT_OK, open_existing, open_existing_for_writing, Usage
from .output import ALL_TIME_LABEL, emit, format_time, print_fields, print_json, split_fields

BAR_WIDTH = 20


def print_balance(arguments, balance, as_of_names, times):
    """The balance as the CLI prints it (fields as of as_of, then all-time totals), with
    the rules' figures when they are in use and a progress bar per milestone."""
    fields = dataclasses.asdict(balance)
    header, as_of, all_time = split_fields(fields, as_of_names, ("member_id", "as_of_s"))
    if arguments.json:
        print_json(dict(header, as_of=as_of, all_time=all_time))
        return
    # A ledger without the rules prints exactly what it printed before them.
    as_of.pop("milestones")
    if not balance.pending:
        for name in ("pending", "next_release_s", "next_release_points"):
            as_of.pop(name)
    if not balance.bonus:
        all_time.pop("bonus")
    width = max(len(name) for name in (*as_of, *all_time))
    print_fields(header, times, width=width + 2)
    print(f"as of {format_time(balance.as_of_s)}:")
    print_fields(as_of, times, indent="  ", width=width)
    if balance.milestones:
        print("  milestones:")
        print_milestones(balance.milestones, sys.stdout.isatty())
    print(f"{ALL_TIME_LABEL}:")
    print_fields(all_time, times, indent="  ", width=width)


def print_milestones(milestones, terminal):
    """One progress bar per milestone: blocks on a terminal, # and - elsewhere."""
    full, empty = ("█", "░") if terminal and _can_encode("█░") else ("#", "-")
    width = max(len(each.milestone_id) for each in milestones)
    for each in milestones:
        done = BAR_WIDTH if each.reached else min(BAR_WIDTH, each.progress * BAR_WIDTH // each.target)
        unit = "purchases" if each.kind == "purchases" else "spent (minor units)"
        print(f"    {each.milestone_id:<{width}}  [{full * done}{empty * (BAR_WIDTH - done)}]  "
              f"{each.progress:,}/{each.target:,} {unit}" + ("  reached" if each.reached else ""))


def _can_encode(text):
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def cmd_referral_register(arguments):
    if arguments.referee_id == arguments.referrer_id:
        # The ledger's own rule, found before the ledger is touched (exit status 2).
        raise Usage(f"referee_id: a member cannot refer itself (got {arguments.referee_id!r})")
    with open_existing_for_writing(arguments) as ledger:
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
    if arguments.clear and arguments.birthday is not None:
        raise Usage(f"profile set takes a birthday or --clear, not both (got {arguments.birthday!r} and --clear)")
    birthday = None if arguments.clear else arguments.birthday
    if birthday is None and not arguments.clear:
        raise Usage("profile set needs a birthday (MM-DD) or --clear")
    with open_existing_for_writing(arguments) as ledger:
        profile = ledger.set_member_profile(arguments.member_id, birthday)
    emit(arguments, vars(profile))
    return EXIT_OK


def cmd_profile_show(arguments):
    with open_existing(arguments) as ledger:
        profile = ledger.get_member_profile(arguments.member_id)
    emit(arguments, vars(profile))
    return EXIT_OK
