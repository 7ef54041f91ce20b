"""The SLA service layer: apply inputs to a ticket's state and sweep it for due escalations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from schemas import Escalation, RepeatReport, TriageItem, UnitUpdate, WorkOrder
from services.domain import deadlines, lifecycle
from services.domain.campaigns import CampaignBook
from services.domain.clock import WorkCalendar, load_overrides
from services.domain.policies import Policy, PolicyBook
from services.domain.repeats import RepeatPolicy
from services.domain.routing.rulebook import load_library, unit_directory
from services.domain.tickets import Status, TicketState
from services.domain.validation import Rejection

DATA_DIR = Path(__file__).resolve().parent.parent / "sla"


@dataclass
class SlaRules:
    """Everything the SLA decisions depend on, loaded once per process."""

    policies: PolicyBook
    calendar: WorkCalendar
    campaigns: CampaignBook
    repeats: RepeatPolicy
    # each jurisdiction's dispatch desk (the rulebook's triage_unit): it calls citizens back and reviews 延期
    desks: dict[str, str] = field(default_factory=dict)
    # every unit and territory of the rulebooks by its code: (jurisdiction, name), for units' signatures
    units: dict[str, tuple[str, str]] = field(default_factory=dict)
    _policy_cache: dict[tuple[str, str, str, str], Policy] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, data_dir: Path = DATA_DIR) -> SlaRules:
        library = load_library()
        return cls(PolicyBook.load(data_dir / "policies.yaml"),
                   WorkCalendar(load_overrides(data_dir / "calendar_overrides.yaml")),
                   CampaignBook.load(data_dir / "campaigns.yaml"),
                   RepeatPolicy.load(),
                   desks={j: book.triage_unit for j, book in library.books.items()},
                   units=unit_directory(library))

    def policy_for(self, state: TicketState) -> Policy:
        return self.policy_by(state.jurisdiction, state.source, state.category or "", state.urgency)

    def policy_by(self, jurisdiction: str, source: str, category: str, urgency: str) -> Policy:
        key = (jurisdiction, source, category, urgency)
        policy = self._policy_cache.get(key)
        if policy is None:
            policy = self.policies.for_ticket(jurisdiction=key[0], source=key[1], category=key[2], urgency=key[3])
            self._policy_cache[key] = policy
        return policy


def on_work_order(state: TicketState | None, order: WorkOrder, rules: SlaRules) -> TicketState | lifecycle.Duplicate:
    policy = rules.policy_by(order.jurisdiction.value, order.source.value, order.category, order.urgency.value)
    return lifecycle.apply_work_order(state, order, policy, rules.calendar)


def on_triage(state: TicketState | None, item: TriageItem) -> TicketState | lifecycle.Duplicate:
    return lifecycle.apply_decision(state, item.decision, source=str(item.source), urgency=str(item.urgency),
                                    campaigns=item.campaigns, opened_at=item.opened_at, decided_at=item.decided_at)


def on_update(state: TicketState | None, update: UnitUpdate,
              rules: SlaRules) -> lifecycle.Applied | lifecycle.Rejection | lifecycle.Duplicate:
    if state is None:
        return lifecycle.apply_update(None, update, None, rules.calendar)
    return lifecycle.apply_update(state, update, rules.policy_for(state), rules.calendar,
                                  desk=rules.desks.get(state.jurisdiction))


def may_be_early(state: TicketState | None, update: UnitUpdate, rejection: Rejection) -> bool:
    """Could the message that makes this input apply still be on its way? The ticket is not known yet (its work
    order or triage item travels on another topic, or a crashed router's relay sends it late), a returned
    ticket's next unit answers a re-dispatch not seen yet, or a unit answers the work order of the dispatch desk's
    ruling on a triaged, redirected or desk-closed ticket before that work order is seen. Such an input is held,
    not dead-lettered at once. The desk's own steps are never early: each answers a unit's step on the same topic
    and partition (a callback or a reopening its 办结, a review its 延期), which has been applied already, or is
    held and keeps the desk's step waiting behind it; a desk step refused now stays refused."""
    if update.action in lifecycle.DESK_ACTIONS:
        return False
    if state is None:
        return rejection.reason == "unknown_ticket"
    if state.status in (Status.triage, Status.redirected):
        return rejection.reason == "invalid_transition"
    if state.status is Status.closed and state.unit is None:  # closed by the desk: its dispatch ruling may reopen it
        return rejection.reason in ("invalid_transition", "unit_mismatch")
    return rejection.reason == "unit_mismatch" and state.status is Status.returned


def on_repeat(state: TicketState | None, report: RepeatReport, rules: SlaRules) -> TicketState | lifecycle.Duplicate | None:
    """None when the ticket is unknown (the router forwards repeats only for tickets it decided on)."""
    if state is None:
        return None
    return lifecycle.apply_repeat(state, report, rules.repeats.raise_priority_at)


def sweep(state: TicketState, now: datetime, rules: SlaRules) -> tuple[TicketState, list[Escalation], datetime | None]:
    """Due escalations at ``now`` (not emitted before), the state marking them, and the next check time."""
    found, upcoming = deadlines.split(state, now, rules.policy_for(state), rules.calendar,
                                      desk=rules.desks.get(state.jurisdiction))
    return deadlines.mark_emitted(state, found), found, upcoming


def next_check(state: TicketState, rules: SlaRules) -> datetime | None:
    return deadlines.next_check(state, rules.policy_for(state), rules.calendar)
