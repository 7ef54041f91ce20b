"""Campaign targets (专项行动) tracked as SLOs: rate, projection at the deadline, at-risk and missed.

A ticket enrols through its event's ``campaigns`` list. Rate = tickets resolved and not reopened ÷
tickets enrolled (for ``measure: dispatched``, tickets dispatched ÷ enrolled). Campaigns are evaluated on
a schedule (daily at midnight, China Standard Time, by default), never per event, and each evaluation
looks only at facts timestamped up to its instant, so replay and streaming agree.

An evaluation's status (``CampaignStatus``, see ``evaluate``): ``on_track``, ``at_risk`` (escalated, level 2, on
entering it), ``met``, ``missed`` (escalated, level 3) — or ``insufficient_data`` when the service has too little
evidence to judge (nothing enrolled; too few tickets, or too early, to say either way), which is never escalated.

An evaluation does not walk the tickets: it asks a ``CohortCounts`` three counting questions. Each ticket's
``CohortFacts`` (opening time and done periods) are computed when it is stored; the replay keeps them in a
``CohortIndex`` (sorted lists), the SLA worker in PostgreSQL (count queries). ``TicketCounts`` answers the same
questions by walking ticket states: the reference the others are tested against.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field

from schemas import Citation, Escalation, EscalationKind, Source
from services.domain.clock import CHINA_TZ
from services.domain.deadlines import escalation_id
from services.domain.tickets import Span, TicketState

CampaignStatus = Literal["on_track", "at_risk", "met", "missed", "insufficient_data"]
"""``insufficient_data``: the service has too little evidence to judge the campaign (see ``evaluate``); never escalated,
and it neither raises nor re-arms an at-risk alarm. A consumer that lists the statuses must list all five."""


class Campaign(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    jurisdiction: str
    measure: Literal["resolved", "dispatched"] = "resolved"
    target: float = Field(gt=0, le=1)
    planned_cohort: int | None = None
    start: datetime
    deadline: datetime
    evaluate_at: time = time(0, 0)
    warmup_days: int = 3  # no at-risk verdict until this many days after the first enrolment (or the start, if later)
    min_enrolled: int = 5  # below this many enrolled, insufficient_data before the deadline (see ``evaluate``)
    rearm_days: int = 3  # on track this many evaluations in a row before a new at-risk alarm
    velocity_window_days: int = 14
    settle_minutes: int = Field(default=0, ge=0, description=(
        "the time a ticket has to count before it is judged: the evaluation of an instant is taken this long after "
        "it, and, for measure dispatched, a ticket dispatched within this time of its opening counts as done from "
        "its opening (an alert raised a minute before the deadline and pushed within its time is no miss)"))
    selector: dict[str, list[str]] | None = None
    sources: list[Source] | None = Field(default=None, description=(
        "the sources whose tickets the plan counts (1864件12345热线工单: hotline_12345); a ticket of another source "
        "that names the campaign is not enrolled. None: every source"))
    citation: Citation


class CampaignReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign_id: str
    at: datetime
    enrolled: int
    resolved: int
    rate: float
    target: float
    deadline: datetime
    planned_cohort: int | None
    projected_rate: float
    needed_per_day: float
    status: CampaignStatus


class CampaignState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign_id: str
    last_evaluated_at: datetime | None = None
    status: CampaignStatus = "insufficient_data"  # until evaluated (a stored state always carries its status)
    on_track_streak: int = 0
    alarmed: bool = False  # an at-risk alarm stands (cleared after rearm_days on track)
    history: list[CampaignReport] = Field(default_factory=list)
    emitted: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class CampaignBook:
    campaigns: tuple[Campaign, ...]

    @classmethod
    def load(cls, path: Path) -> CampaignBook:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(tuple(Campaign.model_validate(item) for item in raw["campaigns"]))

    def get(self, campaign_id: str) -> Campaign | None:
        return next((c for c in self.campaigns if c.id == campaign_id), None)


def _settle(campaign: Campaign) -> timedelta:
    return timedelta(minutes=campaign.settle_minutes)


def judged_at(campaign: Campaign, instant: datetime) -> datetime:
    """When a scheduled instant can be judged: ``settle_minutes`` after it (``advance`` up to this evaluates it)."""
    return instant + _settle(campaign)


def evaluation_times(campaign: Campaign, after: datetime | None, upto: datetime) -> list[datetime]:
    """The scheduled instants in (after, upto], from the campaign's start to its deadline inclusive, that can be
    judged at ``upto``: those at least ``settle_minutes`` before it."""
    upto -= _settle(campaign)
    out: list[datetime] = []
    day: date = campaign.start.astimezone(CHINA_TZ).date()
    while True:
        instant = datetime.combine(day, campaign.evaluate_at, CHINA_TZ)
        if instant > campaign.deadline:
            instant = campaign.deadline
        if instant > upto:
            break
        if instant >= campaign.start and (after is None or instant > after) and instant not in out:
            out.append(instant)
        if instant >= campaign.deadline:
            break
        day += timedelta(days=1)
    return out


def next_evaluation(campaign: Campaign, after: datetime | None) -> datetime | None:
    """When the first scheduled instant after ``after`` can be judged: the instant, plus ``settle_minutes`` (None
    once the deadline has been evaluated)."""
    if after is not None and after >= campaign.deadline:
        return None
    start = campaign.start if after is None else after
    day = start.astimezone(CHINA_TZ).date()
    instant = datetime.combine(day, campaign.evaluate_at, CHINA_TZ)
    if instant < campaign.start or (after is not None and instant <= after):
        instant = datetime.combine(day + timedelta(days=1), campaign.evaluate_at, CHINA_TZ)
    return judged_at(campaign, min(instant, campaign.deadline))


def enrolled(campaign: Campaign, ticket: TicketState) -> bool:
    """Whether the ticket counts for the campaign: its event named the campaign (or the campaign's selector fits
    it), and it is a ticket of the campaign's jurisdiction (a plan's campaign counts that district's tickets) and
    of one of its sources (the plan's cohort is 12345 tickets, or petitions)."""
    if ticket.jurisdiction != campaign.jurisdiction:
        return False
    if campaign.sources is not None and ticket.source not in campaign.sources:
        return False  # a petition tagged with the hotline tickets' campaign counts in neither cohort
    if campaign.id in ticket.campaigns:
        return True
    if campaign.selector:  # optional rules, off in the shipped definitions
        facts = {"jurisdiction": ticket.jurisdiction, "source": ticket.source, "category": ticket.category or ""}
        return all(facts.get(k) in v for k, v in campaign.selector.items())
    return False


def _dispatched_from(campaign: Campaign, ticket: TicketState) -> datetime | None:
    """From when a ticket counts as dispatched: its opening when it was dispatched within ``settle_minutes`` of
    it (an instant in between is judged only after that time), else its first dispatch."""
    first = ticket.first_dispatched_at
    if first is not None and first - ticket.opened_at <= _settle(campaign):
        return ticket.opened_at
    return first


def _done(campaign: Campaign, ticket: TicketState, at: datetime) -> bool:
    if campaign.measure == "dispatched":
        since = _dispatched_from(campaign, ticket)
        return since is not None and since <= at
    return ticket.resolved_as_of(at)


# --- what an evaluation needs to know of the cohort ------------------------------------------------------------


@dataclass(frozen=True)
class CohortFacts:
    """All a campaign needs of one enrolled ticket: when it opened, and the periods in which it counts as done
    (``_done(campaign, ticket, m)`` holds exactly when ``start <= m < end`` for one of ``spans``)."""

    opened_at: datetime
    spans: tuple[Span, ...]


def cohort_facts(campaign: Campaign, ticket: TicketState) -> CohortFacts | None:
    """The ticket's facts for this campaign, None when it is not enrolled. Computed when a ticket is stored, so
    that an evaluation only counts (see ``CohortIndex`` and the SLA store's campaign tables)."""
    if not enrolled(campaign, ticket):
        return None
    if campaign.measure == "dispatched":
        since = _dispatched_from(campaign, ticket)
        spans: tuple[Span, ...] = ((since, None),) if since is not None else ()
    else:
        spans = tuple(ticket.resolved_spans())
    return CohortFacts(ticket.opened_at, spans)


class CohortCounts(Protocol):
    """The three questions ``evaluate`` asks about a campaign's enrolled tickets."""

    def enrolled(self, at: datetime) -> int:
        """Enrolled tickets opened by ``at``."""
        ...

    def first_opened(self, at: datetime) -> datetime | None:
        """The earliest opening among them (None when there is none)."""
        ...

    def done(self, at: datetime, cohort_at: datetime) -> int:
        """Enrolled tickets opened by ``cohort_at`` that count as done at ``at`` (``at <= cohort_at``)."""
        ...


@dataclass(frozen=True)
class TicketCounts:
    """The reference answers: a walk over ticket states (what ``evaluate`` did before it took counts)."""

    campaign: Campaign
    tickets: Sequence[TicketState]

    def _cohort(self, at: datetime) -> list[TicketState]:
        return [t for t in self.tickets if t.opened_at <= at and enrolled(self.campaign, t)]

    def enrolled(self, at: datetime) -> int:
        return len(self._cohort(at))

    def first_opened(self, at: datetime) -> datetime | None:
        return min((t.opened_at for t in self._cohort(at)), default=None)

    def done(self, at: datetime, cohort_at: datetime) -> int:
        return sum(_done(self.campaign, t, at) for t in self._cohort(cohort_at))


@dataclass
class CohortIndex:
    """Incremental answers for one campaign: sorted lists of openings and of the starts and ends of done periods,
    kept with ``bisect`` as tickets are stored, so each question costs O(log n).

    A done period is split at the ticket's opening: the part from the opening on is counted with the sorted
    lists (a ticket done at ``at`` with ``at <= cohort_at`` is then also opened by ``cohort_at``); a part before
    the opening (the pipelines never make one: a ticket is dispatched and handled after it opened) is kept in a
    plain list and checked one by one."""

    _facts: dict[str, CohortFacts] = field(default_factory=dict)
    _opened: list[datetime] = field(default_factory=list)
    _from: list[datetime] = field(default_factory=list)
    _until: list[datetime] = field(default_factory=list)
    _early: list[tuple[datetime, datetime, datetime]] = field(default_factory=list)  # (opened, from, until)

    @classmethod
    def of(cls, campaign: Campaign, tickets: Iterable[TicketState]) -> CohortIndex:
        index = cls()
        for ticket in tickets:
            index.replace(ticket.ticket_id, cohort_facts(campaign, ticket))
        return index

    def __len__(self) -> int:
        return len(self._facts)

    def replace(self, ticket_id: str, facts: CohortFacts | None) -> None:
        """Store a ticket's current facts (None: not enrolled), replacing what was stored for it."""
        old = self._facts.get(ticket_id)
        if old == facts:
            return
        if old is not None:
            self._apply(old, _remove)
            del self._facts[ticket_id]
        if facts is not None:
            self._apply(facts, insort)
            self._facts[ticket_id] = facts

    def _apply(self, facts: CohortFacts, op: Callable[[list[Any], Any], None]) -> None:
        opened = facts.opened_at
        op(self._opened, opened)
        for start, end in facts.spans:
            if start < opened:
                op(self._early, (opened, start, opened if end is None else min(end, opened)))
                start = opened
            if end is None or start < end:
                op(self._from, start)
                if end is not None:
                    op(self._until, end)

    def enrolled(self, at: datetime) -> int:
        return bisect_right(self._opened, at)

    def first_opened(self, at: datetime) -> datetime | None:
        return self._opened[0] if self._opened and self._opened[0] <= at else None

    def done(self, at: datetime, cohort_at: datetime) -> int:
        if at > cohort_at:
            raise ValueError("done() counts the cohort of a later instant, not of an earlier one")
        n = bisect_right(self._from, at) - bisect_right(self._until, at)
        return n + sum(1 for opened, start, end in self._early if opened <= cohort_at and start <= at < end)


def _remove(values: list[Any], value: Any) -> None:
    i = bisect_left(values, value)
    if i == len(values) or values[i] != value:
        raise KeyError(value)
    del values[i]


@dataclass(frozen=True)
class CohortQuestions:
    """What ``evaluate`` will ask at the given instants: ``enrolled`` and ``first_opened`` at each instant in
    ``cohort_at``, ``done(at, cohort_at)`` for each pair in ``done``. A store answers them in one query."""

    cohort_at: tuple[datetime, ...]
    done: tuple[tuple[datetime, datetime], ...]


def questions(campaign: Campaign, instants: Sequence[datetime]) -> CohortQuestions:
    done: list[tuple[datetime, datetime]] = []
    for at in instants:
        done.append((at, at))
        window = velocity_window(campaign, at)
        if window > 0:
            done.append((at - timedelta(days=window), at))
    return CohortQuestions(tuple(instants), tuple(done))


@dataclass(frozen=True)
class CohortAnswers:
    """Answers prepared for a ``CohortQuestions`` (by the SLA store's count queries)."""

    enrolled_at: Mapping[datetime, int]
    first_opened_at: Mapping[datetime, datetime | None]
    done_at: Mapping[tuple[datetime, datetime], int]

    def enrolled(self, at: datetime) -> int:
        return self.enrolled_at[at]

    def first_opened(self, at: datetime) -> datetime | None:
        return self.first_opened_at[at]

    def done(self, at: datetime, cohort_at: datetime) -> int:
        return self.done_at[(at, cohort_at)]


# --- evaluation --------------------------------------------------------------------------------------------------


def velocity_window(campaign: Campaign, at: datetime) -> float:
    """Days back over which the recent pace is measured (shorter in the campaign's first days)."""
    elapsed_days = max((at - campaign.start) / timedelta(days=1), 0.0)
    return min(float(campaign.velocity_window_days), elapsed_days)


def cohort_size(campaign: Campaign, enrolled: int) -> int:
    """How many tickets the target is a share of: the plan's fixed set where it names one (化解率 of 1864 tickets:
    until all of them are enrolled, the rest count as not resolved yet), else the tickets enrolled so far."""
    return max(enrolled, campaign.planned_cohort or 0)


def evaluate(campaign: Campaign, counts: CohortCounts, at: datetime) -> CampaignReport:
    """The campaign as of ``at``: the cohort is every enrolled ticket opened by ``at`` (and, where the plan names
    its fixed set, at least that many: ``cohort_size``); the pace compares how many of that cohort were done at
    ``at`` and one velocity window earlier.

    The status says what the evidence supports, and no more:

    * No ticket enrolled (by ``at``): ``insufficient_data``, before the deadline and at it. An empty cohort means
      the service was not measuring the campaign (a deployment after the campaign, a replay of other data, a source
      system that does not tag its tickets), not that the units failed: no ``missed`` and no level-3 escalation,
      even where the plan names a fixed cohort (0 of 1864 is what the service saw, not what the units did).
    * At the deadline, with tickets enrolled: ``met`` when the rate reaches the target, else ``missed``. This is
      the final measured rate, not a projection, so ``min_enrolled`` and ``warmup_days`` do not apply.
    * Before the deadline, fewer than ``min_enrolled`` tickets enrolled: ``insufficient_data`` — except that a
      campaign whose plan names its cohort (``planned_cohort``), past ``warmup_days``, with a projection below the
      target is ``at_risk``. Without a named cohort the target is a share of the enrolled tickets, and a share of
      two or three tickets is noise either way. With a named cohort the target is a count fixed by the plan
      (``ceil(target × planned_cohort)`` tickets done by the deadline) and the pace is counted in tickets done
      per day, so "at this pace the plan's count will not be reached" is a fact about the resolutions the service
      did see (4 of 38 enrolled and none done in the velocity window: projected 0), whatever the number enrolled;
      staying silent until the deadline would turn a visible shortfall into a surprise ``missed``. The converse
      does not hold: a projection at or above the target from a handful of tickets extrapolates them over the
      plan's tickets not yet seen, so it is ``insufficient_data``, never ``on_track``.
    * Otherwise: ``on_track`` when the projection reaches the target; within ``warmup_days`` of the first
      enrolment a projection below it is ``insufficient_data`` (too early to tell the pace); else ``at_risk``.
    """
    enrolled = counts.enrolled(at)
    n = cohort_size(campaign, enrolled)
    done_now = counts.done(at, at)
    window = velocity_window(campaign, at)
    if window > 0:
        done_before = counts.done(at - timedelta(days=window), at)
        velocity = (done_now - done_before) / window
    else:
        velocity = 0.0
    days_left = max((campaign.deadline - at) / timedelta(days=1), 0.0)
    rate = done_now / n if n else 0.0
    # net reopenings can make the pace negative: a projection below none done is no count, so it stops at zero
    projected = min(n, max(done_now + velocity * days_left, 0.0)) / n if n else 0.0
    shortfall = max(math.ceil(campaign.target * n - 1e-9) - done_now, 0)
    needed = shortfall / days_left if days_left > 0 else float(shortfall)
    status: CampaignStatus
    if enrolled == 0:
        status = "insufficient_data"
    elif at >= campaign.deadline:
        status = "met" if rate >= campaign.target else "missed"
    elif enrolled < campaign.min_enrolled:
        falling_short = campaign.planned_cohort is not None and projected < campaign.target
        status = "at_risk" if falling_short and not _warming_up(campaign, counts, at) else "insufficient_data"
    elif projected >= campaign.target:
        status = "on_track"
    elif _warming_up(campaign, counts, at):
        status = "insufficient_data"
    else:
        status = "at_risk"
    return CampaignReport(campaign_id=campaign.id, at=at, enrolled=enrolled, resolved=done_now, rate=round(rate, 6),
                          target=campaign.target, deadline=campaign.deadline, planned_cohort=campaign.planned_cohort,
                          projected_rate=round(projected, 6), needed_per_day=round(needed, 3), status=status)


def _warming_up(campaign: Campaign, counts: CohortCounts, at: datetime) -> bool:
    """Within ``warmup_days`` of the first enrolment, or of the campaign's start when its tickets opened before it
    (a plan's backlog: its pace can only be measured from the start); an empty cohort has not started either."""
    first = counts.first_opened(at)
    return first is None or at - max(first, campaign.start) < timedelta(days=campaign.warmup_days)


def advance(campaign: Campaign, state: CampaignState, counts: CohortCounts,
            now: datetime) -> tuple[CampaignState, list[Escalation]]:
    """Run every scheduled evaluation up to ``now``; escalate on entering at-risk and on a miss (never on
    ``insufficient_data``, which also breaks a run of on-track evaluations: it does not re-arm an at-risk alarm).
    ``counts`` must answer the ``questions`` of those instants (``evaluation_times(campaign,
    state.last_evaluated_at, now)``)."""
    escalations: list[Escalation] = []
    for instant in evaluation_times(campaign, state.last_evaluated_at, now):
        report = evaluate(campaign, counts, instant)
        kind = None
        streak = state.on_track_streak + 1 if report.status == "on_track" else 0
        alarmed = state.alarmed and streak < campaign.rearm_days
        if report.status == "at_risk" and not alarmed:
            kind, level, alarmed = EscalationKind.campaign_at_risk, 2, True
        elif report.status == "missed":
            kind, level = EscalationKind.campaign_missed, 3
        if kind is not None:
            esc_id = escalation_id(kind.value, campaign.id, instant.isoformat())
            if esc_id not in state.emitted:
                escalations.append(Escalation(
                    escalation_id=esc_id, kind=kind, jurisdiction=campaign.jurisdiction, campaign_id=campaign.id,
                    level=level, at=instant,
                    details={"rate": report.rate, "projected_rate": report.projected_rate, "target": campaign.target,
                             "enrolled": report.enrolled, "resolved": report.resolved,
                             "needed_per_day": report.needed_per_day, "deadline": campaign.deadline.isoformat(),
                             "citation": f"{campaign.citation.file} {campaign.citation.clause}"}))
                state = state.model_copy(update={"emitted": [*state.emitted, esc_id]})
        state = state.model_copy(update={"last_evaluated_at": instant, "status": report.status,
                                         "on_track_streak": streak, "alarmed": alarmed,
                                         "history": [*state.history, report]})
    return state, escalations
