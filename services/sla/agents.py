"""The SLA worker: work orders, triage items and unit updates in; escalations, returns and dead letters out.

Time: with ``HOTLINE_SLA_CLOCK=wall`` (the default) a timer sweeps for due escalations every
``sla_sweep_seconds``, judging them ``sla_allowed_lateness_seconds`` behind the wall clock so that updates
in flight still count. With ``ticks`` the clock moves only when a ClockTick arrives on the clock topic
(the demo and the tests use that to run months of event time in a minute).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import faust

from schemas import ClockTick, Jurisdiction, Escalation, RepeatReport, TriageItem, UnitUpdate, WorkOrder
from services.domain import deadlines, lifecycle, sla
from services.domain.campaigns import (Campaign, CampaignReport, advance as advance_campaign,
                                      evaluation_times, judged_at, questions)
from services.domain.lifecycle import Applied, Duplicate
from services.domain.sla import SlaRules
from services.domain.validation import Rejection, decode, unknown_ticket
from services.platform.batch import Batch, IfNew, escalation_row
from services.platform.codec import TYPES, Outgoing, header
from services.platform.db import write_outbox
from services.platform.logging import get_logger
from services.platform.metrics import Metrics
from services.platform import unit_signature
from services.platform.settings import ConfigurationError, Settings
from services.platform.unit_signature import UnitKeys
from services.platform.worker import Runtime, make_app
from services.sla import store

log = get_logger(__name__)
SWEEP_BATCH = 500  # due tickets per sweep transaction
CAMPAIGN_CHUNK = 31  # scheduled campaign evaluations per transaction when catching up (a month of daily ones)
BACKFILL_BUDGET_SECONDS = 2.0  # longest a call of ensure_facts spends computing old tickets' facts


def _unit_keys(settings: Settings, rules: SlaRules) -> UnitKeys | None:
    """The units that sign their updates (``HOTLINE_UNIT_KEYS_FILE``), or None when no unit does."""
    if not settings.unit_keys_file:
        return None
    try:
        return UnitKeys.load(Path(settings.unit_keys_file), rules.units)
    except ValueError as exc:
        raise ConfigurationError([str(exc)]) from None


def build(settings: Settings, rules: SlaRules, metrics: Metrics | None = None) -> faust.App:
    app = make_app("sla", settings, settings.sla_port)
    rt = Runtime("sla", app, settings, metrics or Metrics())
    t = rt.topics
    unit_keys = _unit_keys(settings, rules)

    def topic(name: str) -> faust.TopicT:
        return app.topic(t[name], value_type=bytes, value_serializer="raw", key_serializer="raw")

    async def on_repeat(batch: Batch, raw: bytes, m: faust.types.Message) -> list[Outgoing]:
        report = decode(RepeatReport, raw)
        if isinstance(report, Rejection):
            return await rt.reject(batch, report, raw, m)
        before = await store.load(batch, report.ticket_id)
        result = sla.on_repeat(before, report, rules)
        if result is None:  # the ticket's work order or triage item may still be on its way
            return await rt.hold(batch, report.ticket_id, unknown_ticket(report.ticket_id), raw, m)
        if not isinstance(result, Duplicate):
            store.stage(batch, result, rules)
        return []

    async def on_work_order(batch: Batch, raw: bytes, m: faust.types.Message) -> list[Outgoing]:
        if header(m.headers, "ce_type") == TYPES[RepeatReport]:
            return await on_repeat(batch, raw, m)
        order = decode(WorkOrder, raw)
        if isinstance(order, Rejection):
            return await rt.reject(batch, order, raw, m)
        before = await store.load(batch, order.ticket_id)
        result = sla.on_work_order(before, order, rules)
        if not isinstance(result, Duplicate):
            store.stage(batch, result, rules)
        return []

    async def on_triage(batch: Batch, raw: bytes, m: faust.types.Message) -> list[Outgoing]:
        if header(m.headers, "ce_type") == TYPES[RepeatReport]:  # a repeat of a ticket never dispatched
            return await on_repeat(batch, raw, m)
        item = decode(TriageItem, raw)
        if isinstance(item, Rejection):
            return await rt.reject(batch, item, raw, m)
        before = await store.load(batch, item.ticket_id)
        result = sla.on_triage(before, item)
        if not isinstance(result, Duplicate):
            store.stage(batch, result, rules)
        return []

    async def on_update(batch: Batch, raw: bytes, m: faust.types.Message) -> list[Outgoing]:
        update = decode(UnitUpdate, raw)
        if isinstance(update, Rejection):
            batch.count(rt.metrics.updates.labels("unknown", "rejected").inc)
            return await rt.reject(batch, update, raw, m)
        # a desk's step without its signature, a unit's with a wrong one (each judged again when a held update is
        # retried, with the keys of the moment); then one dated after it was sent (a held input has no timestamp)
        desk_work = lifecycle.DESK_WORK.get(update.action)
        refused = ((rt.desk_signed(raw, m, desk_work) if desk_work
                    else unit_signature.verify(unit_keys, raw, getattr(m, "headers", None), update.unit))
                   or rt.dated_after_sending(update.occurred_at, m))
        if refused is not None:
            batch.count(rt.metrics.updates.labels(update.action.value, "rejected").inc)
            return await rt.reject(batch, refused, raw, m)
        before = await store.load(batch, update.ticket_id)
        waiting = await rt.held_before(batch, update.ticket_id, raw, m)  # in order behind the ticket's held inputs
        if waiting is not None:
            return waiting
        result = sla.on_update(before, update, rules)
        if before is not None and not desk_work and not isinstance(result, Duplicate):
            # a unit's update: from the unit it names, of the ticket's district, signed if that unit must sign (a
            # copy of an update already applied changes nothing, whatever its headers)
            refused = unit_signature.for_ticket(unit_keys, getattr(m, "headers", None), before.jurisdiction,
                                                update.unit)
            if refused is not None:
                batch.count(rt.metrics.updates.labels(update.action.value, "rejected").inc)
                return await rt.reject(batch, refused, raw, m)
        if isinstance(result, Rejection):
            if sla.may_be_early(before, update, result):
                out = await rt.hold(batch, update.ticket_id, result, raw, m)  # [] while held, the dead letter after
            else:
                out = await rt.reject(batch, result, raw, m)
            if out:  # a held input counts once it is dead-lettered or applied (hotline_held_inputs meanwhile)
                batch.count(rt.metrics.updates.labels(update.action.value, "rejected").inc)
            return out
        if isinstance(result, Duplicate):
            batch.count(rt.metrics.duplicates.labels("sla").inc)
            return []
        batch.count(rt.metrics.updates.labels(update.action.value, "applied").inc)
        store.stage(batch, result.state, rules)
        if isinstance(result, Applied) and result.redispatch:
            return [rt.out(update, "returns", update.ticket_id, ce_id=update.event_id, subject=update.ticket_id,
                           time=update.occurred_at)]
        return []

    async def sweep(now: datetime) -> int:
        """Emit every escalation due by ``now``: tickets first, then scheduled campaign evaluations."""
        pool = await rt.pool()
        emitted = 0
        swept: set[str] = set()
        while True:
            ids, rows = await _sweep_batch(pool, now)
            if rows:
                emitted += len(rows)
                await rt.publish(rows)
            if not ids or ids <= swept:  # nothing due, all due tickets locked by another worker, or no progress
                break
            swept |= ids
        if rules.campaigns.campaigns and await ensure_facts():  # campaigns count stored facts, once all are there
            for campaign in rules.campaigns.campaigns:
                more = True
                while more:
                    rows, more = await _evaluate_campaign(pool, campaign, now)
                    if rows:
                        emitted += len(rows)
                        await rt.publish(rows)
        rt.metrics.sla_clock.set(now.timestamp())
        for year in sorted(rules.calendar.fallback_years):
            if not rt.metrics.calendar_fallback.labels(str(year))._value.get():
                log.warning("calendar_fallback", year=year, detail="no holiday data: weekends and statutory holidays only")
            rt.metrics.calendar_fallback.labels(str(year)).set(1)
        return emitted

    async def _sweep_batch(pool: asyncpg.Pool, now: datetime) -> tuple[set[str], list[tuple[int, Outgoing]]]:
        """One transaction over up to SWEEP_BATCH due tickets (those another worker holds are skipped): their due
        escalations are inserted in one statement and published if new, the tickets written once each."""
        async with pool.acquire() as conn:
            async with conn.transaction():
                batch = Batch(conn)
                due = await store.lock_due(batch, now, SWEEP_BATCH)
                out: list[Outgoing | IfNew] = []
                for before in due:
                    state, found, upcoming = sla.sweep(before, now, rules)
                    store.stage(batch, state, rules, next_check=upcoming)
                    out.extend(escalate(batch, found))
                rows = await write_outbox(conn, "sla", await batch.flush(out))
            batch.committed()
            return {t.ticket_id for t in due}, rows

    def escalate(batch: Batch, found: list[Escalation]) -> list[IfNew]:
        """Queue the escalations' rows; each is published (and counted) only if its id is new."""
        out = []
        for e in found:
            batch.escalation(escalation_row(e))
            message = rt.out(e, "escalations", e.ticket_id or e.campaign_id, ce_id=e.escalation_id,
                             subject=e.ticket_id or e.campaign_id, time=e.at)
            out.append(IfNew(e.escalation_id, message, counted(e)))
        return out

    def counted(e: Escalation) -> Callable[[], None]:
        return lambda: rt.metrics.escalations.labels(e.kind.value, str(e.level), e.jurisdiction or "").inc()

    async def _evaluate_campaign(pool: asyncpg.Pool, campaign: Campaign,
                                 now: datetime) -> tuple[list[tuple[int, Outgoing]], bool]:
        """The campaign's scheduled evaluations due by ``now``, at most CAMPAIGN_CHUNK of them (True: more are
        due), over counts of the stored facts (two queries for the whole chunk)."""
        async with pool.acquire() as conn, conn.transaction():
            state = await store.load_campaign(conn, campaign.id)
            if state is None:
                return [], False
            instants = evaluation_times(campaign, state.last_evaluated_at, now)
            if not instants:
                return [], False
            chunk = instants[:CAMPAIGN_CHUNK]
            counts = await store.campaign_counts(conn, campaign.id, questions(campaign, chunk))
            before = len(state.history)
            state, found = advance_campaign(campaign, state, counts, judged_at(campaign, chunk[-1]))
            new_reports = state.history[before:]
            await store.save_campaign(conn, state, new_reports)
            batch = Batch(conn)
            out = escalate(batch, found)
            rows = await write_outbox(conn, "sla", await batch.flush(out))
        batch.committed()
        if new_reports:  # only once committed: a rolled-back evaluation must not reach the gauges
            show_campaign(new_reports[-1])
        return rows, len(instants) > len(chunk)

    facts = {"ready": False}
    facts_lock = asyncio.Lock()

    async def ensure_facts() -> bool:
        """True once every ticket's stored facts are current. After an upgrade (or a change of the campaign
        definitions) this computes old tickets' facts a batch per transaction, for at most
        BACKFILL_BUDGET_SECONDS per call; the next call goes on."""
        if facts["ready"]:
            return True
        async with facts_lock:
            pool = await rt.pool()
            deadline = time.monotonic() + BACKFILL_BUDGET_SECONDS
            while not facts["ready"] and time.monotonic() < deadline:
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        facts["ready"] = await store.backfill_facts(conn, rules.campaigns)
                except asyncpg.exceptions.DeadlockDetectedError:
                    break  # a handler held one of the tickets; the next call goes on from the same place
            if not facts["ready"]:
                log.info("facts_backfill_pending")
        return facts["ready"]

    shown: dict[str, datetime] = {}  # campaign id -> instant of the evaluation its gauges show

    def show_campaign(report: CampaignReport) -> None:
        """Campaign gauges. Once the deadline has been judged (met / missed) the projection is withdrawn, so an
        at-risk alert does not keep firing for a campaign that is over; rate and target stay for the charts. A
        report older than the one shown (read before this replica's own evaluation committed) is ignored."""
        cid = report.campaign_id
        if cid in shown and report.at < shown[cid]:
            return
        shown[cid] = report.at
        rt.metrics.campaign_rate.labels(cid).set(report.rate)
        rt.metrics.campaign_target.labels(cid).set(report.target)
        rt.metrics.campaign_enrolled.labels(cid).set(report.enrolled)
        rt.metrics.campaign_resolved.labels(cid).set(report.resolved)
        rt.metrics.campaign_at_risk.labels(cid).set(1 if report.status == "at_risk" else 0)  # the domain's verdict
        if report.status in ("met", "missed", "insufficient_data"):  # no projection to show
            try:
                rt.metrics.campaign_projected.remove(cid)
            except KeyError:
                pass
        else:
            rt.metrics.campaign_projected.labels(cid).set(report.projected_rate)

    async def on_tick(batch: Batch, raw: bytes, m: faust.types.Message) -> list[Outgoing]:
        tick = decode(ClockTick, raw)
        if isinstance(tick, Rejection):
            return await rt.reject(batch, tick, raw, m)
        await store.set_clock(batch.conn, tick.now)
        return []

    def agent(topic_name: str, handler) -> None:  # type: ignore[no-untyped-def]
        @app.agent(topic(topic_name), name=f"sla-{topic_name}")
        async def consume(stream: faust.StreamT) -> None:
            await rt.consume(stream, handler, prefetch=store.prefetch)

    agent("workorders", on_work_order)
    agent("triage", on_triage)
    agent("updates", on_update)
    rt.held_handlers.update({t["workorders"]: on_work_order, t["triage"]: on_triage, t["updates"]: on_update})
    rt.held_tickets_table = store.TICKETS.table
    rt.hold_waits_for = (t["workorders"], t["triage"])  # the topics that open the SLA worker's tickets

    rt.warn_if_desk_unsigned()
    unlisted = unit_keys.unlisted() if unit_keys is not None else sorted(rules.units)
    if unlisted:
        log.warning("unit_updates_unauthenticated", units=len(unlisted), of=len(rules.units),
                    by_jurisdiction=dict(Counter(rules.units[code][0] for code in unlisted)),
                    detail="these units' updates are accepted from whoever writes their name (HOTLINE_UNIT_KEYS_FILE "
                           "lists the units that sign; `hotline unit-keys` makes one)")
    sweep_lock = asyncio.Lock()

    async def sweep_now() -> None:
        if sweep_lock.locked():
            return
        async with sweep_lock:
            pool = await rt.pool()
            if settings.sla_clock == "ticks":
                async with pool.acquire() as conn:
                    now = await store.clock_now(conn)
                if now is None:
                    return
            else:
                now = datetime.now(UTC) - timedelta(seconds=settings.sla_allowed_lateness_seconds)
            try:
                await sweep(now)
            except Exception:
                log.exception("sweep_failed")

    if settings.sla_clock == "ticks":
        @app.agent(topic("clock"), name="sla-clock")
        async def clock(stream: faust.StreamT) -> None:
            async for event in stream.events():
                raw = event.value if isinstance(event.value, bytes) else b""
                await rt.complete(rt.process(event, lambda batch, raw=raw, m=event.message: on_tick(batch, raw, m)))
                await sweep_now()

    async def current_time() -> datetime | None:
        if settings.sla_clock == "ticks":
            async with (await rt.pool()).acquire() as conn:
                return await store.clock_now(conn)
        return datetime.now(UTC)

    async def refresh_scorecards() -> None:
        """Unit scorecards, open / overdue work, the triage backlog and the campaign gauges (see
        services/domain/scorecards). Every replica sets the campaign gauges from the stored evaluations here: only
        the replica holding a campaign's lock evaluates it, and the others' gauges would otherwise stay as they
        were when they last did."""
        now = await current_time()
        if now is None:
            return
        try:
            ready = await ensure_facts()  # until every ticket's facts are stored, the unit gauges wait
            async with (await rt.pool()).acquire() as conn:  # one GROUP BY over the stored unit facts
                since = now - timedelta(days=settings.scorecard_window_days)
                scores = await store.unit_scores(conn, now, since) if ready else []
                backlog = await store.triage_backlog(conn)
        except Exception as exc:  # gauges are refreshed again at the next tick
            log.warning("scorecards_skipped", error=type(exc).__name__)
            return
        try:  # apart from the scorecards: a campaign read that fails must not blank the unit gauges
            async with (await rt.pool()).acquire() as conn:
                reports = await store.latest_campaign_reports(conn, [c.id for c in rules.campaigns.campaigns])
        except Exception as exc:
            log.warning("campaign_gauges_skipped", error=type(exc).__name__)
            reports = []
        for report in reports:
            show_campaign(report)
        if ready:  # until the facts are current the unit gauges keep what they showed
            rt.metrics.show_unit_scores(scores)
        for jurisdiction in Jurisdiction:
            rt.metrics.triage_backlog.labels(jurisdiction.value).set(backlog.get(jurisdiction.value, 0))

    @app.task
    async def facts_at_start() -> None:
        """Check the stored facts as the worker starts: on a new database (no ticket yet) this marks them
        current at once, instead of a later backfill recomputing the facts every save has just written."""
        try:
            await ensure_facts()
        except Exception as exc:  # the timers call it again
            log.warning("facts_check_deferred", error=type(exc).__name__)

    # the wall-mode clock runs this far behind on purpose; HotlineSlaClockStalled allows for it
    rt.metrics.sla_lateness.set(settings.sla_allowed_lateness_seconds if settings.sla_clock == "wall" else 0)
    # the deadline escalations as 0 from the start: a labelled counter has no series until its first increment, and
    # a series first seen above 0 (a sweep that raises many at once) would be no increase() to HotlineResolveOverdueSurge
    for jurisdiction in Jurisdiction:
        for kind, levels in deadlines.raised_levels(rules.policies.policies()).items():
            for level in levels:
                rt.metrics.escalations.labels(kind.value, str(level), jurisdiction.value)
    for campaign in rules.campaigns.campaigns:  # from the definitions, on every replica: the burn-up's target line
        rt.metrics.campaign_target.labels(campaign.id).set(campaign.target)
        rt.metrics.campaign_start.labels(campaign.id).set(campaign.start.timestamp())
        rt.metrics.campaign_deadline.labels(campaign.id).set(campaign.deadline.timestamp())
        if campaign.planned_cohort is not None:
            rt.metrics.campaign_planned.labels(campaign.id).set(campaign.planned_cohort)

    app.timer(settings.sla_sweep_seconds)(sweep_now)
    app.timer(settings.scorecard_seconds)(refresh_scorecards)
    app.hotline_refresh_scorecards = refresh_scorecards  # type: ignore[attr-defined]
    app.hotline_runtime = rt  # type: ignore[attr-defined]
    app.hotline_sweep = sweep  # type: ignore[attr-defined]
    return app
