"""The Vietnamese working-day calendar: weekends, public holidays (Tết included) and make-up working Saturdays.

Holidays and make-up days come from the `holidays` library (country VN), not from a table of ours.
Conventions (Decree 61/2018 practice): a dossier received after 17:00, or on a non-working day, counts from the
next working day; the due date is N working days after that start day.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
END_OF_WORKING_DAY = time(17, 0)


@cache
def _vn_holidays() -> holidays.HolidayBase:
    return holidays.country_holidays("VN")


def is_working_day(day: date) -> bool:
    return _vn_holidays().is_working_day(day)


def next_working_day(day: date) -> date:
    day += timedelta(days=1)
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def start_day(received_at: datetime) -> date:
    """The working day from which the statutory time counts."""
    local = received_at.astimezone(VN_TZ)
    day = local.date()
    if is_working_day(day) and local.time() < END_OF_WORKING_DAY:
        return day
    return next_working_day(day)


def add_working_days(day: date, n: int) -> date:
    """The date n working days after `day` (n=0 returns `day`)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    for _ in range(n):
        day = next_working_day(day)
    return day


def due_date(received_at: datetime, working_days: int) -> date:
    return add_working_days(start_day(received_at), working_days)


def working_days_between(start: date, end: date) -> int:
    """Working days d with start < d <= end: how many working days a pause from `start` to `end` consumed."""
    if end <= start:
        return 0
    return sum(1 for i in range(1, (end - start).days + 1) if is_working_day(start + timedelta(days=i)))


def extend_for_pause(due: date, paused_from: date, resumed_on: date) -> tuple[date, int]:
    """Move a due date by the working days a pause lasted; returns (new due date, paused working days)."""
    paused = working_days_between(paused_from, resumed_on)
    return add_working_days(due, paused), paused


def today_vn(now: datetime | None = None) -> date:
    return (now or datetime.now(VN_TZ)).astimezone(VN_TZ).date()
