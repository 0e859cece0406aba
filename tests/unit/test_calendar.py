from __future__ import annotations

from datetime import date, datetime

import pytest

from lienthong.calendar import (
    VN_TZ,
    add_working_days,
    due_date,
    extend_for_pause,
    is_working_day,
    start_day,
    working_days_between,
)


def at(y, m, d, hh=9, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=VN_TZ)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2025, 12, 1), True),  # Monday
        (date(2025, 12, 6), False),  # Saturday
        (date(2026, 2, 17), False),  # Tết 2026 (Lunar New Year)
        (date(2025, 4, 26), True),  # make-up working Saturday (for the 2 May 2025 day off)
        (date(2025, 5, 2), False),  # the substituted day off
        (date(2025, 9, 2), False),  # National Day
    ],
)
def test_working_days(day, working):
    assert is_working_day(day) is working


def test_due_date_across_tet():
    # Friday 13 Feb 2026, 09:00; Tết closes 16-20 Feb: 3 working days -> Mon 23, Tue 24, Wed 25.
    assert due_date(at(2026, 2, 13), 3) == date(2026, 2, 25)


def test_make_up_saturday_counts():
    # Friday 25 Apr 2025 after 17:00 -> counts from Saturday 26 Apr (make-up day); +1 working day -> Mon 28 Apr.
    assert start_day(at(2025, 4, 25, 17, 30)) == date(2025, 4, 26)
    assert due_date(at(2025, 4, 25, 17, 30), 1) == date(2025, 4, 28)


def test_after_hours_and_weekend_count_from_next_working_day():
    assert start_day(at(2025, 12, 1, 16, 59)) == date(2025, 12, 1)
    assert start_day(at(2025, 12, 1, 17, 0)) == date(2025, 12, 2)
    assert start_day(at(2025, 12, 6, 10, 0)) == date(2025, 12, 8)


def test_zero_days_is_the_start_day():
    assert add_working_days(date(2025, 12, 1), 0) == date(2025, 12, 1)


def test_pause_moves_due_date_by_paused_working_days():
    # paused Fri 5 Dec 2025, resumed Tue 9 Dec: Mon 8 and Tue 9 consumed -> 2 working days.
    assert working_days_between(date(2025, 12, 5), date(2025, 12, 9)) == 2
    new_due, paused = extend_for_pause(date(2025, 12, 10), date(2025, 12, 5), date(2025, 12, 9))
    assert (new_due, paused) == (date(2025, 12, 12), 2)


def test_negative_days_rejected():
    with pytest.raises(ValueError):
        add_working_days(date(2025, 12, 1), -1)
