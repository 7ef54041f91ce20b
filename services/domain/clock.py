"""Working-day arithmetic on the Chinese calendar (statutory holidays and 调休 make-up days).

``chinese_calendar`` knows 2004–2026. Later years come from an override file (the State Council
publishes each schedule late in the year before). A year known to neither falls back to Monday to Friday
without the statutory holidays (``statutory_holidays``) and is recorded in ``WorkCalendar.fallback_years`` so
the adapter can log it and expose it as a metric: the schedule's bridge days and 调休 make-up working days cannot
be derived, only the holidays the law fixes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml
from lunardate import LunarDate

CHINA_TZ = ZoneInfo("Asia/Shanghai")
DAY = timedelta(days=1)
_REACHED_MAX = 1 << 17


@dataclass(frozen=True)
class YearOverride:
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str


def load_overrides(path: Path) -> dict[int, YearOverride]:
    """Read ``{year: {holidays: [...], workdays: [...], source: ...}}`` from YAML."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    years: dict[int, YearOverride] = {}
    for year, spec in (raw.get("years") or {}).items():
        spec = spec or {}
        years[int(year)] = YearOverride(
            holidays=frozenset(_dates(spec.get("holidays"))),
            workdays=frozenset(_dates(spec.get("workdays"))),
            source=str(spec.get("source", "")),
        )
    return years


@lru_cache(maxsize=64)
def statutory_holidays(year: int) -> frozenset[date]:
    """The days off every citizen has in ``year`` under 《全国年节及纪念日放假办法》 as revised in 2024 (in force from
    2025): 元旦 1 January; 春节 除夕 and 正月初一 to 初三; 清明 (the solar term's day); 劳动节 1–2 May; 端午 (五月初五);
    中秋 (八月十五); 国庆 1–3 October; and, for each of these that falls on a Saturday or Sunday, the next working
    day off in its place (补假). The State Council's yearly schedule always contains these days and adds bridge days
    and 调休 make-up working days, which only it decides."""
    new_year = LunarDate(year, 1, 1).to_solar_date()
    days = {date(year, 1, 1), *(new_year + timedelta(days=i) for i in range(-1, 3)),
            date(year, 5, 1), date(year, 5, 2), date(year, 10, 1), date(year, 10, 2), date(year, 10, 3),
            LunarDate(year, 5, 5).to_solar_date(), LunarDate(year, 8, 15).to_solar_date()}
    days |= {d for d, name in chinese_calendar.get_solar_terms(date(year, 4, 1), date(year, 4, 10)) if name == "清明"}
    in_lieu: set[date] = set()
    for day in sorted(d for d in days if d.weekday() >= 5):
        substitute = day
        while substitute.weekday() >= 5 or substitute in days or substitute in in_lieu:
            substitute += DAY
        in_lieu.add(substitute)
    return frozenset(days | in_lieu)


def _statutory_or_none(year: int) -> frozenset[date]:
    """``statutory_holidays``, or none for a year beyond the lunar tables (lunardate knows 1900–2099)."""
    try:
        return statutory_holidays(year)
    except ValueError:
        return frozenset()


def _dates(items: list[object] | None) -> list[date]:
    out: list[date] = []
    for item in items or []:
        if isinstance(item, date):
            out.append(item)
        else:
            text = str(item)
            if ".." in text:  # a range "2027-10-01..2027-10-07"
                start, end = (date.fromisoformat(x) for x in text.split(".."))
                out.extend(start + timedelta(days=i) for i in range((end - start).days + 1))
            else:
                out.append(date.fromisoformat(text))
    return out


