"""SLA policies as data: time limits per jurisdiction, source, category and urgency.

A policy file is a list of rules, most specific first; the first rule whose ``match`` fits a ticket
gives the limits it sets, and ``defaults`` fill the rest. Every rule cites where its limits come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from services.domain.clock import WorkCalendar


@dataclass(frozen=True)
class Limit:
    """A time limit in working days (Chinese calendar), calendar days or natural hours."""

    amount: float
    unit: str  # "working_days" | "days" | "hours"
    # the fixed duration of a calendar-day or hour limit, built once (None for working days)
    _span: timedelta | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.unit != "working_days":
            span = timedelta(days=self.amount) if self.unit == "days" else timedelta(hours=self.amount)
            object.__setattr__(self, "_span", span)

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> Limit:
        if len(spec) != 1:
            raise ValueError(f"a limit has exactly one of working_days, days, hours: {spec!r}")
        ((unit, amount),) = spec.items()
        if unit not in ("working_days", "days", "hours"):
            raise ValueError(f"unknown limit unit {unit!r}")
        if float(amount) < 0:
            raise ValueError(f"negative limit {spec!r}")
        return cls(float(amount), unit)

    def after(self, start: datetime, calendar: WorkCalendar) -> datetime:
        if self._span is None:
            return calendar.add_working_days(start, self.amount)
        return start + self._span

    def reach(self, start: datetime, calendar: WorkCalendar) -> tuple[datetime, frozenset[int]]:
        """``after`` without recording guessed calendar years: the instant, and the years whose working days
        had to be guessed (see ``WorkCalendar.reach``)."""
        if self._span is None:
            return calendar.reach(start, self.amount)
        return start + self._span, frozenset()

    def describe(self) -> str:
        names = {"working_days": "working days", "days": "days", "hours": "hours"}
        return f"{self.amount:g} {names[self.unit]}"


@dataclass(frozen=True)
class DeskClock:
    """One of the dispatch desk's own clocks: its time ``limit``, the delays after that deadline for level 1 (the
    desk), 2 and 3, and the source of both."""

    limit: Limit
    levels: tuple[Limit, ...]
    citation: str

    @classmethod
    def parse(cls, spec: dict[str, Any], default_levels: list[dict[str, Any]] | None = None) -> DeskClock:
        """``default_levels``: used when the block gives none (without it, ``levels`` is required)."""
        levels = spec["levels"] if default_levels is None else spec.get("levels", default_levels)
        return cls(Limit.parse(spec["limit"]), tuple(Limit.parse(x) for x in levels), str(spec["citation"]))


@dataclass(frozen=True)
class Policy:
    name: str
    ack: Limit
    resolve: Limit
    rehandle: Limit
    warnings: tuple[float, ...]
    ack_levels: tuple[Limit, ...]  # delay after the ack breach for level 1, 2, 3
    resolve_levels: tuple[Limit, ...]
    citation: str
    # the dispatch desk's time to rule on a ticket in triage (dispatch it or close it)
    triage: DeskClock
    # a citizen reporting the same matter again after the ticket was closed: tell the dispatch desk (level 1, at
    # the report's time), which decides what to do
    repeat_after_close: bool
    repeat_after_close_citation: str
    # the dispatch desk's time to review a unit's extension request (延期审核), capped by the deadline the unit asks
    # to move
    extension_review: DeskClock

    def resolve_limit(self, cycle_kind: str) -> Limit:
        """The time to resolve a cycle: ``resolve`` after a dispatch, ``rehandle`` after a reopening (重办)."""
        return self.resolve if cycle_kind == "dispatch" else self.rehandle


@dataclass(frozen=True)
class _Rule:
    name: str
    match: dict[str, frozenset[str]]
    settings: dict[str, Any]
    citation: str

    def fits(self, facts: dict[str, str]) -> bool:
        return all(facts.get(key) in allowed for key, allowed in self.match.items())


@dataclass(frozen=True)
class PolicyBook:
    defaults: dict[str, Any]
    rules: tuple[_Rule, ...] = field(default_factory=tuple)
    version: str = ""

    @classmethod
    def load(cls, path: Path) -> PolicyBook:
        import hashlib

        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
        rules = []
        for item in raw.get("rules") or []:
            match = {k: frozenset([v] if isinstance(v, str) else v) for k, v in (item.get("match") or {}).items()}
            settings = {k: v for k, v in item.items() if k not in ("name", "match", "citation")}
            rules.append(_Rule(item["name"], match, settings, item["citation"]))
        book = cls(raw["defaults"], tuple(rules), hashlib.sha256(text.encode()).hexdigest()[:12])
        book.policies()  # the defaults and every rule built once, so a bad limit fails at load, not on a ticket
        return book

    def policies(self) -> list[Policy]:
        """The defaults' policy and every rule's, as ``for_ticket`` builds them."""
        return [self._build("defaults", self.defaults, str(self.defaults.get("citation", ""))),
                *(self._build(rule.name, {**self.defaults, **rule.settings}, rule.citation) for rule in self.rules)]

    def for_ticket(self, *, jurisdiction: str, source: str, category: str, urgency: str) -> Policy:
        facts = {"jurisdiction": jurisdiction, "source": source, "category": category, "urgency": urgency}
        for rule in self.rules:
            if rule.fits(facts):
                return self._build(rule.name, {**self.defaults, **rule.settings}, rule.citation)
        return self._build("defaults", self.defaults, str(self.defaults.get("citation", "")))

    @staticmethod
    def _build(name: str, spec: dict[str, Any], citation: str) -> Policy:
        levels = spec.get("levels") or {}
        return Policy(
            name=name,
            ack=Limit.parse(spec["ack"]),
            resolve=Limit.parse(spec["resolve"]),
            rehandle=Limit.parse(spec["rehandle"]),
            warnings=tuple(float(x) for x in spec.get("warnings", (0.5, 0.75))),
            ack_levels=tuple(Limit.parse(x) for x in levels.get("ack_overdue", [{"hours": 0}])),
            resolve_levels=tuple(Limit.parse(x) for x in levels.get("resolve_overdue", [{"hours": 0}])),
            citation=citation,
            triage=DeskClock.parse(spec["triage"], default_levels=[{"hours": 0}]),
            repeat_after_close=bool(spec["repeat_after_close"]["escalate"]),
            repeat_after_close_citation=str(spec["repeat_after_close"]["citation"]),
            extension_review=DeskClock.parse(spec["extension_review"]),
        )
