"""The whole pipeline in one process, in event time, with in-memory state.

This is the offline twin of the three workers: every decision is made by the same domain functions
(``intake.accept_event``, ``dispatch.decide`` / ``on_return`` / ``on_ruling``, ``sla.on_*`` / ``sla.sweep``,
``campaigns.advance``); only the storage (dicts instead of PostgreSQL) and the clock (event time
instead of the wall clock) differ. To replay long histories, the outputs go to temporary files as they come
(``Spool``) and the states of settled tickets are kept as JSON (``PackedStates``).
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from schemas import DeadLetter, Escalation, RepeatReport, Ruling, TriageItem, WorkOrder
from services.domain import dispatch, intake, sla
from services.domain.campaigns import (Campaign, CampaignReport, CampaignState, CohortIndex, advance as advance_campaign,
                                       cohort_facts, evaluate, next_evaluation)
from services.domain.deadletters import dead_letter
from services.domain.dispatch import RouterTicket, Routes
from services.domain.lifecycle import Applied, Duplicate
from services.domain.repeats import OpenReport, find_repeat, repeat_report
from services.domain.sla import SlaRules
from services.domain.tickets import Status, TicketState
from services.domain.validation import Rejection, decode, unknown_ticket
from services.replay.packed import PackedStates
from services.replay.spool import Spool

# Nothing the replay's clock does changes a ticket in these states; their states and routing records are packed.
SETTLED = frozenset({Status.closed, Status.redirected, Status.triage})
_EPOCH, _US = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)


def _instant(moment: datetime) -> int:
    """Microseconds since the epoch: the output files' order by time, exact, in a small key."""
    return (moment - _EPOCH) // _US


def _work_order_key(w: WorkOrder) -> tuple[int, str]:
    return _instant(w.dispatched_at), w.work_order_id


def _escalation_key(e: Escalation) -> tuple[int, str]:
    return _instant(e.at), e.escalation_id


