from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from services.domain.clock import WorkCalendar, load_overrides, statutory_holidays
from tests.conftest import cst


def test_statutory_holiday_and_make_up_day() -> None:
    cal = WorkCalendar()
    assert not cal.is_workday(date(2025, 10, 1))  # National Day
    assert cal.is_workday(date(2025, 9, 28))  # a Sunday made a working day (调休)
    # One working day after 30 Sept 10:00 skips the whole National Day break (1–8 Oct).
    assert cal.add_working_days(cst("2025-09-30 10:00"), 1) == cst("2025-10-09 10:00")


def test_working_days_skip_weekends_and_keep_time_of_day() -> None:
    cal = WorkCalendar()
    assert cal.add_working_days(cst("2025-06-06 15:00"), 1) == cst("2025-06-09 15:00")  # Fri -> Mon
    assert cal.add_working_days(cst("2025-06-09 09:00"), 5) == cst("2025-06-16 09:00")
    # Starting on a Saturday: time starts counting on Monday 00:00.
    assert cal.add_working_days(cst("2025-06-07 11:00"), 0.5) == cst("2025-06-09 12:00")


def test_working_days_between_is_the_inverse() -> None:
    cal = WorkCalendar()
    start = cst("2025-09-26 16:00")
    end = cal.add_working_days(start, 3.25)
    assert abs(cal.working_days_between(start, end) - 3.25) < 1e-9
    assert cal.working_days_between(end, start) < 0


def test_unknown_year_falls_back_to_weekends_and_statutory_holidays_and_says_so() -> None:
    cal = WorkCalendar()  # no holiday data for 2031
    assert not cal.is_workday(date(2031, 1, 1))  # a Wednesday: 元旦
    assert cal.is_workday(date(2031, 1, 2))
    assert not cal.is_workday(date(2031, 1, 4))  # Saturday
    assert cal.fallback_years == {2031}


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_statutory_holidays_are_days_off_in_the_published_schedules(year: int) -> None:
    """The years of the revised law that chinese-calendar knows: every day ``statutory_holidays`` derives (lunar
    dates, 清明, the weekday in lieu of one on a weekend) is a holiday in the State Council's schedule."""
    import chinese_calendar

    derived = statutory_holidays(year)
    assert len(derived) >= 11  # 1 + 4 + 1 + 2 + 1 + 1 + 3, and the days in lieu
    assert [d for d in sorted(derived) if chinese_calendar.is_workday(d)] == []


def test_a_year_beyond_the_lunar_tables_falls_back_to_weekends() -> None:
    cal = WorkCalendar()
    assert cal.is_workday(date(2100, 1, 1)) and not cal.is_workday(date(2100, 1, 2))  # a Friday, a Saturday
    assert cal.add_working_days(cst("2099-12-31 10:00"), 1) == cst("2100-01-01 10:00")


def test_the_fallback_year_2027_keeps_its_fixed_and_lunar_holidays() -> None:
    """2027 is known to neither source yet: 春节 is 6 Feb (除夕 Friday 5 Feb; 初一 and 初二 fall on the weekend, so
    Tuesday 9 and Wednesday 10 Feb are off in their place); 元旦 is Friday 1 Jan."""
    days = statutory_holidays(2027)
    assert {date(2027, 2, d) for d in range(5, 11)} <= days and date(2027, 2, 11) not in days
    assert date(2027, 1, 1) in days and date(2027, 9, 15) in days  # 中秋, 八月十五
    cal = WorkCalendar()
    assert cal.add_working_days(cst("2026-12-31 23:00"), 1) == cst("2027-01-04 23:00")
    assert cal.fallback_years == {2027}


def test_override_file_supplies_a_later_year(tmp_path: Path) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text("years:\n  2031:\n    source: test\n    holidays: ['2031-01-01']\n"
                    "    workdays: ['2031-01-04']\n", encoding="utf-8")
    cal = WorkCalendar(load_overrides(path))
    assert not cal.is_workday(date(2031, 1, 1))
    assert cal.is_workday(date(2031, 1, 4))
    assert cal.is_workday(date(2031, 1, 6))
    assert cal.fallback_years == set()


def test_shipped_override_file_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "services" / "sla" / "calendar_overrides.yaml"
    assert isinstance(load_overrides(path), dict)


def test_working_days_answer_in_the_time_zone_of_the_start() -> None:
    """Answers are cached by instant; the same instant in another zone still gets its answer in that zone."""
    from datetime import UTC

    cal = WorkCalendar()
    local = cal.add_working_days(cst("2025-06-06 15:00"), 1)
    utc = cal.add_working_days(cst("2025-06-06 15:00").astimezone(UTC), 1)
    assert local == utc == cst("2025-06-09 15:00")
    assert local.isoformat() == "2025-06-09T15:00:00+08:00" and utc.isoformat() == "2025-06-09T07:00:00+00:00"


def test_guessed_years_are_recorded_by_add_working_days_not_by_reach() -> None:
    cal = WorkCalendar()
    start = cst("2026-12-25 09:00")  # five working days later is Monday 4 Jan 2027 (a year with no holiday data)
    assert cal.reach(start, 5) == (cst("2027-01-04 09:00"), frozenset({2027}))
    assert cal.fallback_years == set()
    for _ in range(2):  # walked, then answered from the cache: recorded both times
        cal.fallback_years.clear()
        assert cal.add_working_days(start, 5) == cst("2027-01-04 09:00")
        assert cal.fallback_years == {2027}
    assert cal.reach(cst("2026-06-01 09:00"), 5) == (cst("2026-06-08 09:00"), frozenset())
