"""PostgreSQL persistence of ticket lifecycles, escalations and campaign states, and of the per-ticket facts
(``campaign_members``, ``campaign_spans``, ``unit_facts``) that campaign evaluations and scorecards count."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from services.domain.campaigns import (CampaignBook, CampaignReport, CampaignState, CohortAnswers, CohortQuestions,
                                       cohort_facts)
from services.domain import sla
from services.domain.scorecards import UnitFact, UnitScore, unit_facts
from services.domain.sla import SlaRules
from services.domain.tickets import OPEN_FOR_UNIT, REDIRECT_REVIEW, TicketState, Transition
from services.platform.batch import Batch, StateTable
from services.platform.logging import get_logger

log = get_logger(__name__)

UPSERT_TICKET = """INSERT INTO tickets (ticket_id, jurisdiction, source, category, status, unit, campaigns, opened_at,
                   next_check, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (ticket_id) DO UPDATE SET category = EXCLUDED.category, status = EXCLUDED.status,
                     unit = EXCLUDED.unit, next_check = EXCLUDED.next_check, state = EXCLUDED.state,
                     updated_at = now()"""
UPSERT_TRANSITION = """INSERT INTO transitions (ticket_id, update_id, seq, action, from_status, to_status, unit, at,
                       reason, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                       ON CONFLICT (ticket_id, update_id) DO UPDATE
                       SET seq = EXCLUDED.seq, from_status = EXCLUDED.from_status, to_status = EXCLUDED.to_status"""


TICKETS = StateTable("tickets", TicketState, ("ticket_id",))
prefetch = TICKETS.prefetch  # the tickets of a batch of work orders, triage items, repeats and updates
load = TICKETS.load


_NEXT_CHECK = "next_check"


def stage(batch: Batch, state: TicketState, rules: SlaRules, *, next_check: datetime | None | bool = True) -> None:
    """The ticket's new state, written when the batch ends (once per ticket, however many inputs touched it):
    the ticket row with its next check (computed then, unless given), the new or renumbered transitions, and
    the changed fact rows."""
    checks: dict[str, datetime | None | bool] = batch.scratch.setdefault(_NEXT_CHECK, {})
    checks[state.ticket_id] = next_check

    def flush(batch: Batch, tickets: dict[str, tuple[Any, Any]]) -> None:
        campaign_facts, unit_changes = [], []
        for ticket_id, (before, latest) in tickets.items():
            given = checks.get(ticket_id, True)
            upcoming = sla.next_check(latest, rules) if given is True else given
            batch.write(UPSERT_TICKET, _ticket_row(latest, upcoming), key=ticket_id)  # type: ignore[arg-type]
            for t in new_transitions(latest.transitions, before.transitions if before else None):
                batch.write(UPSERT_TRANSITION, _transition_row(ticket_id, t), key=(ticket_id, t.update_id))
            new = ticket_facts(latest, rules.campaigns)
            old = ticket_facts(before, rules.campaigns) if before is not None else None
            if old is None or old.campaign_part() != new.campaign_part():
                campaign_facts.append(new)
            if old is None or old.unit_part() != new.unit_part():
                unit_changes.append(new)
        for sql, args in [*fact_statements(campaign_facts, units=False), *fact_statements(unit_changes, campaigns=False)]:
            batch.write(sql, args)

    TICKETS.put(batch, state.ticket_id, state, flush)


def _ticket_row(state: TicketState, next_check: datetime | None) -> tuple[object, ...]:
    return (state.ticket_id, state.jurisdiction, state.source, state.category, state.status.value, state.unit,
            state.campaigns, state.opened_at, next_check, state.model_dump_json())


def _transition_row(ticket_id: str, t: Transition) -> tuple[object, ...]:
    return (ticket_id, t.update_id, t.seq, t.action, t.from_status.value if t.from_status else None,
            t.to_status.value, t.unit, t.at, t.reason, t.note)


def new_transitions(transitions: list[Transition], before: list[Transition] | None) -> list[Transition]:
    """Transitions new or renumbered since ``before`` (a late input can renumber earlier rows, the history being
    kept in event-time order)."""
    known = {(t.update_id, t.seq, t.from_status, t.to_status) for t in before or ()}
    return [t for t in transitions if (t.update_id, t.seq, t.from_status, t.to_status) not in known]


async def lock_due(batch: Batch, now: datetime, limit: int) -> list[TicketState]:
    """Up to ``limit`` tickets with an escalation due by ``now``, locked; tickets another worker has locked are
    skipped. They are recorded in the batch as loaded."""
    rows = await batch.conn.fetch(
        """SELECT ticket_id, state::text AS state FROM tickets WHERE next_check <= $1 ORDER BY next_check LIMIT $2
           FOR UPDATE SKIP LOCKED""", now, limit)
    states = [TicketState.model_validate_json(r["state"]) for r in rows]
    for state in states:
        TICKETS.loaded(batch, state.ticket_id, state)
    return states


async def due_ticket_ids(conn: asyncpg.Connection, now: datetime, limit: int = 500) -> list[str]:
    rows = await conn.fetch(
        "SELECT ticket_id FROM tickets WHERE next_check <= $1 ORDER BY next_check LIMIT $2", now, limit)
    return [r["ticket_id"] for r in rows]


async def load_campaign(conn: asyncpg.Connection, campaign_id: str) -> CampaignState | None:
    """The campaign's state, locked for this transaction; None if another worker holds it."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", f"campaign:{campaign_id}"):
        return None
    state = await conn.fetchval("SELECT state FROM campaign_state WHERE campaign_id = $1", campaign_id)
    return CampaignState.model_validate(state) if state is not None else CampaignState(campaign_id=campaign_id)


async def latest_campaign_reports(conn: asyncpg.Connection, campaign_ids: list[str]) -> list[CampaignReport]:
    """The latest stored evaluation of each of these campaigns, read without their locks (for gauges)."""
    rows = await conn.fetch("SELECT campaign_id, state FROM campaign_state WHERE campaign_id = ANY($1::text[]) "
                            "ORDER BY 1", campaign_ids)
    reports = []
    for row in rows:
        try:  # one unreadable row (e.g. written by another version) must not hide the other campaigns
            state = CampaignState.model_validate(row["state"])
        except ValidationError as exc:
            log.warning("campaign_state_unreadable", campaign_id=row["campaign_id"], error=str(exc)[:300])
            continue
        if state.history:
            reports.append(state.history[-1])
    return reports


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


async def triage_backlog(conn: asyncpg.Connection) -> dict[str, int]:
    """Tickets waiting for the dispatch desk, per jurisdiction: in triage, or redirected for its review (the first
    step of the history is a redirect noted ``redirect_review``; the desk's ruling moves the ticket on)."""
    rows = await conn.fetch(
        """SELECT jurisdiction, count(*) AS n FROM tickets WHERE status = 'triage' OR (status = 'redirected'
           AND state -> 'transitions' -> 0 ->> 'action' = 'redirect' AND state -> 'transitions' -> 0 ->> 'note' = $1)
           GROUP BY 1""", REDIRECT_REVIEW)
    return {r["jurisdiction"]: int(r["n"]) for r in rows}


# --- per-ticket facts --------------------------------------------------------------------------------------------

# bump when cohort_facts or unit_facts change: every ticket's facts are then computed again
FACTS_VERSION = 2  # 2: a ticket the dispatch desk closed is not resolved (化解) in a campaign


@dataclass(frozen=True)
class TicketFacts:
    """A ticket's rows in the fact tables, computed by the domain (``cohort_facts``, ``unit_facts``)."""

    ticket_id: str
    members: tuple[tuple[str, datetime], ...]  # (campaign_id, opened_at)
    spans: tuple[tuple[str, datetime, datetime, datetime | None], ...]  # (campaign_id, opened_at, from, until)
    opened_at: datetime
    ticket_open: bool
    units: tuple[UnitFact, ...]

    def campaign_part(self) -> tuple[object, ...]:
        return self.members, self.spans

    def unit_part(self) -> tuple[object, ...]:
        return self.opened_at, self.ticket_open, self.units


def ticket_facts(state: TicketState, book: CampaignBook) -> TicketFacts:
    members: list[tuple[str, datetime]] = []
    spans: list[tuple[str, datetime, datetime, datetime | None]] = []
    for campaign in book.campaigns:
        facts = cohort_facts(campaign, state)
        if facts is not None:
            members.append((campaign.id, facts.opened_at))
            spans.extend((campaign.id, facts.opened_at, start, end) for start, end in facts.spans)
    return TicketFacts(state.ticket_id, tuple(members), tuple(spans), state.opened_at, state.status in OPEN_FOR_UNIT,
                       tuple(unit_facts(state)))


async def write_facts(conn: asyncpg.Connection, facts: Sequence[TicketFacts], *, campaigns: bool = True,
                      units: bool = True) -> None:
    """Delete the tickets' rows and insert their facts: one statement per part, idempotent."""
    for sql, args in fact_statements(facts, campaigns=campaigns, units=units):
        await conn.execute(sql, *args)


def fact_statements(facts: Sequence[TicketFacts], *, campaigns: bool = True,
                    units: bool = True) -> list[tuple[str, tuple[object, ...]]]:
    """The statements (SQL and arguments) that replace the tickets' fact rows."""
    ids = [f.ticket_id for f in facts]
    out: list[tuple[str, tuple[object, ...]]] = []
    if campaigns and ids:
        members, spans = campaign_rows(facts)
        out.append((
            """WITH gone_members AS (DELETE FROM campaign_members WHERE ticket_id = ANY($1::text[])),
                    gone_spans AS (DELETE FROM campaign_spans WHERE ticket_id = ANY($1::text[])),
                    new_members AS (INSERT INTO campaign_members (ticket_id, campaign_id, opened_at)
                                    SELECT * FROM unnest($2::text[], $3::text[], $4::timestamptz[]))
               INSERT INTO campaign_spans (ticket_id, campaign_id, opened_at, done_from, done_until)
               SELECT * FROM unnest($5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])""",
            (ids, *_columns(members, 3), *_columns(spans, 5))))
    if units and ids:
        out.append((
            f"""WITH gone AS (DELETE FROM unit_facts WHERE ticket_id = ANY($1::text[]))
                INSERT INTO unit_facts ({", ".join(UNIT_FACT_COLUMNS)})
                SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::boolean[], $7::text[],
                                     $8::timestamptz[], $9::timestamptz[], $10::boolean[], $11::timestamptz[],
                                     $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::boolean[],
                                     $16::boolean[])""",
            (ids, *_columns(unit_rows(facts), len(UNIT_FACT_COLUMNS)))))
    return out


UNIT_FACT_COLUMNS = ("ticket_id", "jurisdiction", "unit", "opened_at", "ticket_open", "kind", "counts_from",
                     "counts_until", "dispatch", "ack_judged_from", "ack_in_time_from", "resolved_from", "on_time_from",
                     "satisfied", "reopened")


def campaign_rows(facts: Sequence[TicketFacts]) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Rows of ``campaign_members`` (ticket_id, campaign_id, opened_at) and ``campaign_spans`` (ticket_id,
    campaign_id, opened_at, done_from, done_until)."""
    return ([(f.ticket_id, *m) for f in facts for m in f.members], [(f.ticket_id, *s) for f in facts for s in f.spans])


def unit_rows(facts: Sequence[TicketFacts]) -> list[tuple[object, ...]]:
    """Rows of ``unit_facts`` in the order of UNIT_FACT_COLUMNS."""
    return [(f.ticket_id, u.jurisdiction, u.unit, f.opened_at, f.ticket_open, u.kind, u.at, u.until, u.dispatch,
             u.ack_judged_from, u.ack_in_time_from, u.resolved_from, u.on_time_from, u.satisfied, u.reopened)
            for f in facts for u in f.units]


def _columns(rows: list[tuple[object, ...]], width: int) -> list[list[object]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def facts_key(book: CampaignBook) -> str:
    """What the stored facts depend on besides the ticket: their version and who enrols how in which campaign."""
    spec = [FACTS_VERSION, [[c.id, c.jurisdiction, c.measure, c.selector, c.sources, c.settle_minutes] for c in book.campaigns]]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


BACKFILL_BATCH = 250  # tickets whose facts one backfill step recomputes, in one transaction


async def backfill_facts(conn: asyncpg.Connection, book: CampaignBook, limit: int = BACKFILL_BATCH) -> bool:
    """One step of computing the facts of tickets saved before they were stored (after the upgrade to migration
    002, or after the campaign definitions changed): up to ``limit`` tickets in id order, each locked like a save
    does. Returns True once every ticket is done. Tickets saved meanwhile write their own facts."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('facts_backfill'))")
    key = facts_key(book)
    row = await conn.fetchrow("SELECT facts_key, done_upto, complete FROM facts_backfill WHERE id = 1")
    if row is not None and row["facts_key"] == key and row["complete"]:
        return True
    upto = row["done_upto"] if row is not None and row["facts_key"] == key else ""
    rows = await conn.fetch(
        "SELECT ticket_id, state::text AS state FROM tickets WHERE ticket_id > $1 ORDER BY ticket_id LIMIT $2 "
        "FOR UPDATE", upto, limit)
    await write_facts(conn, [ticket_facts(TicketState.model_validate_json(r["state"]), book) for r in rows])
    complete = len(rows) < limit
    await conn.execute(
        """INSERT INTO facts_backfill (id, facts_key, done_upto, complete) VALUES (1, $1, $2, $3)
           ON CONFLICT (id) DO UPDATE SET facts_key = EXCLUDED.facts_key, done_upto = EXCLUDED.done_upto,
             complete = EXCLUDED.complete""", key, rows[-1]["ticket_id"] if rows else upto, complete)
    return complete


# --- counting ----------------------------------------------------------------------------------------------------


async def campaign_counts(conn: asyncpg.Connection, campaign_id: str, questions: CohortQuestions) -> CohortAnswers:
    """The answers to a campaign evaluation's questions from the campaign tables (two queries)."""
    cohort = await conn.fetch(
        """SELECT c.i,
                  (SELECT count(*) FROM campaign_members m WHERE m.campaign_id = $1 AND m.opened_at <= c.at) AS n,
                  (SELECT min(m.opened_at) FROM campaign_members m WHERE m.campaign_id = $1 AND m.opened_at <= c.at)
                    AS first
           FROM unnest($2::timestamptz[]) WITH ORDINALITY AS c(at, i)""", campaign_id, list(questions.cohort_at))
    done = await conn.fetch(
        """SELECT d.i,
                  (SELECT count(*) FROM campaign_spans s
                   WHERE s.campaign_id = $1 AND s.done_from <= d.at AND (s.done_until IS NULL OR s.done_until > d.at)
                     AND s.opened_at <= d.cohort_at) AS n
           FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS d(at, cohort_at, i)""",
        campaign_id, [at for at, _ in questions.done], [cohort_at for _, cohort_at in questions.done])
    by_cohort = {r["i"]: r for r in cohort}
    at_cohort = list(enumerate(questions.cohort_at, 1))
    return CohortAnswers({at: int(by_cohort[i]["n"]) for i, at in at_cohort},
                         {at: by_cohort[i]["first"] for i, at in at_cohort},
                         {pair: int(r["n"]) for pair, r in zip(questions.done, sorted(done, key=lambda r: r["i"]),
                                                               strict=True)})


# ``scorecards.compute`` at $1 over the tickets opened since $2 and every ticket still open for a unit, as one
# GROUP BY over the stored unit facts (``scorecards.tally`` in SQL). Each half of the window condition has its own
# index (migration 003): once the history outgrows the window, PostgreSQL combines them (a BitmapOr) and the closed
# tickets older than the window, most of a long history, are not read at all (benchmarks/scorecard_history.py).
UNIT_SCORES = """SELECT jurisdiction, unit,
              count(*) FILTER (WHERE kind = 'cycle' AND dispatch) AS dispatches,
              count(*) FILTER (WHERE ack_judged_from <= $1) AS ack_judged,
              count(*) FILTER (WHERE ack_in_time_from <= $1) AS ack_in_time,
              count(*) FILTER (WHERE kind = 'resolve_judged' AND (counts_until IS NULL OR counts_until > $1))
                AS resolve_judged,
              count(*) FILTER (WHERE resolved_from <= $1) AS resolved,
              count(*) FILTER (WHERE on_time_from <= $1) AS resolved_on_time,
              count(*) FILTER (WHERE kind = 'callback') AS callbacks,
              count(*) FILTER (WHERE kind = 'callback' AND satisfied) AS satisfied,
              count(*) FILTER (WHERE kind = 'return') AS returns,
              count(*) FILTER (WHERE kind IN ('callback', 'reopen') AND reopened) AS reopened,
              count(*) FILTER (WHERE kind = 'open') AS open,
              count(*) FILTER (WHERE kind = 'overdue' AND (counts_until IS NULL OR counts_until > $1)) AS overdue
       FROM unit_facts
       WHERE (counts_from IS NULL OR counts_from <= $1) AND (opened_at >= $2 OR ticket_open)
       GROUP BY jurisdiction, unit"""


async def unit_scores(conn: asyncpg.Connection, now: datetime, since: datetime) -> list[UnitScore]:
    """``scorecards.compute`` at ``now`` over the tickets opened since ``since`` and every ticket still open for
    a unit (``UNIT_SCORES``)."""
    rows = await conn.fetch(UNIT_SCORES, now, since)
    return sorted((UnitScore(**dict(r)) for r in rows), key=lambda s: (s.jurisdiction, s.unit))