@dataclass
class Pipeline:
    router: Routes
    rules: SlaRules
    max_returns: int = 2
    seen_events: dict[str, bytes] = field(default_factory=dict)  # event id -> intake.fingerprint of its report
    routing: PackedStates[RouterTicket] = field(default_factory=lambda: PackedStates(RouterTicket))
    tickets: PackedStates[TicketState] = field(default_factory=lambda: PackedStates(TicketState))
    campaign_states: dict[str, CampaignState] = field(default_factory=dict)
    # the outputs, kept in temporary files (``Spool``), and their tallies for the summary
    work_orders: Spool[WorkOrder] = field(default_factory=lambda: Spool(WorkOrder, _work_order_key))
    triage: Spool[TriageItem] = field(default_factory=lambda: Spool(TriageItem))
    escalations: Spool[Escalation] = field(default_factory=lambda: Spool(Escalation, _escalation_key))
    rejects: Spool[DeadLetter] = field(default_factory=lambda: Spool(DeadLetter))
    escalation_kinds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # of the triage items: triage | redirect | close
    dispatched: set[str] = field(default_factory=set)  # tickets with at least one work order
    _heap: list[tuple[datetime, str]] = field(default_factory=list)
    _next: dict[str, datetime] = field(default_factory=dict)
    _cohorts: dict[str, CohortIndex] = field(default_factory=dict)  # per campaign: its enrolled tickets' facts
    _indexed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per ticket: the cohorts it has facts in
    _campaign_due: dict[str, datetime | None] = field(default_factory=dict)
    _open_reports: dict[tuple[str, str], list[OpenReport]] = field(default_factory=dict)
    repeats: Spool[RepeatReport] = field(default_factory=lambda: Spool(RepeatReport))

    # --- inputs -------------------------------------------------------------------------------------

    def event(self, raw: bytes, *, origin: str, offset: int, received_at: datetime) -> str:
        """One intake line. Returns its accounting bucket: accepted | rejected | duplicate."""
        parsed = intake.accept_event(raw)
        if isinstance(parsed, Rejection):
            self.rejects.append(dead_letter("intake", parsed, raw, received_at, topic=origin, offset=offset))
            return "rejected"
        seen = self.seen_events.get(parsed.event_id)
        if seen is not None:
            if seen == intake.fingerprint(parsed):
                return "duplicate"
            self.rejects.append(dead_letter("intake", intake.id_conflict(parsed), raw, received_at, topic=origin,
                                            offset=offset))
            return "rejected"
        self.seen_events[parsed.event_id] = intake.fingerprint(parsed)
        policy = self.rules.repeats
        key = (parsed.jurisdiction.value, policy.address_key(parsed.address))
        found = find_repeat(parsed, self._open_reports.get(key, []), policy)
        if found is not None:
            self._repeat(repeat_report(parsed, found[0].ticket_id, found[1]))
            return "merged"
        self._open_reports.setdefault(key, []).append(OpenReport.of(parsed))
        self._route(dispatch.decide(self.routing.get(parsed.event_id), parsed, self.router))
        return "accepted"

    def update(self, raw: bytes, *, origin: str, offset: int, received_at: datetime) -> str:
        parsed = intake.accept_update(raw)
        if isinstance(parsed, Rejection):
            self.rejects.append(dead_letter("sla", parsed, raw, received_at, topic=origin, offset=offset))
            return "rejected"
        result = sla.on_update(self.tickets.get(parsed.ticket_id), parsed, self.rules)
        if isinstance(result, Duplicate):
            return "duplicate"
        if isinstance(result, Rejection):
            self.rejects.append(dead_letter("sla", result, raw, received_at, topic=origin, offset=offset))
            return "rejected"
        self._store_ticket(result.state)
        if isinstance(result, Applied) and result.redispatch:
            ticket = self.routing[parsed.ticket_id]
            self._route(dispatch.on_return(ticket, parsed, self.router, self.max_returns))
        return "accepted"

    def ruling(self, raw: bytes, *, origin: str, offset: int, received_at: datetime) -> str:
        """One ruling of the dispatch desk, as the router's ``rule`` agent takes it."""
        parsed = decode(Ruling, raw)
        if isinstance(parsed, Rejection):
            out: dispatch.RouterOutput | Rejection = parsed
        else:
            ticket = self.routing.get(parsed.ticket_id)
            out = unknown_ticket(parsed.ticket_id) if ticket is None else dispatch.on_ruling(ticket, parsed, self.router)
        if isinstance(out, Rejection):
            self.rejects.append(dead_letter("router", out, raw, received_at, topic=origin, offset=offset))
            return "rejected"
        if out.duplicate:
            return "duplicate"
        self._route(out)
        return "accepted"

    def reject_after_until(self, stream: str, raw: bytes, *, origin: str, offset: int, until: datetime) -> None:
        """A line that occurs after ``--until`` is not processed; it is recorded as a rejection."""
        rejection = Rejection("after_until", "occurred_at", f"occurred_at is after --until {until.isoformat()}")
        stage = {"events": "intake", "rulings": "router"}.get(stream, "sla")
        self.rejects.append(dead_letter(stage, rejection, raw, until, topic=origin, offset=offset))

    # --- the clock ----------------------------------------------------------------------------------

    def advance(self, now: datetime, *, inclusive: bool) -> None:
        """Emit what is due before ``now`` (or at it, when ``inclusive``): ticket escalations, then the
        scheduled campaign evaluations."""
        while self._heap and (self._heap[0][0] < now or (inclusive and self._heap[0][0] == now)):
            at, ticket_id = heapq.heappop(self._heap)
            if self._next.get(ticket_id) != at:
                continue  # superseded entry
            del self._next[ticket_id]
            state, found, upcoming = sla.sweep(self.tickets[ticket_id], at, self.rules)
            self._escalate(found)
            self._store_ticket(state, upcoming)
        horizon = now if inclusive else now - _EPSILON
        for campaign in self.rules.campaigns.campaigns:
            if campaign.id in self._campaign_due:
                due = self._campaign_due[campaign.id]
                if due is None or due > horizon:
                    continue  # the deadline was judged, or nothing is scheduled up to the horizon
            state = self.campaign_states.get(campaign.id) or CampaignState(campaign_id=campaign.id)
            upcoming = next_evaluation(campaign, state.last_evaluated_at)
            if upcoming is not None and upcoming <= horizon:
                state, found = advance_campaign(campaign, state, self.cohort(campaign), horizon)
                self.campaign_states[campaign.id] = state
                self._escalate(found)
                upcoming = next_evaluation(campaign, state.last_evaluated_at)
            self._campaign_due[campaign.id] = upcoming

    def campaign_reports(self, at: datetime) -> list[CampaignReport]:
        """Each campaign as of ``at`` (or as of its deadline, once that has passed)."""
        reports = []
        for campaign in self.rules.campaigns.campaigns:
            moment = min(at, campaign.deadline)
            reports.append(evaluate(campaign, self.cohort(campaign), moment))
        return reports

    # --- internals ----------------------------------------------------------------------------------

    def cohort(self, campaign: Campaign) -> CohortIndex:
        """The campaign's enrolled tickets as counts (kept up to date by ``_store_ticket``)."""
        return self._cohorts.setdefault(campaign.id, CohortIndex())

    def _repeat(self, report: RepeatReport) -> None:
        out = dispatch.on_repeat(self.routing[report.ticket_id], report)
        self.routing[report.ticket_id] = out.ticket
        if out.repeat is not None:
            self.repeats.append(out.repeat)
            result = sla.on_repeat(self.tickets.get(report.ticket_id), out.repeat, self.rules)
            if result is not None and not isinstance(result, Duplicate):
                self._store_ticket(result)

    def _route(self, out: dispatch.RouterOutput) -> None:
        self.routing[out.ticket.event.event_id] = out.ticket
        self._escalate(out.escalations)
        if out.work_order is not None:
            self.work_orders.append(out.work_order)
            self.dispatched.add(out.work_order.ticket_id)
            result = sla.on_work_order(self.tickets.get(out.work_order.ticket_id), out.work_order, self.rules)
        elif out.triage is not None:
            self.triage.append(out.triage)
            self.outcomes[out.triage.decision.outcome] += 1
            result = sla.on_triage(self.tickets.get(out.triage.ticket_id), out.triage)
        else:
            return
        if not isinstance(result, Duplicate):
            self._store_ticket(result)

    def _escalate(self, escalations: list[Escalation]) -> None:
        self.escalations.extend(escalations)
        for e in escalations:
            self.escalation_kinds[e.kind.value] += 1

    def _store_ticket(self, state: TicketState, upcoming: datetime | None | bool = True) -> None:
        self.tickets[state.ticket_id] = state
        if state.status in SETTLED:
            self.tickets.pack(state.ticket_id)
            self.routing.pack(state.ticket_id)
        # only the campaigns the ticket names, those with selector rules, and those it had facts in can change
        was = self._indexed.get(state.ticket_id, ())
        now_in = []
        for campaign in self.rules.campaigns.campaigns:
            if campaign.id in state.campaigns or campaign.selector or campaign.id in was:
                facts = cohort_facts(campaign, state)
                self.cohort(campaign).replace(state.ticket_id, facts)
                if facts is not None:
                    now_in.append(campaign.id)
        if now_in or was:
            self._indexed[state.ticket_id] = tuple(now_in)
        at = sla.next_check(state, self.rules) if upcoming is True else upcoming
        if at is None:
            self._next.pop(state.ticket_id, None)
        elif self._next.get(state.ticket_id) != at:
            self._next[state.ticket_id] = at
            heapq.heappush(self._heap, (at, state.ticket_id))


_EPSILON = timedelta(microseconds=1)
