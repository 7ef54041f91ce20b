"""The SLA worker's campaign gauges on the real embedded PostgreSQL, with two replicas sharing the database.

Only the replica that holds a campaign's lock evaluates it; every replica sets the campaign gauges from the stored
evaluation when it refreshes its gauges, so no replica keeps showing an old projection (``max by (campaign_id)``
in the rules would otherwise pick whichever is higher, hiding an at-risk projection behind an old one).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from services.domain.campaigns import CampaignReport, CampaignState, TicketCounts, evaluate
from services.platform.metrics import Metrics
from services.platform.settings import Settings
from services.sla import agents, store

pytestmark = pytest.mark.integration

PORTS = iter(range(19131, 19140))


def replica(dsn: str, rules: Any) -> tuple[Any, Metrics]:
    metrics = Metrics()
    settings = Settings(database_url=dsn, sla_clock="wall", sla_port=next(PORTS))
    return agents.build(settings, rules, metrics), metrics


def gauge(metrics: Metrics, name: str, campaign_id: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"campaign_id": campaign_id})


def report(campaign: Any, days: int, enrolled: int, resolved: int, projected: float, status: str) -> CampaignReport:
    return CampaignReport(campaign_id=campaign.id, at=campaign.start + timedelta(days=days), enrolled=enrolled,
                          resolved=resolved, rate=round(resolved / enrolled, 6), target=campaign.target,
                          deadline=campaign.deadline, planned_cohort=campaign.planned_cohort,
                          projected_rate=projected, needed_per_day=1.0, status=status)  # type: ignore[arg-type]


def test_every_replica_shows_the_stored_campaign_evaluation(database: str, rules: Any) -> None:
    campaign = rules.campaigns.campaigns[0]
    (a, metrics_a), (b, metrics_b) = replica(database, rules), replica(database, rules)

    async def evaluated(r: CampaignReport) -> None:
        """What the replica holding the lock stores after an evaluation (services/sla/agents.py)."""
        pool = await a.hotline_runtime.pool()
        async with pool.acquire() as conn, conn.transaction():
            state = await store.load_campaign(conn, r.campaign_id)
            assert state is not None
            state = CampaignState(campaign_id=r.campaign_id, last_evaluated_at=r.at, status=r.status, history=[r])
            await store.save_campaign(conn, state, [r])

    for metrics in (metrics_a, metrics_b):  # from the definitions, before any evaluation
        for c in rules.campaigns.campaigns:
            assert gauge(metrics, "hotline_campaign_target_ratio", c.id) == c.target
            assert gauge(metrics, "hotline_campaign_start_timestamp_seconds", c.id) == c.start.timestamp()
            assert gauge(metrics, "hotline_campaign_deadline_timestamp_seconds", c.id) == c.deadline.timestamp()
            assert gauge(metrics, "hotline_campaign_rate_ratio", c.id) is None
            assert gauge(metrics, "hotline_campaign_planned_cohort", c.id) == c.planned_cohort  # None: no number

    async def go() -> None:
        try:
            first = report(campaign, 20, 10, 9, 0.95, "on_track")
            await evaluated(first)
            for app in (a, b):
                await app.hotline_refresh_scorecards()
            for metrics in (metrics_a, metrics_b):
                assert gauge(metrics, "hotline_campaign_projected_rate_ratio", campaign.id) == 0.95
                assert gauge(metrics, "hotline_campaign_rate_ratio", campaign.id) == 0.9
                assert gauge(metrics, "hotline_campaign_enrolled", campaign.id) == 10
                assert gauge(metrics, "hotline_campaign_at_risk", campaign.id) == 0

            later = report(campaign, 40, 20, 9, 0.5, "at_risk")  # evaluated by replica a only
            await evaluated(later)
            await b.hotline_refresh_scorecards()
            assert gauge(metrics_b, "hotline_campaign_projected_rate_ratio", campaign.id) == 0.5
            assert gauge(metrics_b, "hotline_campaign_rate_ratio", campaign.id) == 0.45
            assert gauge(metrics_b, "hotline_campaign_enrolled", campaign.id) == 20
            assert gauge(metrics_b, "hotline_campaign_at_risk", campaign.id) == 1

            # a live campaign nobody is enrolled in yet: the domain has no evidence (insufficient_data), so the
            # at-risk gauge is 0, HotlineCampaignAtRisk stays quiet, and no projection is shown
            quiet = rules.campaigns.campaigns[1]
            empty = evaluate(quiet, TicketCounts(quiet, []), quiet.start + timedelta(days=20))
            assert empty.status == "insufficient_data"
            await evaluated(empty)
            await b.hotline_refresh_scorecards()
            assert gauge(metrics_b, "hotline_campaign_projected_rate_ratio", quiet.id) is None
            assert gauge(metrics_b, "hotline_campaign_at_risk", quiet.id) == 0

            over = report(campaign, (campaign.deadline - campaign.start).days, 20, 12, 0.6, "missed")
            await evaluated(over)
            await b.hotline_refresh_scorecards()
            assert gauge(metrics_b, "hotline_campaign_projected_rate_ratio", campaign.id) is None  # withdrawn once judged
            assert gauge(metrics_b, "hotline_campaign_rate_ratio", campaign.id) == 0.6
            assert gauge(metrics_b, "hotline_campaign_resolved", campaign.id) == 12
            assert gauge(metrics_b, "hotline_campaign_at_risk", campaign.id) == 0

            # one unreadable stored state (another version's, say) hides neither the other campaigns nor the units
            pool = await b.hotline_runtime.pool()
            await pool.execute("INSERT INTO campaign_state (campaign_id, state) VALUES ($1, $2)",
                               rules.campaigns.campaigns[2].id, '{"not": "a campaign state"}')
            later = report(campaign, (campaign.deadline - campaign.start).days + 1, 20, 13, 0.65, "missed")
            await evaluated(later)
            await b.hotline_refresh_scorecards()
            assert gauge(metrics_b, "hotline_campaign_resolved", campaign.id) == 13
            assert metrics_b.registry.get_sample_value("hotline_triage_backlog", {"jurisdiction": "qingpu"}) == 0
        finally:
            for app in (a, b):
                pool = app.hotline_runtime._pool
                if pool is not None:
                    await pool.close()

    asyncio.run(go())
