"""Topic names, their partition counts, and what each carries.

Every topic is created explicitly by ``hotline topics create`` before the workers start: a topic the
broker auto-creates gets the broker's default partition count, which breaks co-partitioning.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.platform.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    carries: str
    producer: str
    consumers: str


def names(prefix: str) -> dict[str, str]:
    return {
        "raw": f"{prefix}.events.raw",
        "accepted": f"{prefix}.events.accepted",
        "workorders": f"{prefix}.workorders",
        "triage": f"{prefix}.triage",
        "updates": f"{prefix}.updates",
        "returns": f"{prefix}.returns",
        "rulings": f"{prefix}.rulings",
        "escalations": f"{prefix}.escalations",
        "deadletter": f"{prefix}.deadletter",
        "clock": f"{prefix}.clock",
    }


def unit_topic(prefix: str, unit_code: str) -> str:
    return f"{prefix}.unit.{unit_code}"


def pipeline_topics(settings: Settings) -> list[TopicSpec]:
    n = names(settings.topic_prefix)
    p = settings.partitions
    return [
        TopicSpec(n["raw"], p, "jurisdiction (repeat merge judges a place's reports in arrival order)",
                  "IntakeEvent JSON from hotline systems (untrusted)",
                  "hotline systems, HTTP entry", "intake"),
        TopicSpec(n["accepted"], p, "ticket_id", "IntakeEvent, validated and normalised", "intake", "router"),
        TopicSpec(n["workorders"], p, "ticket_id", "WorkOrder, every dispatch and re-dispatch", "router", "sla, audit"),
        TopicSpec(n["triage"], p, "ticket_id", "TriageItem: triage queue and 110/119/120 redirect records", "router",
                  "sla, the 城运中心 dispatch desk"),
        TopicSpec(n["updates"], p, "ticket_id",
                  "UnitUpdate: acknowledge, return, resolve, extend; the desk's callback (回访), review_extension and reopen",
                  "units, the dispatch desk", "sla"),
        TopicSpec(n["returns"], p, "ticket_id", "UnitUpdate (action=return) accepted by the lifecycle", "sla", "router"),
        TopicSpec(n["rulings"], p, "ticket_id", "Ruling: the dispatch desk dispatches or closes a triaged ticket, "
                  "or dispatches (reopens) one it closed",
                  "the 城运中心 dispatch desk", "router"),
        TopicSpec(n["escalations"], p, "ticket_id or campaign_id", "Escalation", "router, sla",
                  "supervisors, alerting"),
        TopicSpec(n["deadletter"], p, "dead_letter_id", "DeadLetter with reason and masked original", "all",
                  "operators"),
        TopicSpec(n["clock"], 1, "none", "ClockTick: event-time clock for the SLA worker (sla_clock=ticks only)",
                  "demo, tests", "sla"),
    ]