@dataclass
class WorkCalendar:
    """Answers "is this a working day" and adds working time to an instant.

    Working time accrues only on working days, 24 hours each: five working days after Monday 10:00
    is the next Monday 10:00 (if no holiday intervenes). Day boundaries are in China Standard Time.
    """

    overrides: dict[int, YearOverride] = field(default_factory=dict)
    fallback_years: set[int] = field(default_factory=set)
    # per day: (working day?, guessed?) where guessed means the year is known to neither source
    _days: dict[date, tuple[bool, bool]] = field(default_factory=dict, repr=False, compare=False)
    # walks by (start instant, days): the instant reached (China time) and the years whose days it guessed. The
    # same deadlines are asked for again and again (every re-planning of a ticket); bounded, cleared when full.
    _reached: dict[tuple[datetime, float], tuple[datetime, frozenset[int]]] = field(
        default_factory=dict, repr=False, compare=False)

    def is_workday(self, day: date) -> bool:
        workday, guessed = self._day(day)
        if guessed:
            self.fallback_years.add(day.year)
        return workday

    def _day(self, day: date) -> tuple[bool, bool]:
        cached = self._days.get(day)
        if cached is None:
            cached = self._days[day] = self._lookup(day)
        return cached

    def _lookup(self, day: date) -> tuple[bool, bool]:
        override = self.overrides.get(day.year)
        if override is not None:
            if day in override.holidays:
                return False, False
            if day in override.workdays:
                return True, False
            return day.weekday() < 5, False
        try:
            return bool(chinese_calendar.is_workday(day)), False
        except NotImplementedError:
            return day.weekday() < 5 and day not in _statutory_or_none(day.year), True

    def add_working_days(self, start: datetime, days: float) -> datetime:
        """The instant when ``days`` × 24 h of working-day time have elapsed after ``start``, in the time zone
        of ``start``. Years whose days had to be guessed on the way are recorded in ``fallback_years``."""
        reached, guessed = self.reach(start, days)
        if guessed:
            self.fallback_years.update(guessed)
        return reached

    def reach(self, start: datetime, days: float) -> tuple[datetime, frozenset[int]]:
        """``add_working_days`` without recording: the instant, and the years whose days it guessed (for callers
        that work out deadlines ahead and record those years only when the deadline comes to matter)."""
        key = (start, days)  # equal instants hash alike whatever their UTC offset; the answer is an instant
        found = self._reached.get(key)
        if found is None:
            if len(self._reached) >= _REACHED_MAX:
                self._reached.clear()
            found = self._reached[key] = self._walk(start, days)
        return found[0].astimezone(start.tzinfo), found[1]

    def _walk(self, start: datetime, days: float) -> tuple[datetime, frozenset[int]]:
        """The instant reached (in China time) and the years of the guessed days on the way."""
        local = start.astimezone(CHINA_TZ)
        remaining = timedelta(days=days)
        guessed: set[int] = set()
        day = local.date()
        workday, guess = self._day(day)
        if guess:
            guessed.add(day.year)
        if workday:
            available = datetime.combine(day + DAY, time(0), CHINA_TZ) - local
            if remaining <= available:
                return local + remaining, _years(guessed)
            remaining -= available
        while True:  # from the next midnight on, each working day adds a whole day
            day += DAY
            workday, guess = self._day(day)
            if guess:
                guessed.add(day.year)
            if workday:
                if remaining <= DAY:
                    return datetime.combine(day, time(0), CHINA_TZ) + remaining, _years(guessed)
                remaining -= DAY

    def working_days_between(self, start: datetime, end: datetime) -> float:
        """Working-day time between two instants, in days (negative if ``end`` precedes ``start``)."""
        days, guessed = self.span(start, end)
        self.fallback_years.update(guessed)
        return days

    def span(self, start: datetime, end: datetime) -> tuple[float, frozenset[int]]:
        """``working_days_between`` without recording guessed calendar years: the days, and the years whose
        working days had to be guessed."""
        if end < start:
            days, guessed = self.span(end, start)
            return -days, guessed
        cursor = start.astimezone(CHINA_TZ)
        stop = end.astimezone(CHINA_TZ)
        total = timedelta()
        years: set[int] = set()
        while cursor < stop:
            next_midnight = datetime.combine(cursor.date() + DAY, time(0), CHINA_TZ)
            segment_end = min(next_midnight, stop)
            workday, guessed = self._day(cursor.date())
            if guessed:
                years.add(cursor.year)
            if workday:
                total += segment_end - cursor
            cursor = segment_end
        return total / DAY, _years(years)


_NONE: frozenset[int] = frozenset()


def _years(guessed: set[int]) -> frozenset[int]:
    return frozenset(guessed) if guessed else _NONE
