"""The router: IntakeEvent -> RoutingDecision, pure and deterministic, driven by the YAML rulebooks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from schemas.common import Source, Urgency
from schemas.intake import IntakeEvent
from schemas.routing import Candidate, Outcome, RoutingDecision
from schemas.rulings import Ruling, RulingAction
from services.domain.routing.decisions import DecisionBuilder
from services.domain.routing.matching import Entry, Hit, Kind, PhraseIndex, drop_dominated, length_weight
from services.domain.routing.rulebook import TERRITORY_LEAD, Library, Rule, Rulebook, Term, load_library
from services.domain.routing.scoring import RuleIndex, Scored, confidence, score_rules
from services.domain.routing.screening import Screener
from services.domain.routing.territory import TerritoryIndex, TerritoryMatch
from services.domain.validation import Rejection


@dataclass(frozen=True)
class _Compiled:
    """Everything built once per jurisdiction at load time."""

    book: Rulebook
    rules: list[Rule]
    rule_index: RuleIndex
    allowed: dict[str, frozenset[Source]]
    index: PhraseIndex
    territories: TerritoryIndex
    codes: dict[str, str]  # unit or territory name -> ASCII code
    threshold: float


class Router:
    def __init__(self, library: Library) -> None:
        self._lib = library
        self._screener = Screener(library.common)
        # an automaton of its own: its phrases ("电梯困人") must not hide the ownership phrases inside them ("电梯")
        self._urgent_index = PhraseIndex((t.term, Entry(Kind.urgent, "", 0.0)) for t in library.common.urgent.terms)
        self._compiled = {j: self._compile(book) for j, book in library.books.items()}

    @classmethod
    def load(cls, path: Path | str | None = None) -> Router:
        return cls(load_library(path))

    @property
    def version(self) -> str:
        return self._lib.version

    # ----------------------------------------------------------------- lookups
    def unit_code(self, jurisdiction: str, unit_name: str) -> str:
        return self._compiled[str(jurisdiction)].codes[unit_name]

    def all_units(self) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for j, book in sorted(self._lib.books.items()):
            out.extend((j, u.code, u.name) for u in [*book.units, *book.territories])
        return out

    def triage_unit(self, jurisdiction: str) -> str:
        return self._lib.books[str(jurisdiction)].triage_unit

    def rulebook(self, jurisdiction: str) -> Rulebook:
        return self._lib.books[str(jurisdiction)]

    @property
    def library(self) -> Library:
        return self._lib

    # ----------------------------------------------------------------- build
    def _weight(self, term: Term) -> float:
        s = self._lib.common.scoring
        return term.weight if term.weight is not None else length_weight(term.term, s.length_weights, s.max_weight)

    def _compile(self, book: Rulebook) -> _Compiled:
        common = self._lib.common
        phrases: list[tuple[str, Entry]] = []
        allowed: dict[str, frozenset[Source]] = {}
        for rule in book.rules:
            cat = self._lib.categories[rule.category]
            # the rule's own phrases override the category's weight for the same phrase
            inherited = cat.keywords if rule.inherit_keywords else []
            weights = {t.term: self._weight(t) for t in [*inherited, *rule.keywords]}
            phrases.extend((term, Entry(Kind.rule, rule.id, w)) for term, w in weights.items())
            for term in [*cat.exclude, *rule.exclude]:
                phrases.append((term.term, Entry(Kind.veto, rule.id, 0.0)))
            sources = rule.sources if rule.sources is not None else cat.sources
            allowed[rule.id] = frozenset(sources) if sources is not None else frozenset(Source)
        for channel in common.emergency:
            phrases.extend((t.term, Entry(Kind.emergency, channel.redirect_to, self._weight(t))) for t in channel.terms)
        phrases.extend((t.term, Entry(Kind.not_emergency, "", 0.0)) for t in common.not_emergency)
        for oos in common.out_of_scope:
            phrases.extend((t.term, Entry(Kind.out_of_scope, oos.reason, self._weight(t))) for t in oos.terms)
        codes = {u.name: u.code for u in [*book.units, *book.territories]}
        threshold = book.confidence_threshold
        return _Compiled(
            book=book,
            rules=list(book.rules),
            rule_index=RuleIndex.build(list(book.rules)),
            allowed=allowed,
            index=PhraseIndex(phrases),
            territories=TerritoryIndex(book.territories, book.road_suffixes or common.road_suffixes),
            codes=codes,
            threshold=threshold if threshold is not None else common.scoring.confidence_threshold,
        )

    # ----------------------------------------------------------------- route
    def _scan(self, event: IntakeEvent) -> tuple[_Compiled, list[Hit], list[Hit], TerritoryMatch | None]:
        """The report's phrase hits, all and dominance-filtered, and its 街镇."""
        comp = self._compiled[str(event.jurisdiction)]
        all_hits = comp.index.scan(event.content)
        hits = drop_dominated(all_hits)  # a veto phrase counts even inside a longer matched phrase
        return comp, all_hits, hits, comp.territories.resolve(event.address, event.content)

    def _score(self, comp: _Compiled, event: IntakeEvent, all_hits: list[Hit], hits: list[Hit]) -> list[Scored]:
        """The rules the hits give evidence for, best first."""
        return score_rules(comp.rules, comp.allowed, hits, event.source, event.category_hint, self._lib.common.scoring,
                           veto_hits=all_hits, index=comp.rule_index)

    def _candidates(self, scored: list[Scored], territory: TerritoryMatch | None) -> list[Candidate]:
        """The top of the scored rules, for the triage desk."""
        name = territory.name if territory else None
        return [self._candidate(s, name) for s in scored[: self._lib.common.scoring.max_candidates]]

    def route(self, event: IntakeEvent, exclude_units: Iterable[str] | None = None,
              screen_emergency: bool = True) -> RoutingDecision:
        """The decision on a report; with ``exclude_units``, a re-dispatch after returns. ``screen_emergency``
        False: the dispatch desk has ruled on the ticket, so its emergency words are no longer a reason to
        redirect it (a return after the desk dispatched a redirected ticket looks for another unit)."""
        comp, all_hits, hits, territory = self._scan(event)
        excluded = frozenset(exclude_units or ())
        emergency = self._screener.emergency(event.content, hits) if screen_emergency else None
        if emergency is None:
            return self._owner(event, comp, all_hits, hits, territory, excluded)
        # the redirect is not delayed; when the report also names, strongly, a civic matter a unit would own with
        # confidence (工地 + 晚上施工 next to 工人打架), the desk reviews whether a work order is due besides
        civic = self._owner(event, comp, all_hits, hits, territory, excluded)
        strong = civic.outcome is Outcome.dispatch and civic.candidates[0].score >= self._lib.common.scoring.review_min_score
        if not strong:
            return DecisionBuilder(event, comp.book, self._lib.common, self.version, territory).redirect(emergency)
        # the desk's review of it, and a work order it may dispatch, are as urgent as the report's words make them
        # (the urgent screen's words, which the civic decision found already)
        return DecisionBuilder(event, comp.book, self._lib.common, self.version, territory,
                               tuple(civic.urgent_terms)).redirect(emergency, civic.candidates)

    def _owner(self, event: IntakeEvent, comp: _Compiled, all_hits: list[Hit], hits: list[Hit],
               territory: TerritoryMatch | None, excluded: frozenset[str]) -> RoutingDecision:
        """Who owns the matter by the rules (no emergency screen): a dispatch, or triage saying why not."""
        common = self._lib.common
        out = DecisionBuilder(event, comp.book, common, self.version, territory, self._urgent(event))
        scored = self._score(comp, event, all_hits, hits)

        territory_name = territory.name if territory else None
        oos = self._screener.out_of_scope(hits)
        if oos is not None and (not scored or oos.score >= scored[0].score):
            return out.out_of_scope(oos, self._candidates(scored, territory))
        if not scored:
            return out.triage("no_rule_matched", 0.0, [])

        barred = excluded | {None}
        eligible = [s for s in scored if self._lead(s.rule, territory_name) not in barred]
        if not eligible:
            reason = "all_candidates_excluded" if excluded else "no_territory_for_territorial_rule"
            return out.triage(reason, 0.0, self._candidates(scored, territory))
        best = eligible[0]
        lead = self._lead(best.rule, territory_name)
        rival = max((s.score for s in eligible[1:] if self._lead(s.rule, territory_name) != lead), default=0.0)
        conf = confidence(best.score, rival, common.scoring)
        if conf < comp.threshold:
            return out.triage("low_confidence", conf, self._candidates(scored, territory))
        ranked = [self._candidate(s, territory_name) for s in eligible[: common.scoring.max_candidates]]
        return out.dispatch(best, lead, conf, ranked, excluded)

    def dispute(self, event: IntakeEvent, grounds: str) -> RoutingDecision:
        """An ownership dispute (units returned the ticket) for the desk: the best rules the report matches as
        candidates, the units that returned it among them (the desk's ruling binds them), the first named as the
        decision's rule, as in any triage decision."""
        comp, all_hits, hits, territory = self._scan(event)
        out = DecisionBuilder(event, comp.book, self._lib.common, self.version, territory, self._urgent(event))
        return out.dispute(grounds, self._candidates(self._score(comp, event, all_hits, hits), territory))

    def rule_on(self, event: IntakeEvent, ruling: Ruling) -> RoutingDecision | Rejection:
        """The dispatch desk's ruling on a triaged ticket, checked against the jurisdiction's rulebook: the desk
        must be the jurisdiction's triage unit, the rule one of its rules, the lead one of its units or 街镇."""
        comp = self._compiled[str(event.jurisdiction)]
        if ruling.desk != comp.book.triage_unit:
            return Rejection("not_the_desk", "desk", f"desk: {ruling.desk!r} does not hold the triage queue of "
                                                     f"{event.jurisdiction} (its queue is {comp.book.triage_unit!r})")
        territory = comp.territories.resolve(event.address, event.content)
        out = DecisionBuilder(event, comp.book, self._lib.common, self.version, territory, self._urgent(event))
        if ruling.action is RulingAction.close:
            return out.ruled(ruling)
        rule = next((r for r in comp.rules if r.id == ruling.rule_id), None)
        if rule is None:
            return Rejection("unknown_rule", "rule_id", f"rule_id: {event.jurisdiction} has no rule {ruling.rule_id!r}")
        own = self._lead(rule, territory.name if territory else None)
        lead = ruling.lead_unit or own
        if lead is None:
            return Rejection("no_lead", "lead_unit", f"lead_unit: rule {rule.id} makes the 街镇 lead and no 街镇 is "
                                                     "known from the address; name the lead_unit")
        if lead not in comp.codes:
            return Rejection("unknown_unit", "lead_unit", f"lead_unit: {lead!r} is not a unit or 街镇 of "
                                                          f"{event.jurisdiction}")
        return out.ruled(ruling, rule, lead, overridden=lead != own)

    def _urgent(self, event: IntakeEvent) -> tuple[str, ...]:
        """The words that make the ticket urgent, when its sender did not mark it so."""
        if event.urgency is Urgency.urgent:
            return ()
        return self._screener.urgent(event.content, self._urgent_index.scan_dominant(event.content))

    @staticmethod
    def _lead(rule: Rule, territory: str | None) -> str | None:
        return territory if rule.lead == TERRITORY_LEAD else rule.lead

    def _candidate(self, s: Scored, territory: str | None) -> Candidate:
        return Candidate(
            rule_id=s.rule.id,
            category=s.rule.category,
            lead_unit=self._lead(s.rule, territory) or TERRITORY_LEAD,
            score=round(s.score, 3),
            matched_terms=list(s.terms),
            citation=s.rule.citation,
        )
