"""Wire contracts of the hotline services.

The pydantic models in this package are the source of truth. ``schemas/generated``
holds the JSON Schema files and the AsyncAPI document produced from them by
``hotline schemas generate``; a test fails when the checked-in copies drift.
"""

from schemas.clock import ClockTick
from schemas.common import Citation, Jurisdiction, Source, Urgency
from schemas.dead_letters import DeadLetter
from schemas.escalations import Escalation, EscalationKind
from schemas.intake import Caller, IntakeEvent, Location
from schemas.repeats import RepeatReport
from schemas.routing import Candidate, Outcome, RoutingDecision
from schemas.rulings import Ruling, RulingAction
from schemas.triage import TriageItem
from schemas.updates import UnitAction, UnitUpdate
from schemas.work_orders import WorkOrder

__all__ = [
    "Caller",
    "ClockTick",
    "Candidate",
    "Citation",
    "DeadLetter",
    "Escalation",
    "EscalationKind",
    "IntakeEvent",
    "Jurisdiction",
    "Location",
    "Outcome",
    "RepeatReport",
    "RoutingDecision",
    "Ruling",
    "RulingAction",
    "Source",
    "TriageItem",
    "UnitAction",
    "UnitUpdate",
    "Urgency",
    "WorkOrder",
]
