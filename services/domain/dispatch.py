"""The router's service layer: decide on a new ticket, re-dispatch after a return (退单), and carry out the
dispatch desk's ruling on a ticket in its triage queue.

Pure: the caller loads the ticket's ``RouterTicket`` (or None), calls one function and stores and
publishes what it returns. The replay and the Faust agent both call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from schemas import (Escalation, EscalationKind, IntakeEvent, Outcome, RepeatReport, RoutingDecision, Ruling,
                     RulingAction, TriageItem, UnitUpdate, WorkOrder)
from services.domain.deadlines import escalation_id
from services.domain.validation import Rejection


class Routes(Protocol):
    """What dispatch needs from the rulebooks (``services.domain.routing.Router`` provides it)."""

    version: str

    def route(self, event: IntakeEvent, *, exclude_units: set[str] | frozenset[str] = ...,
              screen_emergency: bool = ...) -> RoutingDecision: ...

    def triage_unit(self, jurisdiction: str) -> str: ...

    def rule_on(self, event: IntakeEvent, ruling: Ruling) -> RoutingDecision | Rejection: ...

    def dispute(self, event: IntakeEvent, grounds: str) -> RoutingDecision: ...


class RouterTicket(BaseModel):
    """What the router remembers per ticket."""

    model_config = ConfigDict(extra="forbid")

    event: IntakeEvent
    dispatch_seq: int = 0
    current_unit: str | None = None
    tried_units: list[str] = Field(default_factory=list)
    returns: list[dict[str, str]] = Field(default_factory=list)
    handled_returns: list[str] = Field(default_factory=list)
    in_triage: bool = Field(default=False, description="waiting for the dispatch desk: triage, an ownership "
                                                     "dispute, or a redirect it reviews (redirect_review)")
    redirected: bool = Field(default=False, description="handed to 110/119/120 with no work order; the desk may "
                                                        "still dispatch it (a false alarm, or a civic matter too)")
    rulings: list[str] = Field(default_factory=list, description="ids of the dispatch desk's rulings applied")
    closed_at: datetime | None = Field(default=None, description="when the desk closed it without a work order (a "
                                                                "close ruling); the desk may still dispatch it later")
    repeats: list[str] = Field(default_factory=list, description="event ids of merged repeat reports")


@dataclass
class RouterOutput:
    ticket: RouterTicket
    decision: RoutingDecision | None = None
    work_order: WorkOrder | None = None
    triage: TriageItem | None = None
    escalations: list[Escalation] = field(default_factory=list)
    repeat: RepeatReport | None = None  # forwarded to the unit holding the ticket and to the SLA service
    duplicate: bool = False

    @property
    def decided_at(self) -> datetime:
        """When the decision was made: the dispatch time of its work order, the time the desk closed the ticket,
        the return that made it a dispute, or else the event's time."""
        if self.work_order is not None:
            return self.work_order.dispatched_at
        if self.triage is not None and self.triage.decided_at is not None:
            return self.triage.decided_at
        return self.escalations[0].at if self.escalations else self.ticket.event.occurred_at

    @property
    def decision_seq(self) -> int:
        """The decision's number among the ticket's decisions: the first, then one per return and per ruling."""
        return len(self.ticket.returns) + len(self.ticket.rulings) + 1


def _work_order(ticket: RouterTicket, decision: RoutingDecision, seq: int, at: datetime) -> WorkOrder:
    event = ticket.event
    assert decision.lead_unit is not None and decision.category is not None
    return WorkOrder(
        work_order_id=f"{event.event_id}#{seq}", ticket_id=event.event_id, dispatch_seq=seq,
        jurisdiction=event.jurisdiction, source=event.source, category=decision.category,
        urgency=decision.urgency or event.urgency,
        lead_unit=decision.lead_unit, cooperating_units=decision.cooperating_units,
        territorial_unit=decision.territorial_unit, previous_units=list(ticket.tried_units), content=event.content,
        address=event.address, caller=event.caller, campaigns=event.campaigns, opened_at=event.occurred_at,
        dispatched_at=at, decision=decision)


