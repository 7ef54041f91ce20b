"""Assembling RoutingDecision objects (with their citations and one-sentence explanation)."""

from __future__ import annotations

from schemas.common import Urgency
from schemas.intake import IntakeEvent
from schemas.routing import Candidate, Outcome, RoutingDecision
from schemas.rulings import Ruling
from services.domain.routing.rulebook import TERRITORY_LEAD, Common, Rule, Rulebook
from services.domain.routing.scoring import Scored
from services.domain.routing.screening import Emergency, OutOfScopeFinding
from services.domain.routing.territory import TerritoryMatch
from services.domain.tickets import REDIRECT_REVIEW

_SOURCE_ZH = {"address": "地址", "content": "诉求内容"}


def _listed(candidates: list[Candidate]) -> str:
    return "、".join(f"{c.rule_id}({c.score:g})" for c in candidates) or "无"


class DecisionBuilder:
    def __init__(
        self,
        event: IntakeEvent,
        book: Rulebook,
        common: Common,
        version: str,
        territory: TerritoryMatch | None,
        urgent: tuple[str, ...] = (),
    ) -> None:
        self._event = event
        self._book = book
        self._common = common
        self._version = version
        self._territory = territory
        self._urgent = urgent  # words of a risk to life or property the sender did not mark urgent

    def _territory_phrase(self) -> str:
        t = self._territory
        if t is None:
            return "地址和内容均未识别出街镇"
        return f"街镇{t.name}取自{_SOURCE_ZH[t.source]}（“{t.term}”）"

    def _strength(self, score: float) -> float:
        return round(score / (score + self._common.scoring.strength_k), 4)

    def _base(self, **fields: object) -> RoutingDecision:
        if self._urgent:  # raised to urgent: said, and cited, after the ownership reasons
            terms = "、".join(self._urgent)
            fields["explanation"] = (f"{fields['explanation']}诉求含危及人身财产安全的用语「{terms}」"
                                     f"（common.urgent），按紧急诉求办理。")
            fields["citations"] = [*fields["citations"], self._common.urgent_citation]  # type: ignore[misc]
            fields.update(urgency=Urgency.urgent, urgent_terms=list(self._urgent))
        return RoutingDecision(
            event_id=self._event.event_id,
            jurisdiction=self._event.jurisdiction,
            territorial_unit=self._territory.name if self._territory else None,
            rulebook_version=self._version,
            **fields,
        )

    def redirect(self, em: Emergency, review: list[Candidate] | None = None) -> RoutingDecision:
        """An emergency in progress, handed to 110/119/120. With ``review`` (the candidates of a civic matter the
        report also names, which the rules would dispatch with confidence), the desk reviews whether a unit must
        act besides: the decision then needs triage (``REDIRECT_REVIEW``) and lists them, the best first."""
        terms = "、".join(em.terms)
        explanation = (f"命中正在发生的紧急情况用语「{terms}」（common.emergency.{em.redirect_to}），"
                       f"不派工单，转{em.redirect_to}；{self._territory_phrase()}。")
        citations = [self._common.emergency_citation]
        if review:
            best = review[0]
            explanation += (f"诉求另涉及{best.category}（规则{best.rule_id}，{best.lead_unit}牵头），"
                            f"转{self._book.triage_unit}复核是否另行派单；候选规则：{_listed(review)}。")
            citations.append(self._common.triage_citation)
        return self._base(
            outcome=Outcome.redirect,
            confidence=self._strength(em.score),
            needs_triage=bool(review),
            triage_reason=REDIRECT_REVIEW if review else None,
            redirect_to=em.redirect_to,
            rule_id=f"common.emergency.{em.redirect_to}",
            matched_terms=list(em.terms),
            runner_up=review[0] if review else None,
            candidates=list(review or ()),
            citations=citations,
            explanation=explanation,
        )

    def dispute(self, grounds: str, candidates: list[Candidate]) -> RoutingDecision:
        """Units returned the ticket: the desk rules. Like any triage decision, it names the best candidate."""
        return self.triage("ownership_dispute", 0.0, candidates,
                           f"权属争议：{grounds}候选规则：{_listed(candidates)}；{self._territory_phrase()}。")

    def out_of_scope(self, oos: OutOfScopeFinding, candidates: list[Candidate]) -> RoutingDecision:
        terms = "、".join(oos.terms)
        return self._base(
            outcome=Outcome.triage,
            confidence=self._strength(oos.score),
            needs_triage=True,
            triage_reason=f"out_of_scope:{oos.reason}",
            rule_id=f"common.out_of_scope.{oos.reason}",
            matched_terms=list(oos.terms),
            runner_up=candidates[0] if candidates else None,
            candidates=candidates,
            citations=[self._common.out_of_scope_citation],
            explanation=(
                f"命中非城市管理事项用语「{terms}」（common.out_of_scope.{oos.reason}），"
                f"转{self._book.triage_unit}人工分拨或告知办理渠道；{self._territory_phrase()}。"
            ),
        )

    def triage(self, reason: str, conf: float, candidates: list[Candidate],
               explanation: str | None = None) -> RoutingDecision:
        best = candidates[0] if candidates else None
        return self._base(
            outcome=Outcome.triage,
            confidence=conf,
            needs_triage=True,
            triage_reason=reason,
            rule_id=best.rule_id if best else None,
            category=best.category if best else None,
            matched_terms=list(best.matched_terms) if best else [],
            runner_up=candidates[1] if len(candidates) > 1 else None,
            candidates=candidates,
            citations=[self._common.triage_citation],
            explanation=explanation or (
                f"无法自动确定牵头单位（{reason}，置信度{conf:.2f}），候选规则：{_listed(candidates)}，"
                f"转{self._book.triage_unit}人工分拨；{self._territory_phrase()}。"
            ),
        )

    def dispatch(
        self,
        best: Scored,
        lead: str,
        conf: float,
        ranked: list[Candidate],
        excluded: frozenset[str],
    ) -> RoutingDecision:
        rule = best.rule
        cooperating = self._cooperating(rule, lead)
        terms = "、".join(best.terms) + ("（另有类别提示加分）" if best.hinted else "")
        redispatch = f"，已排除退单单位{'、'.join(sorted(excluded))}" if excluded else ""
        return self._base(
            outcome=Outcome.dispatch,
            category=rule.category,
            lead_unit=lead,
            cooperating_units=cooperating,
            confidence=conf,
            needs_triage=False,
            rule_id=rule.id,
            matched_terms=list(best.terms),
            runner_up=ranked[1] if len(ranked) > 1 else None,
            candidates=ranked,
            citations=[rule.citation],
            explanation=(
                f"规则{rule.id}命中「{terms}」，按{rule.citation.file}“{rule.citation.clause[:40]}”"
                f"由{lead}牵头{redispatch}；{self._territory_phrase()}。"
            ),
        )

    def _cooperating(self, rule: Rule, lead: str) -> list[str]:
        cooperating = [u for u in rule.cooperating if u != lead]
        territory = self._territory.name if self._territory else None
        if rule.territory_cooperates and territory and territory != lead and territory not in cooperating:
            cooperating.append(territory)
        return cooperating

    def ruled(self, ruling: Ruling, rule: Rule | None = None, lead: str | None = None,
              overridden: bool = False) -> RoutingDecision:
        """The dispatch desk's ruling as a decision: with ``rule``, a dispatch to ``lead`` citing the rule's clause
        (``overridden``: the desk named a lead other than the rule's); without, the desk closed the matter."""
        heard = f"{ruling.desk}人工{'派单' if rule else '办结'}（{ruling.ruling_id}）：{ruling.reason}"
        if rule is None or lead is None:
            return self._base(outcome=Outcome.close, confidence=1.0, needs_triage=False,
                              citations=[self._common.triage_citation],
                              explanation=f"{heard}；不派工单。")
        named = "属地街镇" if rule.lead == TERRITORY_LEAD else rule.lead
        chosen = f"（规则的牵头单位为{named}，裁定改由{lead}牵头）" if overridden else ""
        return self._base(
            outcome=Outcome.dispatch,
            category=rule.category,
            lead_unit=lead,
            cooperating_units=self._cooperating(rule, lead),
            confidence=1.0,
            needs_triage=False,
            rule_id=rule.id,
            citations=[rule.citation, self._common.triage_citation],
            explanation=(
                f"{heard}；适用规则{rule.id}，按{rule.citation.file}“{rule.citation.clause[:40]}”"
                f"由{lead}牵头{chosen}；{self._territory_phrase()}。"
            ),
        )
