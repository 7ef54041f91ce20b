"""Prometheus metrics: every collector declared once, against a registry passed in, behind named methods,
so label names live in one place. Labels never carry personal data (no caller, no free text)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)  # inputs per batch (HOTLINE_BATCH_MAX is 200 by default)
if TYPE_CHECKING:
    from services.domain.scorecards import UnitScore

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # process_start_time_seconds (with CPU, memory, file descriptors): HotlineInternalErrors counts every
        # internal error of a process younger than its window, whose counter may be first scraped above 0.
        ProcessCollector(registry=r)
        self.received = Counter("hotline_intake_received", "Intake messages received", ["source", "jurisdiction"],
                                registry=r)
        self.received_bytes = Counter("hotline_intake_received_bytes", "Bytes of intake messages received",
                                      registry=r)
        self.rejected = Counter("hotline_dead_letters", "Inputs sent to the dead-letter topic",
                                ["stage", "reason"], registry=r)
        self.duplicates = Counter("hotline_duplicates", "Inputs recognised as duplicates and ignored", ["stage"],
                                  registry=r)
        self.merged = Counter("hotline_intake_merged", "Repeat reports merged into an open ticket (并单)",
                              ["jurisdiction"], registry=r)
        self.decisions = Counter("hotline_router_decisions", "Routing decisions", ["jurisdiction", "outcome"],
                                 registry=r)
        self.category_decisions = Counter("hotline_router_category_decisions",
                                          "Routing decisions by the category they found (none: no rule matched)",
                                          ["jurisdiction", "category", "outcome"], registry=r)
        self.triage = Counter("hotline_router_triage", "Tickets sent to the dispatch desk, by why (triage_reason "
                              "before its colon: no_rule_matched, low_confidence, out_of_scope, ownership_dispute …)",
                              ["jurisdiction", "reason"], registry=r)
        self.confidence = Histogram("hotline_router_confidence", "Confidence (0-1) of each routing decision",
                                    ["outcome"], buckets=CONFIDENCE_BUCKETS, registry=r)
        self.work_orders = Counter("hotline_router_work_orders", "Work orders dispatched",
                                   ["jurisdiction", "unit"], registry=r)
        self.returns = Counter("hotline_router_returns", "Tickets returned by a unit (退单)", ["jurisdiction", "unit"],
                               registry=r)
        self.updates = Counter("hotline_sla_updates", "Unit updates applied or rejected", ["action", "result"],
                               registry=r)
        self.escalations = Counter("hotline_escalations", "Escalations raised", ["kind", "level", "jurisdiction"],
                                   registry=r)
        self.campaign_rate = Gauge("hotline_campaign_rate_ratio", "Campaign rate (0-1) at the last evaluation",
                                   ["campaign_id"], registry=r)
        self.campaign_projected = Gauge("hotline_campaign_projected_rate_ratio", "Projected rate (0-1) at the deadline",
                                        ["campaign_id"], registry=r)
        self.campaign_target = Gauge("hotline_campaign_target_ratio", "Campaign target rate (0-1)", ["campaign_id"],
                                     registry=r)
        self.campaign_start = Gauge("hotline_campaign_start_timestamp_seconds", "Campaign start (unix seconds)",
                                    ["campaign_id"], registry=r)
        self.campaign_deadline = Gauge("hotline_campaign_deadline_timestamp_seconds",
                                       "Campaign deadline (unix seconds)", ["campaign_id"], registry=r)
        self.campaign_enrolled = Gauge("hotline_campaign_enrolled", "Tickets enrolled", ["campaign_id"], registry=r)
        self.campaign_resolved = Gauge("hotline_campaign_resolved",
                                       "Enrolled tickets done (resolved and not reopened) at the last evaluation",
                                       ["campaign_id"], registry=r)
        self.campaign_planned = Gauge("hotline_campaign_planned_cohort",
                                      "Tickets the plan names for the campaign (e.g. 1864), where it names a number",
                                      ["campaign_id"], registry=r)
        self.campaign_at_risk = Gauge("hotline_campaign_at_risk",
                                      "1 when the last evaluation's status is at_risk (projected below target, past "
                                      "warm-up, with enough tickets enrolled or the plan's fixed cohort), else 0",
                                      ["campaign_id"], registry=r)
        self.calendar_fallback = Gauge("hotline_calendar_year_guessed",
                                       "1 for a year with no holiday data: its working days are guessed from weekends "
                                       "only", ["year"], registry=r)
        self.processing = Histogram("hotline_processing_seconds", "Time to process one input, database included",
                                    ["service"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_inputs = Histogram("hotline_batch_inputs",
                                      "Inputs a worker took in one batch (one database transaction; "
                                      "HOTLINE_BATCH_MAX, HOTLINE_BATCH_WAIT_SECONDS)",
                                      ["service"], buckets=BATCH_BUCKETS, registry=r)
        self.dispatch_latency = Histogram("hotline_dispatch_latency_seconds",
                                          "Wall time from intake receipt to the unit's work order being published",
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.sla_clock = Gauge("hotline_sla_clock_timestamp_seconds",
                               "The SLA worker's current time (unix seconds): the instant its escalations are judged "
                               "at (0 on intake and router)", registry=r)
        self.sla_lateness = Gauge("hotline_sla_allowed_lateness_seconds",
                                  "How far the SLA clock is set behind the wall clock on purpose "
                                  "(HOTLINE_SLA_ALLOWED_LATENESS_SECONDS with HOTLINE_SLA_CLOCK=wall, else 0)",
                                  registry=r)
        self.open_work = Gauge("hotline_work_orders_open", "Tickets a unit holds and has not resolved",
                               ["jurisdiction", "unit"], registry=r)
        self.overdue_work = Gauge("hotline_work_orders_overdue", "Open tickets past their resolve deadline",
                                  ["jurisdiction", "unit"], registry=r)
        self.triage_backlog = Gauge("hotline_triage_backlog", "Tickets waiting for the human dispatch desk",
                                    ["jurisdiction"], registry=r)
        unit = ["jurisdiction", "unit"]
        self.unit_ratios = {
            name: Gauge(f"hotline_unit_{name}_ratio", help_text, unit, registry=r)
            for name, help_text in (
                ("response", "响应率: dispatches acknowledged by the acknowledge deadline"),
                ("resolution", "解决率: dispatches resolved, of those ended or due"),
                ("satisfaction", "满意率: callbacks satisfied"),
                ("on_time", "按时办结率: resolutions by the deadline in force"),
                ("return", "回退率: dispatches returned (退单)"),
                ("rehandle", "重办率: resolutions reopened (unsatisfied callback, or the desk reopening a closed ticket)"),
            )
        }
        self.consumer_lag = Gauge("hotline_consumer_lag_messages", "Messages not yet processed by this worker",
                                  ["service", "topic"], registry=r)
        self.outbox_pending = Gauge("hotline_outbox_pending",
                                    "Outbox rows of this service left unpublished for longer than the relay's minimum "
                                    "age (2 x HOTLINE_RELAY_SECONDS, at least 10 s), as its relay last found them; "
                                    "capped at 1000, one relay batch: 1000 means 1000 or more", ["service"],
                                    registry=r)

        self._units_shown: set[tuple[str, str]] = set()  # (jurisdiction, unit) of the unit gauges set so far
        self._ratios_shown: dict[str, set[tuple[str, str]]] = {}  # per ratio, the units it has a series for
        self.held_inputs = Gauge("hotline_held_inputs",
                                 "Inputs waiting for the ticket or re-dispatch they name (arrived before it), as the "
                                 "worker last counted them; dead-lettered after HOTLINE_HOLD_SECONDS", ["service"],
                                 registry=r)

    def show_unit_scores(self, scores: Iterable[UnitScore]) -> None:
        """Set the per-unit gauges from one scorecard refresh. A unit the refresh no longer lists (its last open
        ticket resolved, the rest older than the window) holds no open or overdue work: those gauges go to 0, so
        HotlineUnitOverdueWork resolves; a ratio without a denominator now (or for a unit no longer listed) is
        removed rather than left at its last value."""
        units: set[tuple[str, str]] = set()
        ratios: dict[str, set[tuple[str, str]]] = {name: set() for name in self.unit_ratios}
        for s in scores:
            labels = (s.jurisdiction, s.unit)
            units.add(labels)
            self.open_work.labels(*labels).set(s.open)
            self.overdue_work.labels(*labels).set(s.overdue)
            for name, gauge in self.unit_ratios.items():
                value = s.ratio(name)
                if value is not None:
                    gauge.labels(*labels).set(value)
                    ratios[name].add(labels)
        for labels in self._units_shown - units:
            self.open_work.labels(*labels).set(0)
            self.overdue_work.labels(*labels).set(0)
        for name, gauge in self.unit_ratios.items():
            for labels in self._ratios_shown.get(name, set()) - ratios[name]:
                gauge.remove(*labels)
        self._units_shown |= units
        self._ratios_shown = ratios

    def declare_dead_letters(self, stage: str, reasons: Iterable[str]) -> None:
        """Export hotline_dead_letters_total{stage, reason} as 0 for each reason before any dead letter: a labelled
        counter has no series until its first increment, and a series born at 1 shows no increase() to alerts."""
        for reason in reasons:
            self.rejected.labels(stage, reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)
