"""Campaign targets (专项行动) tracked as SLOs: rate, projection at the deadline, at-risk and missed.

A ticket enrols through its event's ``campaigns`` list. Rate = tickets resolved and not reopened ÷
tickets enrolled (for ``measure: dispatched``, tickets dispatched ÷ enrolled). Campaigns are evaluated on
a schedule (daily at midnight, China Standard Time, by default), never per event, and each evaluation
looks only at facts timestamped up to its instant, so replay and streaming agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from schemas import Citation, Escalation, EscalationKind
from services.domain.clock import CHINA_TZ
from services.domain.deadlines import escalation_id
from services.domain.tickets import TicketState

CampaignStatus = Literal["on_track", "at_risk", "met", "missed"]


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
    warmup_days: int = 3  # no at-risk alarm until this many days after the first ticket enrolled
    min_enrolled: int = 5  # ... nor while fewer tickets than this are enrolled
    rearm_days: int = 3  # on track this many evaluations in a row before a new at-risk alarm
    velocity_window_days: int = 14
    selector: dict[str, list[str]] | None = None
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
    status: CampaignStatus = "on_track"
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


def evaluation_times(campaign: Campaign, after: datetime | None, upto: datetime) -> list[datetime]:
    """The scheduled instants in (after, upto], from the campaign's start to its deadline inclusive."""
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
    """The first scheduled instant after ``after`` (None once the deadline has been evaluated)."""
    if after is not None and after >= campaign.deadline:
        return None
    start = campaign.start if after is None else after
    day = start.astimezone(CHINA_TZ).date()
    instant = datetime.combine(day, campaign.evaluate_at, CHINA_TZ)
    if instant < campaign.start or (after is not None and instant <= after):
        instant = datetime.combine(day + timedelta(days=1), campaign.evaluate_at, CHINA_TZ)
    return min(instant, campaign.deadline)


def enrolled(campaign: Campaign, ticket: TicketState) -> bool:
    if campaign.id in ticket.campaigns:
        return True
    if campaign.selector:  # optional rules, off in the shipped definitions
        facts = {"jurisdiction": ticket.jurisdiction, "source": ticket.source, "category": ticket.category or ""}
        return all(facts.get(k) in v for k, v in campaign.selector.items())
    return False


def _done(campaign: Campaign, ticket: TicketState, at: datetime) -> bool:
    if campaign.measure == "dispatched":
        return ticket.first_dispatched_at is not None and ticket.first_dispatched_at <= at
    return ticket.resolved_as_of(at)


def evaluate(campaign: Campaign, tickets: Iterable[TicketState], at: datetime) -> CampaignReport:
    cohort = [t for t in tickets if t.opened_at <= at and enrolled(campaign, t)]
    done_now = sum(_done(campaign, t, at) for t in cohort)
    elapsed_days = max((at - campaign.start) / timedelta(days=1), 0.0)
    window = min(float(campaign.velocity_window_days), elapsed_days)
    if window > 0:
        done_before = sum(_done(campaign, t, at - timedelta(days=window)) for t in cohort)
        velocity = (done_now - done_before) / window
    else:
        velocity = 0.0
    days_left = max((campaign.deadline - at) / timedelta(days=1), 0.0)
    n = len(cohort)
    rate = done_now / n if n else 0.0
    projected = min(n, done_now + velocity * days_left) / n if n else 0.0
    shortfall = max(math.ceil(campaign.target * n - 1e-9) - done_now, 0)
    needed = shortfall / days_left if days_left > 0 else float(shortfall)
    if at >= campaign.deadline:
        status: CampaignStatus = "met" if n and rate >= campaign.target else "missed"
    elif (n < campaign.min_enrolled or projected >= campaign.target
          or at - min(t.opened_at for t in cohort) < timedelta(days=campaign.warmup_days)):
        status = "on_track"
    else:
        status = "at_risk"
    return CampaignReport(campaign_id=campaign.id, at=at, enrolled=n, resolved=done_now, rate=round(rate, 6),
                          target=campaign.target, deadline=campaign.deadline, planned_cohort=campaign.planned_cohort,
                          projected_rate=round(projected, 6), needed_per_day=round(needed, 3), status=status)


def advance(campaign: Campaign, state: CampaignState, tickets: list[TicketState],
            now: datetime) -> tuple[CampaignState, list[Escalation]]:
    """Run every scheduled evaluation up to ``now``; escalate on entering at-risk and on a miss."""
    escalations: list[Escalation] = []
    for instant in evaluation_times(campaign, state.last_evaluated_at, now):
        report = evaluate(campaign, tickets, instant)
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
