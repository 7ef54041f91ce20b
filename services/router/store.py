"""PostgreSQL persistence of the router's decisions, through the batch's identity map and queued writes
(idempotent: upserts and inserts that ignore conflicts)."""

from __future__ import annotations

from typing import Any

from services.domain.dispatch import RouterOutput, RouterTicket
from services.platform.batch import Batch, StateTable, escalation_row

UPSERT_TICKET = """INSERT INTO router_tickets (ticket_id, jurisdiction, state) VALUES ($1, $2, $3)
                   ON CONFLICT (ticket_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()"""
INSERT_DECISION = """INSERT INTO routing_decisions (ticket_id, seq, outcome, lead_unit, category, decision, decided_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"""
INSERT_WORK_ORDER = """INSERT INTO work_orders (work_order_id, ticket_id, dispatch_seq, jurisdiction, lead_unit, category,
                       dispatched_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"""


TICKETS = StateTable("router_tickets", RouterTicket, ("ticket_id", "event_id"))  # a repeat's ticket, else the event
prefetch = TICKETS.prefetch
load_ticket = TICKETS.load


def _flush(batch: Batch, tickets: dict[str, tuple[Any, Any]]) -> None:
    for ticket_id, (_, ticket) in tickets.items():
        batch.write(UPSERT_TICKET, (ticket_id, ticket.event.jurisdiction.value, ticket.model_dump_json()),
                    key=ticket_id)


def save(batch: Batch, out: RouterOutput) -> None:
    ticket = out.ticket
    TICKETS.put(batch, ticket.event.event_id, ticket, _flush)
    if out.decision is not None:
        d = out.decision
        batch.write(INSERT_DECISION, (ticket.event.event_id, out.decision_seq, d.outcome.value, d.lead_unit,
                                      d.category, d.model_dump_json(), out.decided_at))
    if out.work_order is not None:
        w = out.work_order
        batch.write(INSERT_WORK_ORDER, (w.work_order_id, w.ticket_id, w.dispatch_seq, w.jurisdiction.value,
                                        w.lead_unit, w.category, w.dispatched_at, w.model_dump_json()))
    for e in out.escalations:
        batch.escalation(escalation_row(e))
