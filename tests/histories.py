"""Many varied ticket histories made by the domain functions themselves, for equivalence tests.

Each ticket opens by a work order or on the triage desk and then takes a random walk of unit updates:
acknowledge, resolve, extend (also after the deadline, and refused ones), the desk's review of an extension
(granted or not), return (then a re-dispatch to another unit or a dispute on the triage desk), callbacks satisfied
and not, the desk reopening a closed ticket, updates from the wrong unit, late updates dated before earlier ones, and now and then a dispatch dated
before the ticket opened. Whatever the lifecycle
refuses is simply not applied, as in the workers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from schemas import TriageItem
from services.domain import sla
from services.domain.campaigns import Campaign
from services.domain.lifecycle import Applied
from services.domain.sla import SlaRules
from services.domain.tickets import Status, TicketState
from tests.conftest import cst
from tests.factories import CITE, decision, update, work_order

UNITS = ("区城管执法局", "区房管局", "区绿化市容局", "朱家角镇")
JURISDICTIONS = ("qingpu", "changning")
SOURCES = ("hotline_12345", "petition", "iot_alert")
CATEGORIES = ("illegal_construction", "noise", "parking")
CAMPAIGNS = ("c-resolved", "c-dispatched", "c-other")
START = cst("2025-05-01 00:00")


def histories(rules: SlaRules, n: int, seed: int, start: datetime = START, days: float = 60.0) -> list[TicketState]:
    """The final states of ``n`` tickets."""
    return [trail[-1] for trail in trails(rules, n, seed, start, days)]


def trails(rules: SlaRules, n: int, seed: int, start: datetime = START, days: float = 60.0) -> list[list[TicketState]]:
    """Every state each of ``n`` tickets went through, in order (as a worker saves them)."""
    rnd = random.Random(seed)
    out: list[list[TicketState]] = []
    for i in range(n):
        trail: list[TicketState] = []
        history(rules, rnd, f"H{seed}-{i:04d}", start + timedelta(days=rnd.uniform(0, days)), trail.append)
        out.append([s for k, s in enumerate(trail) if k == 0 or s != trail[k - 1]])
    return out


def history(rules: SlaRules, rnd: random.Random, ticket: str, opened: datetime,
            saved: Callable[[TicketState], None] = lambda state: None) -> TicketState:
    facts: dict[str, Any] = dict(jurisdiction=rnd.choice(JURISDICTIONS), source=rnd.choice(SOURCES),
                                 category=rnd.choice(CATEGORIES),
                                 campaigns=rnd.sample(CAMPAIGNS, rnd.choice((0, 0, 1, 1, 2))))
    unit = rnd.choice(UNITS)
    clock = opened
    if rnd.random() < 0.2:
        state = _triage(ticket, opened, facts)
        if rnd.random() < 0.6:  # the desk dispatches it later
            clock = opened + timedelta(hours=rnd.uniform(1, 72))
            saved(state)
            state = _dispatch(rules, state, ticket, 1, unit, opened, clock, facts)
    else:
        early = rnd.random() < 0.05  # a work order dated before the ticket opened (the contract allows it)
        clock = opened + timedelta(hours=rnd.uniform(-5, 0) if early else rnd.uniform(0, 2))
        state = _dispatch(rules, None, ticket, 1, unit, opened, clock, facts)
    saved(state)
    for _ in range(rnd.randint(0, 9)):
        clock += timedelta(hours=rnd.expovariate(1 / 30))
        at = clock - timedelta(hours=rnd.uniform(0, 30)) if rnd.random() < 0.1 else clock  # a late update
        state = _step(rules, rnd, state, ticket, at, facts)
        saved(state)
    return state


def _triage(ticket: str, opened: datetime, facts: dict[str, Any]) -> TicketState:
    d = decision(ticket, jurisdiction=facts["jurisdiction"], outcome="triage", lead_unit=None, needs_triage=True,
                 triage_reason="unclear", category=None)
    item = TriageItem(ticket_id=ticket, jurisdiction=facts["jurisdiction"], source=facts["source"], urgency="normal",
                      campaigns=facts["campaigns"], opened_at=opened, content="?", address="青浦", queue="城运中心",
                      decision=d)
    state = sla.on_triage(None, item)
    assert isinstance(state, TicketState)
    return state


def _dispatch(rules: SlaRules, state: TicketState | None, ticket: str, seq: int, unit: str, opened: datetime,
              at: datetime, facts: dict[str, Any]) -> TicketState:
    order = work_order(ticket, opened, unit=unit, seq=seq, dispatched_at=at, jurisdiction=facts["jurisdiction"],
                       source=facts["source"], category=facts["category"], campaigns=facts["campaigns"],
                       decision=decision(ticket, unit, jurisdiction=facts["jurisdiction"]))
    result = sla.on_work_order(state, order, rules)
    assert isinstance(result, TicketState)
    return result


def _step(rules: SlaRules, rnd: random.Random, state: TicketState, ticket: str, at: datetime,
          facts: dict[str, Any]) -> TicketState:
    if state.status is Status.returned:  # the router answers a return
        if rnd.random() < 0.7:
            unit = rnd.choice([u for u in UNITS if u != state.unit] or list(UNITS))
            return _dispatch(rules, state, ticket, state.dispatch_seq + 1, unit, state.opened_at,
                             max(at, state.transitions[-1].at), facts)
        d = decision(ticket, jurisdiction=facts["jurisdiction"], outcome="triage", lead_unit=None, needs_triage=True,
                     triage_reason="ownership_dispute", category=None)
        item = TriageItem(ticket_id=ticket, jurisdiction=facts["jurisdiction"], source=facts["source"],
                          urgency="normal", campaigns=facts["campaigns"], opened_at=state.opened_at, content="?",
                          address="青浦", queue="城运中心", decision=d)
        result = sla.on_triage(state, item)
        return result if isinstance(result, TicketState) else state
    action = rnd.choice(("acknowledge", "acknowledge", "resolve", "resolve", "extend", "review_extension", "return",
                         "callback", "callback", "reopen"))
    if state.status is Status.closed and rnd.random() < 0.3:  # most closed tickets take no more updates
        action = "reopen"
    unit = state.unit or rnd.choice(UNITS)
    extra: dict[str, Any] = {}
    if action in ("review_extension", "callback", "reopen"):  # the dispatch desk's work
        unit = rules.desks[facts["jurisdiction"]]
    if action == "review_extension":
        extra["approved"] = rnd.random() < 0.7
        asked = [t.update_id for t in state.transitions if t.action == "extend"]
        if asked and rnd.random() < 0.5:  # naming the request, perhaps an earlier one
            extra["extension_id"] = rnd.choice(asked)
    if rnd.random() < 0.05:
        unit = rnd.choice(UNITS)  # perhaps the wrong unit
    if action == "extend":
        current = state.cycle.resolve_due_at(at) if state.cycle else at
        extra["new_due"] = current + timedelta(hours=rnd.uniform(-10, 200))
        extra["reason"] = "需要协调"
    if action == "callback":
        extra["satisfied"] = rnd.random() < 0.6
        extra["reason"] = "不满意"
    if action == "reopen":
        extra["reason"] = "复核：问题又出现了"
    result = sla.on_update(state, update(ticket, action, at, unit=unit, **extra), rules)
    return result.state if isinstance(result, Applied) else state


def moments(tickets: list[TicketState], rnd: random.Random, n: int) -> list[datetime]:
    """Instants worth asking at: random ones, and exactly at (and around) the facts' own times."""
    times = sorted({t.at for s in tickets for t in s.transitions} | {s.opened_at for s in tickets}
                   | {seg.due for s in tickets for c in s.cycles for seg in c.due}
                   | {c.ack_due for s in tickets for c in s.cycles if c.ack_due is not None})
    picks = rnd.sample(times, min(n, len(times)))
    tiny = timedelta(microseconds=1)
    out = {m + d for m in picks for d in (-tiny, timedelta(0), tiny)}
    out |= {times[0] - timedelta(days=1), times[-1] + timedelta(days=30)}
    out |= {times[0] + (times[-1] - times[0]) * rnd.random() for _ in range(n)}
    return sorted(out)


def campaigns() -> list[Campaign]:
    """Campaigns over these histories: by the resolved and by the dispatched measure, by selector rules, empty."""
    base: dict[str, Any] = dict(name="test", jurisdiction="qingpu", target=0.6, start=cst("2025-05-10 00:00"),
                                deadline=cst("2025-07-20 00:00"), citation=CITE, warmup_days=2, min_enrolled=3)
    return [Campaign(id="c-resolved", **base),
            Campaign(id="c-dispatched", measure="dispatched", **{**base, "target": 0.97}),
            Campaign(id="c-selector", selector={"jurisdiction": ["qingpu"], "category": ["noise", "parking"]}, **base),
            Campaign(id="c-none", **base)]  # nobody enrolled
