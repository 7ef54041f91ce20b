"""The facts stored per ticket answer exactly what walking the ticket states answers: campaign counts (the
replay's ``CohortIndex``) against ``TicketCounts``, and scorecard ``tally`` over ``unit_facts`` against
``compute``, over many varied histories and at many instants (the facts' own times ± one microsecond)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from services.domain import scorecards
from services.domain.campaigns import (CampaignState, CohortAnswers, CohortIndex, TicketCounts, advance,
                                       cohort_facts, evaluate, evaluation_times, questions)
from services.domain.tickets import TicketState
from tests.conftest import cst
from tests.histories import campaigns, histories, moments


@pytest.fixture(scope="module")
def tickets(rules) -> list[TicketState]:  # type: ignore[no-untyped-def]
    return histories(rules, 400, seed=3)


def test_the_histories_are_varied(tickets) -> None:  # type: ignore[no-untyped-def]
    actions = {t.action for s in tickets for t in s.transitions}
    assert {"dispatch", "acknowledge", "resolve", "extend", "return", "callback", "triage"} <= actions
    assert any(len(c.due) > 1 for s in tickets for c in s.cycles)  # extensions
    assert any(c.kind == "reopen" for s in tickets for c in s.cycles)
    assert any(s.first_dispatched_at and s.first_dispatched_at < s.opened_at for s in tickets)
    assert any(len(s.resolved_spans()) > 1 for s in tickets)  # resolved, reopened, resolved again
    assert all([t.at for t in s.transitions] == sorted(t.at for t in s.transitions) for s in tickets)


def test_resolved_spans_are_resolved_as_of(tickets) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(1)
    for state in tickets:
        spans = state.resolved_spans()
        for m in moments([state], rnd, 6):
            assert state.resolved_as_of(m) == any(a <= m and (b is None or m < b) for a, b in spans), (state, m)


def test_resolved_spans_follow_resolved_as_of_on_an_unsorted_history(tickets) -> None:  # type: ignore[no-untyped-def]
    state = next(s for s in tickets if len(s.resolved_spans()) > 1)
    shuffled = state.model_copy(update={"transitions": list(reversed(state.transitions))})
    rnd = random.Random(2)
    for m in moments([state], rnd, 20):
        assert shuffled.resolved_as_of(m) == any(a <= m and (b is None or m < b) for a, b in shuffled.resolved_spans())


def test_cohort_index_answers_like_the_walk(tickets) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(4)
    instants = moments(tickets, rnd, 40)
    for campaign in campaigns():
        walk, index = TicketCounts(campaign, tickets), CohortIndex.of(campaign, tickets)
        for at in instants:
            assert index.enrolled(at) == walk.enrolled(at)
            assert index.first_opened(at) == walk.first_opened(at)
            for before in (at, at - timedelta(days=rnd.uniform(0, 14)), at - timedelta(hours=1)):
                assert index.done(before, at) == walk.done(before, at), (campaign.id, before, at)


def test_cohort_index_replaces_a_restored_ticket(rules, tickets) -> None:  # type: ignore[no-untyped-def]
    """Storing every intermediate state of each ticket (as the pipeline does) leaves the same index."""
    campaign = campaigns()[0]
    index = CohortIndex()
    rnd = random.Random(5)
    for state in tickets:
        for k in range(1, len(state.transitions) + 1):  # a prefix of the history stands for an earlier state
            earlier = state.model_copy(update={"transitions": state.transitions[:k]})
            index.replace(state.ticket_id, cohort_facts(campaign, earlier))
        index.replace(state.ticket_id, cohort_facts(campaign, state))
    fresh = CohortIndex.of(campaign, tickets)
    assert (index._opened, index._from, index._until, index._early) == (
        fresh._opened, fresh._from, fresh._until, fresh._early)
    for at in moments(tickets, rnd, 10):
        assert index.done(at, at) == fresh.done(at, at)
    index.replace(tickets[0].ticket_id, None)
    assert len(index) == len(fresh) - (cohort_facts(campaign, tickets[0]) is not None)


def test_evaluations_and_escalations_are_unchanged(tickets) -> None:  # type: ignore[no-untyped-def]
    """``advance`` with the walk, with the index and with prepared answers (as the SLA store gives them)."""
    end = cst("2025-08-01 00:00")
    for campaign in campaigns():
        walk, index = TicketCounts(campaign, tickets), CohortIndex.of(campaign, tickets)
        instants = evaluation_times(campaign, None, end)
        q = questions(campaign, instants)
        answers = CohortAnswers({at: walk.enrolled(at) for at in q.cohort_at},
                                {at: walk.first_opened(at) for at in q.cohort_at},
                                {pair: walk.done(*pair) for pair in q.done})
        results = [advance(campaign, CampaignState(campaign_id=campaign.id), counts, end)
                   for counts in (walk, index, answers)]
        assert results[0] == results[1] == results[2]
        for at in instants[::7]:
            assert evaluate(campaign, walk, at) == evaluate(campaign, index, at)
    statuses = {r.status for c in campaigns() for r in advance(c, CampaignState(campaign_id=c.id),
                                                                 CohortIndex.of(c, tickets), end)[0].history}
    assert {"on_track", "at_risk", "missed"} <= statuses


def test_tally_of_unit_facts_is_compute(tickets) -> None:  # type: ignore[no-untyped-def]
    facts = [f for s in tickets for f in scorecards.unit_facts(s)]
    rnd = random.Random(6)
    instants = moments(tickets, rnd, 150)
    for now in instants:
        assert scorecards.tally(facts, now) == scorecards.compute(tickets, now), now
    final = scorecards.compute(tickets, instants[-1])
    assert all(s.ratio(r) is not None for s in final[:1] for r in ("response", "resolution", "on_time"))
    assert sum(s.overdue for s in final) > 0 and sum(s.reopened for s in final) > 0


def test_tally_per_ticket(tickets) -> None:  # type: ignore[no-untyped-def]
    """Ticket by ticket, so that a difference names the history that causes it."""
    rnd = random.Random(7)
    for state in tickets:
        facts = scorecards.unit_facts(state)
        for now in moments([state], rnd, 8):
            assert scorecards.tally(facts, now) == scorecards.compute([state], now), (state, now)
