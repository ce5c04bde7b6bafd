"""UTC calendar arithmetic on Unix seconds, in integers only.

Both engines need the year of an event (tiers, §4) and the first instant of a
month (expiry, §5). Howard Hinnant's civil-date algorithms do both without
datetime or floats; the Cython engine has the same functions in C.
"""

SECONDS_PER_DAY = 86_400


def days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def civil_from_days(days):
    """(year, month, day) of a day number since 1970-01-01."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + (3 if month_index < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def year_of(time_s):
    return civil_from_days(time_s // SECONDS_PER_DAY)[0]


def month_of(time_s):
    """The UTC calendar month (1 .. 12) of an instant."""
    return civil_from_days(time_s // SECONDS_PER_DAY)[1]


def day_of(time_s):
    """Day number (since 1970-01-01) of an instant; the key of day counters."""
    return time_s // SECONDS_PER_DAY


def expiry_instant(time_s, expiry_months):
    """First instant of calendar month month(t) + E + 1 (§5, §15)."""
    year, month, _ = civil_from_days(time_s // SECONDS_PER_DAY)
    month_count = year * 12 + (month - 1) + expiry_months + 1
    return days_from_civil(month_count // 12, month_count % 12 + 1, 1) * SECONDS_PER_DAY


def year_start(year):
    return days_from_civil(year, 1, 1) * SECONDS_PER_DAY


def format_utc(time_s):
    days, seconds = divmod(time_s, SECONDS_PER_DAY)
    year, month, day = civil_from_days(days)
    hour, rest = divmod(seconds, 3600)
    minute, second = divmod(rest, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"


def parse_utc(text):
    """Parse YYYY-MM-DDTHH:MM:SSZ (or +00:00), no fractions; None if malformed."""
    if text.endswith("Z"):
        body = text[:-1]
    elif text.endswith("+00:00"):
        body = text[:-6]
    else:
        return None
    if len(body) != 19 or body[4] != "-" or body[7] != "-" or body[10] != "T":
        return None
    if body[13] != ":" or body[16] != ":":
        return None
    parts = (body[0:4], body[5:7], body[8:10], body[11:13], body[14:16], body[17:19])
    if not all(part.isascii() and part.isdigit() for part in parts):
        return None
    year, month, day, hour, minute, second = (int(part) for part in parts)
    if not (1 <= month <= 12 and 0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 59):
        return None
    if day < 1 or day > _days_in_month(year, month):
        return None
    return days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second


def _days_in_month(year, month):
    next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
    return days_from_civil(next_year, next_month, 1) - days_from_civil(year, month, 1)


def issue_month_of_day(days):
    """The issue month (§19) of a day number: year * 12 + month - 1."""
    year, month, _ = civil_from_days(days)
    return year * 12 + month - 1


def issue_month_of(time_s):
    return issue_month_of_day(time_s // SECONDS_PER_DAY)


def month_start(issue_month):
    """The first instant of an issue month."""
    return days_from_civil(issue_month // 12, issue_month % 12 + 1, 1) * SECONDS_PER_DAY
