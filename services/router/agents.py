"""The router worker: accepted events, returns and the dispatch desk's rulings in; work orders, triage items and
escalations out."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import faust

from schemas import IntakeEvent, Outcome, RepeatReport, RoutingDecision, Ruling, UnitUpdate
from services.domain import dispatch
from services.domain.dispatch import RouterOutput, Routes
from services.domain.validation import Rejection, decode, unknown_ticket
from services.platform.batch import Batch, IfNew
from services.platform.codec import TYPES, Outgoing, header, received_seconds
from services.platform.logging import get_logger
from services.platform.metrics import Metrics
from services.platform.settings import Settings
from services.platform.topics import unit_topic
from services.platform.worker import Runtime, make_app
from services.router import store

log = get_logger(__name__)


def _unit_code(router: Routes, jurisdiction: str, unit: str) -> str | None:
    """The unit's topic code; None (logged) for a unit the rulebooks no longer list, e.g. renamed while it held
    a ticket: its copy cannot be delivered, the ticket's own messages still are."""
    try:
        return router.unit_code(jurisdiction, unit)  # type: ignore[attr-defined, no-any-return]
    except KeyError:
        log.warning("unit_without_topic", jurisdiction=jurisdiction, unit=unit)
        return None


def _count_decision(rt: Runtime, batch: Batch, jurisdiction: str, decision: RoutingDecision) -> None:
    """Decisions by outcome and by category, their confidence, and why a ticket went to the desk (the reason's
    kind: ``out_of_scope:<what>`` counts as ``out_of_scope``, so the label set stays small)."""
    m, outcome = rt.metrics, decision.outcome.value
    batch.count(m.decisions.labels(jurisdiction, outcome).inc)
    batch.count(m.category_decisions.labels(jurisdiction, decision.category or "none", outcome).inc)
    batch.count(partial(m.confidence.labels(outcome).observe, decision.confidence))
    if decision.triage_reason:
        batch.count(m.triage.labels(jurisdiction, decision.triage_reason.split(":", 1)[0]).inc)


def _messages(rt: Runtime, batch: Batch, router: Routes, out: RouterOutput) -> list[Outgoing | IfNew]:
    msgs: list[Outgoing | IfNew] = []
    if out.decision is not None:
        _count_decision(rt, batch, out.ticket.event.jurisdiction.value, out.decision)
    w = out.work_order
    if w is not None:
        batch.count(rt.metrics.work_orders.labels(w.jurisdiction.value, w.lead_unit).inc)
        body = w.model_dump_json().encode()  # one body for the SLA topic and every unit's copy
        msgs.append(rt.out(w, "workorders", w.ticket_id, ce_id=w.work_order_id, subject=w.ticket_id,
                           time=w.dispatched_at, body=body))
        recipients = dict.fromkeys([w.lead_unit, *w.cooperating_units, *filter(None, [w.territorial_unit])])
        for unit in recipients:
            code = _unit_code(router, w.jurisdiction.value, unit)
            if code is None:
                continue
            msgs.append(rt.out(w, unit_topic(rt.settings.topic_prefix, code), w.ticket_id,
                               ce_id=f"{w.work_order_id}@{code}", subject=w.ticket_id, time=w.dispatched_at,
                               body=body))
    if out.repeat is not None:
        r = out.repeat
        # to the SLA service on the topic that opened the ticket there, so it is read after the ticket exists
        sla_topic = "workorders" if out.ticket.dispatch_seq > 0 else "triage"
        body = r.model_dump_json().encode()
        msgs.append(rt.out(r, sla_topic, r.ticket_id, ce_id=f"repeat:{r.event_id}", subject=r.ticket_id,
                           time=r.occurred_at, body=body))
        unit = out.ticket.current_unit
        code = _unit_code(router, r.jurisdiction.value, unit) if unit is not None else None
        if code is not None:
            msgs.append(rt.out(r, unit_topic(rt.settings.topic_prefix, code), r.ticket_id,
                               ce_id=f"repeat:{r.event_id}@{code}", subject=r.ticket_id, time=r.occurred_at,
                               body=body))
    if out.triage is not None:
        t = out.triage
        closed = t.decision.outcome == Outcome.close
        ce_id = f"{t.ticket_id}:close" if closed else f"{t.ticket_id}:{len(out.ticket.returns)}"
        msgs.append(rt.out(t, "triage", t.ticket_id, ce_id=ce_id, subject=t.ticket_id,
                           time=t.decided_at or t.opened_at))
    for e in out.escalations:
        msgs.append(IfNew(e.escalation_id, rt.out(e, "escalations", e.ticket_id, ce_id=e.escalation_id,
                                                  subject=e.ticket_id, time=e.at)))
    return msgs