def _triage_item(event: IntakeEvent, decision: RoutingDecision, queue: str,
                 decided_at: datetime | None = None) -> TriageItem:
    return TriageItem(ticket_id=event.event_id, jurisdiction=event.jurisdiction, source=event.source,
                      urgency=decision.urgency or event.urgency, campaigns=event.campaigns, opened_at=event.occurred_at,
                      content=event.content, address=event.address, queue=queue, decision=decision,
                      decided_at=decided_at)


def _emit(ticket: RouterTicket, decision: RoutingDecision, router: Routes, at: datetime) -> RouterOutput:
    if decision.outcome == "dispatch" and decision.lead_unit:
        seq = ticket.dispatch_seq + 1
        order = _work_order(ticket, decision, seq, at)
        ticket = ticket.model_copy(update={"dispatch_seq": seq, "current_unit": decision.lead_unit, "in_triage": False,
                                           "redirected": False, "closed_at": None,
                                           "tried_units": [*ticket.tried_units, decision.lead_unit]})
        return RouterOutput(ticket, decision, work_order=order)
    queue = router.triage_unit(str(ticket.event.jurisdiction))
    decided_at = at if decision.outcome == Outcome.close else None
    # the SLA service records a close no earlier than the return that disputed the ticket: so does the router
    closed_at = max([at, *(datetime.fromisoformat(r["at"]) for r in ticket.returns)]) if decided_at else None
    # a redirect the desk reviews (the report also names a civic matter) waits in its queue as well
    waiting = decision.outcome == Outcome.triage or (decision.outcome == Outcome.redirect and decision.needs_triage)
    ticket = ticket.model_copy(update={"in_triage": waiting, "current_unit": None,
                                       "redirected": decision.outcome == Outcome.redirect, "closed_at": closed_at})
    return RouterOutput(ticket, decision, triage=_triage_item(ticket.event, decision, queue, decided_at))


def decide(existing: RouterTicket | None, event: IntakeEvent, router: Routes) -> RouterOutput:
    """First decision for an accepted event; a redelivered event changes nothing."""
    if existing is not None:
        return RouterOutput(existing, duplicate=True)
    decision = router.route(event)
    return _emit(RouterTicket(event=event), decision, router, event.occurred_at)


# re-route outcomes after a return that mean: no unit left to try
_NO_OTHER_UNIT = frozenset({"all_candidates_excluded", "no_rule_matched", "no_territory_for_territorial_rule"})


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def on_return(ticket: RouterTicket, returned: UnitUpdate, router: Routes, max_returns: int = 2) -> RouterOutput:
    """A unit returned the ticket: try the next candidate, or after ``max_returns`` returns (or with no
    candidate left) hand it to triage and raise an ``ownership_dispute``."""
    if returned.event_id in ticket.handled_returns:
        return RouterOutput(ticket, duplicate=True)
    returns = [*ticket.returns, {"unit": returned.unit, "reason": returned.reason or "", "at": returned.occurred_at.isoformat()}]
    ticket = ticket.model_copy(update={"returns": returns, "handled_returns": [*ticket.handled_returns, returned.event_id]})
    # once the desk has ruled (it may have dispatched a ticket the emergency screen redirected), a return looks for
    # another unit: the emergency words the desk judged are no reason to redirect it again
    decision = router.route(ticket.event, exclude_units=frozenset(ticket.tried_units),
                            screen_emergency=not ticket.rulings)
    tried = "、".join(ticket.tried_units)
    if len(returns) >= max_returns or decision.outcome != "dispatch":
        if len(returns) >= max_returns:
            why = f"已退单{len(returns)}次（{tried}）"
        elif decision.triage_reason in _NO_OTHER_UNIT:
            why = f"{tried}退单后没有其他候选单位"
        else:  # the re-route found no unit it could name with confidence: say why (low confidence, out of scope)
            why = f"{tried}退单后无法自动改派（{decision.triage_reason}）"
        # the desk rules on the units' own grounds: each return's reason, as the unit gave it (cut to 200)
        grounds = "；".join(f"{r['unit']}：{_cut(r['reason'], 200)}" for r in returns)
        decision = router.dispute(ticket.event, f"{why}，转派单台人工裁定。退单理由：{grounds}。")
        out = _emit(ticket, decision, router, returned.occurred_at)
        out.escalations.append(Escalation(
            escalation_id=escalation_id(EscalationKind.ownership_dispute.value, ticket.event.event_id, len(returns)),
            kind=EscalationKind.ownership_dispute, jurisdiction=ticket.event.jurisdiction,
            ticket_id=ticket.event.event_id, unit=returned.unit, level=2, at=returned.occurred_at,
            details={"returns": returns, "units_tried": ticket.tried_units, "queue": out.triage.queue if out.triage else None}))
        return out
    return _emit(ticket, decision, router, returned.occurred_at)


