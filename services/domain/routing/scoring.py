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


def score_rules(
    rules: list[Rule],
    allowed_sources: dict[str, frozenset[Source]],
    hits: list[Hit],
    source: Source,
    category_hint: str | None,
    scoring: Scoring,
    veto_hits: list[Hit] | None = None,
) -> list[Scored]:
    """Every rule with evidence, best first. A rule is dropped when one of its veto phrases matched (looked
    for in ``veto_hits``, all hits including those inside a longer phrase, when given) or when the report's
    source is not among its sources. Each distinct phrase counts once."""
    by_id = {rule.id: Scored(rule=rule, order=i) for i, rule in enumerate(rules)}
    vetoed = {e.ref for hit in (veto_hits if veto_hits is not None else hits) for e in hit.entries
              if e.kind is Kind.veto}
    for hit in hits:
        for entry in hit.entries:
            if entry.kind is Kind.rule:
                scored = by_id[entry.ref]
                if hit.term not in scored.terms:
                    scored.terms.append(hit.term)
                    scored.score += entry.weight
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
