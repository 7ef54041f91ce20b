"""Repeat merge (并单): is a new report the same matter as an open ticket at the same place?"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from schemas import IntakeEvent, RepeatReport
from services.domain.validation import normalise_text

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "intake" / "repeats.yaml"
_NOISE = re.compile(r"[\s,.;:!?，。；：！？、()（）\[\]【】\"'“”‘’\-—_/]+")


@dataclass(frozen=True)
class RepeatPolicy:
    window: timedelta
    min_similarity: float
    raise_priority_at: int
    address_prefixes: tuple[str, ...]

    @classmethod
    def load(cls, path: Path = DEFAULT_POLICY) -> RepeatPolicy:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        prefixes = tuple(sorted(raw.get("address_prefixes") or [], key=len, reverse=True))
        return cls(timedelta(hours=float(raw["window_hours"])), float(raw["min_similarity"]),
                   int(raw["raise_priority_at"]), prefixes)

    def address_key(self, address: str) -> str:
        """The address without province/city/district prefixes, punctuation and spaces."""
        key = _NOISE.sub("", normalise_text(address))
        stripped = True
        while stripped:
            stripped = False
            for prefix in self.address_prefixes:
                if key.startswith(prefix) and len(key) > len(prefix):
                    key, stripped = key[len(prefix):], True
        return key


@dataclass(frozen=True)
class OpenReport:
    """A ticket's first report, as the repeat index keeps it."""

    ticket_id: str
    occurred_at: datetime
    content: str
    device: str | None = None  # a sensor's alert: the device that raised it (``iot.device_id``)

    @classmethod
    def of(cls, event: IntakeEvent) -> OpenReport:
        """The report that opens a ticket, as the index keeps it."""
        return cls(event.event_id, event.occurred_at, event.content, _device(event))


def _device(event: IntakeEvent) -> str | None:
    return None if event.iot is None else event.iot.device_id


def bigrams(text: str) -> frozenset[str]:
    text = _NOISE.sub("", text)
    return frozenset(text[i:i + 2] for i in range(len(text) - 1)) or frozenset([text])


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the texts' character bigrams; 0 when either is only punctuation and spaces (two such
    texts would otherwise be alike in full)."""
    x, y = bigrams(a), bigrams(b)
    if "" in x or "" in y:
        return 0.0
    return len(x & y) / len(x | y)


def find_repeat(event: IntakeEvent, candidates: list[OpenReport],
                policy: RepeatPolicy) -> tuple[OpenReport, float] | None:
    """The most similar open report at the same address within the window, if alike enough. A sensor's alert joins
    only a ticket its own device opened (a ticket opened by a citizen's call may already hold another device's
    alert); a citizen's report may join a sensor's ticket. Candidates must already share the event's jurisdiction
    and address key; ties go to the earliest ticket."""
    best: tuple[OpenReport, float] | None = None
    device = _device(event)
    for candidate in sorted(candidates, key=lambda c: (c.occurred_at, c.ticket_id)):
        if abs(event.occurred_at - candidate.occurred_at) > policy.window or candidate.ticket_id == event.event_id:
            continue
        if device is not None and candidate.device != device:
            continue  # two lifts, or two households' meters, at one address alert alike: each is its own matter
        score = similarity(event.content, candidate.content)
        if score >= policy.min_similarity and (best is None or score > best[1]):
            best = (candidate, score)
    return best


def repeat_report(event: IntakeEvent, ticket_id: str, score: float) -> RepeatReport:
    return RepeatReport(event_id=event.event_id, ticket_id=ticket_id, jurisdiction=event.jurisdiction,
                        source=event.source, occurred_at=event.occurred_at, content=event.content,
                        address=event.address, caller=event.caller, similarity=round(score, 4))