def on_ruling(ticket: RouterTicket, ruling: Ruling, router: Routes) -> RouterOutput | Rejection:
    """The dispatch desk ruled on a ticket in its queue: dispatch it to the units of the rule it applies (the lead
    it names, if another), or close it without a work order. A ruling is binding: the unit it names may be one
    that returned the ticket before. The desk may also dispatch a ticket the emergency screen redirected to
    110/119/120 (a keyword is not proof: "最近小偷很多" under a street-lamp complaint), which would otherwise have no
    owner, and close one it was asked to review (the report also named a civic matter: no work order is due
    besides); and reopen a ticket it closed itself by dispatching it (复核: the caller reports the matter again), at or
    after the close. A ticket not waiting for the desk (dispatched, already ruled on) is refused, so a late or
    repeated ruling cannot take a ticket from the unit working on it. Nor can a ruling dated before the ticket
    opened: the replay, in event time, would not know the ticket yet. (A ticket closed after a satisfied callback
    is held by its unit here; the desk reopens it on the updates topic, ``reopen``.)"""
    if ruling.ruling_id in ticket.rulings:
        return RouterOutput(ticket, duplicate=True)
    if ruling.occurred_at < ticket.event.occurred_at:
        return Rejection("unknown_ticket", "ticket_id",
                         f"ticket_id: ticket {ticket.event.event_id!r} opened at "
                         f"{ticket.event.occurred_at.isoformat()}, after the ruling's time")
    closed_at = ticket.closed_at if ruling.action is RulingAction.dispatch else None  # a dispatch reopens it
    if not (ticket.in_triage or (ticket.redirected and ruling.action is RulingAction.dispatch) or closed_at is not None):
        where = (f"is held by {ticket.current_unit}" if ticket.current_unit else
                 "was redirected: the desk may dispatch it, not close it" if ticket.redirected else
                 "was closed: the desk may dispatch it, not close it again" if ticket.closed_at else "was closed")
        return Rejection("not_in_triage", "ticket_id",
                         f"ticket_id: ticket {ticket.event.event_id!r} is not waiting for the dispatch desk "
                         f"(it {where})")
    if closed_at is not None and ruling.occurred_at < closed_at:
        return Rejection("out_of_order", "occurred_at",
                         f"occurred_at: the ruling at {ruling.occurred_at.isoformat()} is earlier than the desk's "
                         f"close of the ticket at {closed_at.isoformat()}; a dispatch reopens it only after")
    decision = router.rule_on(ticket.event, ruling)
    if isinstance(decision, Rejection):
        return decision
    ticket = ticket.model_copy(update={"rulings": [*ticket.rulings, ruling.ruling_id]})
    return _emit(ticket, decision, router, ruling.occurred_at)


def on_repeat(ticket: RouterTicket, report: RepeatReport) -> RouterOutput:
    """A repeat report joined this ticket: remember it and forward it (the unit gets the extra caller)."""
    if report.event_id in ticket.repeats:
        return RouterOutput(ticket, duplicate=True)
    ticket = ticket.model_copy(update={"repeats": [*ticket.repeats, report.event_id]})
    return RouterOutput(ticket, repeat=report)
