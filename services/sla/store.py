"""PostgreSQL persistence of ticket lifecycles, escalations and campaign states."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.domain.campaigns import CampaignReport, CampaignState
from services.domain.tickets import TicketState, Transition


async def load_ticket(conn: asyncpg.Connection, ticket_id: str, *, skip_locked: bool = False) -> TicketState | None:
    lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
    state = await conn.fetchval(f"SELECT state::text FROM tickets WHERE ticket_id = $1 {lock}", ticket_id)
    return TicketState.model_validate_json(state) if state is not None else None


async def save_ticket(conn: asyncpg.Connection, state: TicketState, next_check: datetime | None) -> None:
    await conn.execute(
        """INSERT INTO tickets (ticket_id, jurisdiction, source, category, status, unit, campaigns, opened_at,
           next_check, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (ticket_id) DO UPDATE SET category = EXCLUDED.category, status = EXCLUDED.status,
             unit = EXCLUDED.unit, next_check = EXCLUDED.next_check, state = EXCLUDED.state, updated_at = now()""",
        state.ticket_id, state.jurisdiction, state.source, state.category, state.status.value, state.unit,
        state.campaigns, state.opened_at, next_check, state.model_dump_json())


async def save_transitions(conn: asyncpg.Connection, ticket_id: str, transitions: list[Transition],
                           before: list[Transition] | None = None) -> None:
    """The audit trail: one row per transition. Only rows that are new or renumbered since ``before`` are
    written (a late input can renumber earlier rows, the history being kept in event-time order)."""
    known = {(t.update_id, t.seq, t.from_status, t.to_status) for t in before or ()}
    transitions = [t for t in transitions if (t.update_id, t.seq, t.from_status, t.to_status) not in known]
    if not transitions:
        return
    await conn.executemany(
        """INSERT INTO transitions (ticket_id, update_id, seq, action, from_status, to_status, unit, at, reason, note)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (ticket_id, update_id) DO UPDATE
           SET seq = EXCLUDED.seq, from_status = EXCLUDED.from_status, to_status = EXCLUDED.to_status""",
        [(ticket_id, t.update_id, t.seq, t.action, t.from_status.value if t.from_status else None, t.to_status.value,
          t.unit, t.at, t.reason, t.note) for t in transitions])


async def due_ticket_ids(conn: asyncpg.Connection, now: datetime, limit: int = 500) -> list[str]:
    rows = await conn.fetch(
        "SELECT ticket_id FROM tickets WHERE next_check <= $1 ORDER BY next_check LIMIT $2", now, limit)
    return [r["ticket_id"] for r in rows]


async def campaign_tickets(conn: asyncpg.Connection, campaign_id: str, everything: bool) -> list[TicketState]:
    if everything:
        rows = await conn.fetch("SELECT state::text AS state FROM tickets ORDER BY ticket_id")
    else:
        rows = await conn.fetch(
            "SELECT state::text AS state FROM tickets WHERE campaigns @> ARRAY[$1]::text[] ORDER BY ticket_id",
            campaign_id)
    return [TicketState.model_validate_json(r["state"]) for r in rows]


async def load_campaign(conn: asyncpg.Connection, campaign_id: str) -> CampaignState | None:
    """The campaign's state, locked for this transaction; None if another worker holds it."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", f"campaign:{campaign_id}"):
        return None
    state = await conn.fetchval("SELECT state FROM campaign_state WHERE campaign_id = $1", campaign_id)
    return CampaignState.model_validate(state) if state is not None else CampaignState(campaign_id=campaign_id)


async def save_campaign(conn: asyncpg.Connection, state: CampaignState, new_reports: list[CampaignReport]) -> None:
    trimmed = state.model_copy(update={"history": state.history[-1:]})  # full history lives in the table below
    await conn.execute(
        """INSERT INTO campaign_state (campaign_id, state) VALUES ($1, $2)
           ON CONFLICT (campaign_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()""",
        state.campaign_id, trimmed.model_dump_json())
    for report in new_reports:
        await conn.execute(
            "INSERT INTO campaign_evaluations (campaign_id, at, report) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            report.campaign_id, report.at, report.model_dump_json())


async def clock_now(conn: asyncpg.Connection) -> datetime | None:
    return await conn.fetchval("SELECT now FROM sla_clock WHERE id = 1")


async def set_clock(conn: asyncpg.Connection, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO sla_clock (id, now) VALUES (1, $1)
           ON CONFLICT (id) DO UPDATE SET now = GREATEST(sla_clock.now, EXCLUDED.now)""", now)


OPEN_STATUSES = ["dispatched", "acknowledged", "reopened"]


async def scorecard_tickets(conn: asyncpg.Connection, since: datetime) -> list[TicketState]:
    rows = await conn.fetch(
        "SELECT state::text AS state FROM tickets WHERE opened_at >= $1 OR status = ANY($2::text[])", since,
        OPEN_STATUSES)
    return [TicketState.model_validate_json(r["state"]) for r in rows]


async def triage_backlog(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT jurisdiction, count(*) AS n FROM tickets WHERE status = 'triage' GROUP BY 1")
    return {r["jurisdiction"]: int(r["n"]) for r in rows}
