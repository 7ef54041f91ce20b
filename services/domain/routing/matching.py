"""Phrase matching with Aho-Corasick automata, and the "specific phrase beats generic phrase" rule.

One automaton per jurisdiction holds every evidence phrase (rule keywords, rule vetoes, emergency words,
not-emergency phrases, out-of-scope words). A hit whose span lies strictly inside a longer hit is dropped
before scoring, so "智能电梯" hides "电梯" and "消防通道" / "火灾隐患" hide the fire words inside them.

The automaton is ahocorasick_rs (Rust), which scans this project's texts faster than pyahocorasick, whose trie
nodes search their children one by one (a Chinese phrase list gives the root hundreds of children).
``benchmarks/classify_throughput.py`` measures the whole classifier (docs/performance.md, section 10).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

import ahocorasick_rs


class Kind(StrEnum):
    rule = "rule"  # ref: rule id
    veto = "veto"  # ref: rule id
    emergency = "emergency"  # ref: redirect number
    not_emergency = "not_emergency"  # ref: ""
    out_of_scope = "out_of_scope"  # ref: reason
    urgent = "urgent"  # ref: ""


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
        self._terms = list(table)
        self._entries = [tuple(entries) for entries in table.values()]
        self._automaton = (
            ahocorasick_rs.AhoCorasick(self._terms, matchkind=ahocorasick_rs.MatchKind.Standard) if table else None
        )

    def scan(self, text: str) -> list[Hit]:
        """All hits, overlapping ones included, in reading order: by start, the longer first. Positions are in
        characters of the normalised text."""
        if self._automaton is None or not text:
            return []
        terms, entries = self._terms, self._entries
        hits = [
            Hit(terms[i], start, end, entries[i])
            for i, start, end in self._automaton.find_matches_as_indexes(normalise(text), overlapping=True)
        ]
        hits.sort(key=_reading_order)
        return hits

    def scan_dominant(self, text: str) -> list[Hit]:
        """Hits not strictly contained in a longer hit."""
        return drop_dominated(self.scan(text))


def _reading_order(hit: Hit) -> tuple[int, int]:
    return hit.start, -hit.end


def drop_dominated(hits: list[Hit]) -> list[Hit]:
    """The hits of ``hits`` (in ``scan``'s reading order) that no longer hit contains. Every hit that could
    contain a hit starts no later and, starting at the same place, is longer, so it comes earlier in that order:
    a hit is contained exactly when an earlier one reaches as far. Two hits never share both ends (each phrase
    is in the automaton once), so a hit that reaches as far is longer."""
    kept: list[Hit] = []
    reach = -1
    for hit in hits:
        if hit.end > reach:
            kept.append(hit)
            reach = hit.end
    return kept


def length_weight(term: str, length_weights: dict[int, float], max_weight: float) -> float:
    """Default phrase weight: longer phrases are more specific."""
    n = len(term)
    if n in length_weights:
        return length_weights[n]
    return max_weight if n > max(length_weights) else min(length_weights.values())