def build(settings: Settings, router: Routes, metrics: Metrics | None = None) -> faust.App:
    app = make_app("router", settings, settings.router_port)
    rt = Runtime("router", app, settings, metrics or Metrics())
    accepted = app.topic(rt.topics["accepted"], value_type=bytes, value_serializer="raw", key_serializer="raw")
    returns = app.topic(rt.topics["returns"], value_type=bytes, value_serializer="raw", key_serializer="raw")
    rulings = app.topic(rt.topics["rulings"], value_type=bytes, value_serializer="raw", key_serializer="raw")

    def finish(batch: Batch, out: RouterOutput) -> list[Outgoing | IfNew]:
        """A redelivered input is counted and ignored; anything else is saved and its messages sent."""
        if out.duplicate:
            batch.count(rt.metrics.duplicates.labels("router").inc)
            return []
        store.save(batch, out)
        return _messages(rt, batch, router, out)

    async def on_repeat(batch: Batch, raw: bytes, m: faust.types.Message) -> list[Outgoing | IfNew]:
        report = decode(RepeatReport, raw)
        if isinstance(report, Rejection):
            return await rt.reject(batch, report, raw, m)
        ticket = await store.load_ticket(batch, report.ticket_id)
        waiting = await rt.held_before(batch, report.ticket_id, raw, m)  # in order behind the ticket's held repeats
        if waiting is not None:
            return waiting
        if ticket is None:  # the report it repeats may still be on its way (relayed late by a crashed intake)
            return await rt.hold(batch, report.ticket_id, unknown_ticket(report.ticket_id), raw, m)
        return finish(batch, dispatch.on_repeat(ticket, report))

    async def on_accepted(batch: Batch, raw: bytes, m: faust.types.Message) -> list[Outgoing | IfNew]:
        if header(m.headers, "ce_type") == TYPES[RepeatReport]:
            return await on_repeat(batch, raw, m)
        event = decode(IntakeEvent, raw)
        if isinstance(event, Rejection):
            return await rt.reject(batch, event, raw, m)
        return finish(batch, dispatch.decide(await store.load_ticket(batch, event.event_id), event, router))

    async def on_return(batch: Batch, raw: bytes, m: faust.types.Message) -> list[Outgoing | IfNew]:
        update = decode(UnitUpdate, raw)
        if isinstance(update, Rejection):
            return await rt.reject(batch, update, raw, m)
        ticket = await store.load_ticket(batch, update.ticket_id)
        if ticket is None:
            return await rt.reject(batch, unknown_ticket(update.ticket_id), raw, m)
        out = dispatch.on_return(ticket, update, router, settings.max_returns)
        if not out.duplicate:
            batch.count(rt.metrics.returns.labels(ticket.event.jurisdiction.value, update.unit).inc)
        return finish(batch, out)

    async def on_ruling(batch: Batch, raw: bytes, m: faust.types.Message) -> list[Outgoing | IfNew]:
        ruling = decode(Ruling, raw)
        if not isinstance(ruling, Rejection):
            ruling = (rt.desk_signed(raw, m, "a ruling") or rt.dated_after_sending(ruling.occurred_at, m)
                      or ruling)
        if isinstance(ruling, Rejection):
            return await rt.reject(batch, ruling, raw, m)
        ticket = await store.load_ticket(batch, ruling.ticket_id)
        if ticket is None:  # the desk rules on items of the triage topic, which the router sends after saving
            return await rt.reject(batch, unknown_ticket(ruling.ticket_id), raw, m)
        out = dispatch.on_ruling(ticket, ruling, router)
        if isinstance(out, Rejection):
            return await rt.reject(batch, out, raw, m)
        return finish(batch, out)

    def latency(m: faust.types.Message) -> Callable[[], None] | None:
        received = received_seconds(m.headers)
        if received is None:
            return None
        return lambda: rt.metrics.dispatch_latency.observe(max(time.time() - received, 0.0))

    @app.agent(accepted, name="route")
    async def route(stream: faust.StreamT) -> None:
        await rt.consume(stream, on_accepted, after=latency, prefetch=store.prefetch)

    @app.agent(returns, name="redispatch")
    async def redispatch(stream: faust.StreamT) -> None:
        await rt.consume(stream, on_return, prefetch=store.prefetch)

    @app.agent(rulings, name="rule")
    async def rule(stream: faust.StreamT) -> None:
        await rt.consume(stream, on_ruling, prefetch=store.prefetch)

    rt.warn_if_desk_unsigned()
    rt.held_handlers[rt.topics["accepted"]] = on_accepted
    rt.held_tickets_table = store.TICKETS.table
    rt.hold_waits_for = (rt.topics["accepted"],)  # the topic that opens the router's tickets

    app.hotline_runtime = rt  # type: ignore[attr-defined]
    return app
