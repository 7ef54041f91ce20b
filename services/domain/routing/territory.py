"""Which street/town (街镇) a report belongs to: from the address first, else from the content."""

from __future__ import annotations

from dataclasses import dataclass

from services.domain.routing.matching import Entry, Kind, PhraseIndex, drop_dominated, normalise
from services.domain.routing.rulebook import Unit


@dataclass(frozen=True, slots=True)
class TerritoryMatch:
    name: str
    source: str  # "address" or "content"
    term: str


class TerritoryIndex:
    """Gazetteer of one jurisdiction: full names and aliases of its 街镇."""

    def __init__(self, territories: list[Unit], road_suffixes: list[str]) -> None:
        phrases: list[tuple[str, Entry]] = []
        for t in territories:
            # weight 1: full official name; 0: alias (only trusted when not part of a road name)
            phrases.append((t.name, Entry(Kind.rule, t.name, 1.0)))
            phrases.extend((a, Entry(Kind.rule, t.name, 0.0)) for a in t.aliases)
        self._index = PhraseIndex(phrases)
        self._suffixes = sorted((normalise(s) for s in road_suffixes), key=len, reverse=True)

    def _find(self, text: str) -> tuple[str, str] | None:
        norm = normalise(text)
        for hit in drop_dominated(self._index.scan(text)):
            entry = hit.entries[0]
            if entry.weight == 0.0 and self._is_road_name(norm, hit.end):
                continue  # "仙霞路", "天山路100号": a road named after the area, not the area itself
            return entry.ref, hit.term
        return None

    def _is_road_name(self, norm: str, end: int) -> bool:
        return any(norm.startswith(s, end) for s in self._suffixes)

    def resolve(self, address: str, content: str) -> TerritoryMatch | None:
        found = self._find(address)
        if found:
            return TerritoryMatch(name=found[0], source="address", term=found[1])
        found = self._find(content)
        if found:
            return TerritoryMatch(name=found[0], source="content", term=found[1])
        return None
