"""Screens run before ownership scoring: emergencies in progress (110/119/120), out-of-scope matters, and risks
to life or property that make a ticket urgent."""

from __future__ import annotations

from dataclasses import dataclass

from services.domain.routing.matching import Hit, Kind, normalise
from services.domain.routing.rulebook import Common


@dataclass(frozen=True, slots=True)
class Emergency:
    redirect_to: str
    terms: tuple[str, ...]
    score: float


@dataclass(frozen=True, slots=True)
class OutOfScopeFinding:
    reason: str
    terms: tuple[str, ...]
    score: float


class Screener:
    def __init__(self, common: Common) -> None:
        self._hedges = [normalise(m) for m in common.hedge_markers]
        self._hedges_before = [normalise(m) for m in common.hedge_markers_before]
        self._before = common.hedge_window_before
        self._after = common.hedge_window_after

    def _hedged(self, norm_text: str, hit: Hit) -> bool:
        """A hedge word near the emergency word ("去年着火", "着火好几次了") means: not in progress; a worry or a
        condition ("担心起火", "差点砸伤") only before it ("着火了，很担心烧到楼上" is a fire now)."""
        window = norm_text[max(0, hit.start - self._before) : hit.end + self._after]
        if any(m in window for m in self._hedges):
            return True
        before = norm_text[max(0, hit.start - self._before) : hit.end]
        return any(m in before for m in self._hedges_before)

    def emergency(self, text: str, hits: list[Hit]) -> Emergency | None:
        """The emergency channel with the most un-hedged evidence, if any. ``hits`` are dominance-filtered,
        so phrases listed as not-emergency (消防通道, 火灾隐患, …) have already hidden the words inside them."""
        norm = normalise(text)
        scores: dict[str, float] = {}
        terms: dict[str, list[str]] = {}
        for hit in hits:
            for entry in hit.entries:
                if entry.kind is not Kind.emergency or self._hedged(norm, hit):
                    continue
                scores[entry.ref] = scores.get(entry.ref, 0.0) + entry.weight
                if hit.term not in terms.setdefault(entry.ref, []):
                    terms[entry.ref].append(hit.term)
        if not scores:
            return None
        # highest score wins; on a tie, the channel whose word appears first in the text
        best = max(scores, key=lambda ref: scores[ref])
        return Emergency(redirect_to=best, terms=tuple(terms[best]), score=scores[best])

    def urgent(self, text: str, hits: list[Hit]) -> tuple[str, ...]:
        """The un-hedged words of a risk to life or property in progress ("电梯困人", "井盖不见了"), in reading
        order; empty when there are none ("上个月电梯困人" is a complaint about a lift, not someone trapped now).
        Its ``hits`` come from the urgent words' own automaton, so each is an urgent word."""
        norm = normalise(text)
        return tuple(dict.fromkeys(hit.term for hit in hits if not self._hedged(norm, hit)))

    @staticmethod
    def out_of_scope(hits: list[Hit]) -> OutOfScopeFinding | None:
        scores: dict[str, float] = {}
        terms: dict[str, list[str]] = {}
        for hit in hits:
            for entry in hit.entries:
                if entry.kind is not Kind.out_of_scope:
                    continue
                if hit.term in terms.setdefault(entry.ref, []):
                    continue
                terms[entry.ref].append(hit.term)
                scores[entry.ref] = scores.get(entry.ref, 0.0) + entry.weight
        if not scores:
            return None
        best = max(scores, key=lambda ref: scores[ref])
        return OutOfScopeFinding(reason=best, terms=tuple(terms[best]), score=scores[best])
