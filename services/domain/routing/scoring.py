"""Scoring rules against the phrase hits of one report, and the confidence of the winner."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.common import Source
from services.domain.routing.matching import Hit, Kind
from services.domain.routing.rulebook import Rule, Scoring


@dataclass(slots=True)
class Scored:
    rule: Rule
    order: int  # position in the rulebook, the final tie-breaker
    score: float = 0.0
    terms: list[str] = field(default_factory=list)
    hinted: bool = False


@dataclass(frozen=True)
class RuleIndex:
    """Lookups over a rulebook's rules, built once: each rule id's position and rule (a later rule with the
    same id replaces an earlier one), and the ids of each category's rules."""

    positions: dict[str, tuple[int, Rule]]
    by_category: dict[str, tuple[str, ...]]

    @classmethod
    def build(cls, rules: list[Rule]) -> RuleIndex:
        positions = {rule.id: (i, rule) for i, rule in enumerate(rules)}
        by_category: dict[str, list[str]] = {}
        for rule_id, (_, rule) in positions.items():
            by_category.setdefault(rule.category, []).append(rule_id)
        return cls(positions, {category: tuple(ids) for category, ids in by_category.items()})


def score_rules(
    rules: list[Rule],
    allowed_sources: dict[str, frozenset[Source]],
    hits: list[Hit],
    source: Source,
    category_hint: str | None,
    scoring: Scoring,
    veto_hits: list[Hit] | None = None,
    index: RuleIndex | None = None,
) -> list[Scored]:
    """Every rule with evidence, best first. A rule is dropped when one of its veto phrases matched (looked
    for in ``veto_hits``, all hits including those inside a longer phrase, when given) or when the report's
    source is not among its sources. Each distinct phrase counts once. ``index`` is ``RuleIndex.build(rules)``,
    passed by callers that score many reports against the same rules.

    Only rules that a phrase hit or the category hint names can have evidence, so only those are scored."""
    if index is None:
        index = RuleIndex.build(rules)
    positions = index.positions
    by_id: dict[str, Scored] = {}
    vetoed = {e.ref for hit in (veto_hits if veto_hits is not None else hits) for e in hit.entries
              if e.kind is _VETO}
    for hit in hits:
        for entry in hit.entries:
            if entry.kind is _RULE:
                scored = by_id.get(entry.ref)
                if scored is None:
                    scored = _start(by_id, positions, entry.ref)
                if hit.term not in scored.terms:
                    scored.terms.append(hit.term)
                    scored.score += entry.weight
    if category_hint:
        for rule_id in index.by_category.get(category_hint, ()):
            if rule_id not in by_id:
                _start(by_id, positions, rule_id)
    out: list[Scored] = []
    for rule_id, scored in by_id.items():
        if rule_id in vetoed or source not in allowed_sources[rule_id]:
            continue
        if category_hint and category_hint == scored.rule.category:
            # a hint helps, but only as much as one ordinary phrase: it never beats strong text evidence
            scored.score += scoring.hint_bonus
            scored.hinted = True
        if scored.score > 0:
            out.append(scored)
    out.sort(key=lambda s: (-s.score, s.order))
    return out


def confidence(best: float, rival: float, scoring: Scoring) -> float:
    """Evidence strength (saturating in the best score) times the margin over the best rival with a
    different lead unit. Both in [0, 1]."""
    if best <= 0:
        return 0.0
    strength = best / (best + scoring.strength_k)
    margin = max(0.0, (best - rival) / best)
    value = strength * (scoring.margin_floor + (1.0 - scoring.margin_floor) * margin)
    return round(min(1.0, max(0.0, value)), 4)


_RULE, _VETO = Kind.rule, Kind.veto


def _start(by_id: dict[str, Scored], positions: dict[str, tuple[int, Rule]], rule_id: str) -> Scored:
    """A rule's score sheet, created the first time the rule has evidence."""
    order, rule = positions[rule_id]
    scored = by_id[rule_id] = Scored(rule=rule, order=order)
    return scored
