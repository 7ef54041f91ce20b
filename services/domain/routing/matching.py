"""Phrase matching with Aho-Corasick automata, and the "specific phrase beats generic phrase" rule.

One automaton per jurisdiction holds every evidence phrase (rule keywords, rule vetoes, emergency words,
not-emergency phrases, out-of-scope words). A hit whose span lies strictly inside a longer hit is dropped
before scoring, so "智能电梯" hides "电梯" and "消防通道" / "火灾隐患" hide the fire words inside them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

import ahocorasick


class Kind(StrEnum):
    rule = "rule"  # ref: rule id
    veto = "veto"  # ref: rule id
    emergency = "emergency"  # ref: redirect number
    not_emergency = "not_emergency"  # ref: ""
    out_of_scope = "out_of_scope"  # ref: reason


@dataclass(frozen=True, slots=True)
class Entry:
    kind: Kind
    ref: str
    weight: float


class Hit(NamedTuple):  # a tuple: scans make many of them
    term: str
    start: int  # inclusive
    end: int  # exclusive
    entries: tuple[Entry, ...]


_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]")
_TO_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: ord(" ")}


@lru_cache(maxsize=256)
def normalise(text: str) -> str:
    """Full-width ASCII to half-width and lower case, so 'ＡＢ' and 'ab' match the same phrase.

    Cached: routing one report normalises its content and address several times (phrases, territory,
    emergency hedges)."""
    if _FULL_WIDTH.search(text):
        text = text.translate(_TO_HALF_WIDTH)
    return text.lower()


class PhraseIndex:
    """An automaton over phrases; each phrase carries one or more entries."""

    def __init__(self, phrases: Iterable[tuple[str, Entry]]) -> None:
        table: dict[str, list[Entry]] = {}
        for phrase, entry in phrases:
            key = normalise(phrase)
            bucket = table.setdefault(key, [])
            if entry not in bucket:
                bucket.append(entry)
        self._automaton = ahocorasick.Automaton()
        for key, entries in table.items():
            self._automaton.add_word(key, (key, tuple(entries)))
        self._empty = not table
        if not self._empty:
            self._automaton.make_automaton()

    def scan(self, text: str) -> list[Hit]:
        """All hits in reading order, without dominance filtering."""
        if self._empty or not text:
            return []
        hits = [
            Hit(term=key, start=end - len(key) + 1, end=end + 1, entries=entries)
            for end, (key, entries) in self._automaton.iter(normalise(text))
        ]
        hits.sort(key=lambda h: (h.start, -h.end))
        return hits

    def scan_dominant(self, text: str) -> list[Hit]:
        """Hits not strictly contained in a longer hit."""
        return drop_dominated(self.scan(text))


def drop_dominated(hits: list[Hit]) -> list[Hit]:
    kept: list[Hit] = []
    for hit in hits:
        inside = any(
            o.start <= hit.start and hit.end <= o.end and (o.end - o.start) > (hit.end - hit.start)
            for o in hits
        )
        if not inside:
            kept.append(hit)
    return kept


def length_weight(term: str, length_weights: dict[int, float], max_weight: float) -> float:
    """Default phrase weight: longer phrases are more specific."""
    n = len(term)
    if n in length_weights:
        return length_weights[n]
    return max_weight if n > max(length_weights) else min(length_weights.values())
