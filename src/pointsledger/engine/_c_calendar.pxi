# Part of _engine_c.pyx (included there): the calendar: calendar.py in C.
# It shares the module's cimports, constants and C helpers, declared in _engine_c.pyx.

# --- calendar (calendar.py in C) ---------------------------------------------------
# cdivision=True makes `//` and `%` truncate; these floor like Python's.

cdef inline int64_t _floor_div(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a / b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t _floor_mod(int64_t a, int64_t b) noexcept nogil:
    return a - _floor_div(a, b) * b


cdef inline int64_t _days_from_civil(int64_t year, int64_t month, int64_t day) noexcept nogil:
    if month <= 2:
        year -= 1
    cdef int64_t era = _floor_div(year, 400)
    cdef int64_t year_of_era = year - era * 400
    cdef int64_t day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) / 5 + day - 1
    cdef int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year
    return era * 146097 + day_of_era - 719468


cdef inline void _civil_from_days(int64_t days, int64_t* year, int64_t* month, int64_t* day) noexcept nogil:
    days += 719468
    cdef int64_t era = _floor_div(days, 146097)
    cdef int64_t day_of_era = days - era * 146097
    cdef int64_t year_of_era = (
        day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096
    ) / 365
    cdef int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100)
    cdef int64_t month_index = (5 * day_of_year + 2) / 153
    day[0] = day_of_year - (153 * month_index + 2) / 5 + 1
    month[0] = month_index + (3 if month_index < 10 else -9)
    year[0] = year_of_era + era * 400 + (1 if month[0] <= 2 else 0)


cdef inline int64_t _year_of_day(int64_t days) noexcept nogil:
    cdef int64_t year, month, day
    _civil_from_days(days, &year, &month, &day)
    return year


cdef inline int64_t _expiry_instant_of_day(int64_t days, int64_t expiry_months) noexcept nogil:
    cdef int64_t year, month, day
    _civil_from_days(days, &year, &month, &day)
    cdef int64_t month_count = year * 12 + (month - 1) + expiry_months + 1
    return _days_from_civil(_floor_div(month_count, 12), _floor_mod(month_count, 12) + 1, 1) * SECONDS_PER_DAY


def _year_of(int64_t time_s):
    """calendar.year_of in C (for tests)."""
    return _year_of_day(_floor_div(time_s, SECONDS_PER_DAY))


def _expiry_instant(int64_t time_s, int64_t expiry_months):
    """calendar.expiry_instant in C (for tests)."""
    return _expiry_instant_of_day(_floor_div(time_s, SECONDS_PER_DAY), expiry_months)
