from __future__ import annotations

import math
from datetime import timedelta

from services.domain import sla
from services.domain.campaigns import (Campaign, CampaignState, CohortIndex, advance, enrolled,
                                       evaluate as evaluate_counts, evaluation_times, judged_at, next_evaluation)
from tests.conftest import cst
from tests.factories import CITE, decision, update, work_order


def _campaign(**kw) -> Campaign:  # type: ignore[no-untyped-def]
    base = dict(id="c1", name="test", jurisdiction="qingpu", target=0.7, start=cst("2025-06-01 00:00"),
                deadline=cst("2025-07-01 00:00"), citation=CITE, warmup_days=3, min_enrolled=2)
    return Campaign(**{**base, **kw})


def evaluate(campaign: Campaign, tickets, at):  # type: ignore[no-untyped-def]
    """The evaluation over these tickets' stored facts (as the replay keeps them)."""
    return evaluate_counts(campaign, CohortIndex.of(campaign, tickets), at)


def _tickets(rules, n: int, resolved: int, opened: str = "2025-06-02 10:00", resolve_at: str = "2025-06-05 10:00"):  # type: ignore[no-untyped-def]
    out = []
    for i in range(n):
        state = sla.on_work_order(None, work_order(f"T{i}", cst(opened), campaigns=["c1"]), rules)
        if i < resolved:
            state = sla.on_update(state, update(f"T{i}", "resolve", cst(resolve_at)), rules).state
        out.append(state)
    return out


def test_rate_counts_resolved_and_not_reopened(rules) -> None:  # type: ignore[no-untyped-def]
    tickets = _tickets(rules, 10, 7)
    reopened = sla.on_update(tickets[0], update("T0", "callback", cst("2025-06-06 10:00"), satisfied=False,
                                                reason="no"), rules).state
    report = evaluate(_campaign(), [reopened, *tickets[1:]], cst("2025-06-10 00:00"))
    assert (report.enrolled, report.resolved, report.rate) == (10, 6, 0.6)
    early = evaluate(_campaign(), tickets, cst("2025-06-04 00:00"))
    assert early.resolved == 0  # facts after the evaluation instant do not count


def test_projection_uses_recent_velocity(rules) -> None:  # type: ignore[no-untyped-def]
    tickets = _tickets(rules, 20, 6, resolve_at="2025-06-08 10:00")
    report = evaluate(_campaign(), tickets, cst("2025-06-10 00:00"))
    # 6 resolutions in the last 9 days -> 0.667/day, 21 days left -> +14 -> capped at 20 of 20
    assert report.projected_rate == 1.0 and report.status == "on_track"
    stalled = evaluate(_campaign(), tickets, cst("2025-06-25 00:00"))  # nothing resolved in the last 14 days
    assert stalled.projected_rate == 0.3 and stalled.status == "at_risk"
    assert stalled.needed_per_day == round(8 / 6, 3)


def test_met_and_missed_at_the_deadline(rules) -> None:  # type: ignore[no-untyped-def]
    assert evaluate(_campaign(), _tickets(rules, 10, 7), cst("2025-07-01 00:00")).status == "met"
    assert evaluate(_campaign(), _tickets(rules, 10, 6), cst("2025-07-01 00:00")).status == "missed"


def test_a_plan_that_names_its_tickets_is_judged_on_all_of_them(rules) -> None:  # type: ignore[no-untyped-def]
    """化解率 of 1864 tickets (shared/domain.md: "of a fixed set of tickets ... the share resolved by the deadline"):
    7 resolved of the 10 enrolled so far is 7 of 1864, not 70 %; with more enrolled than planned, all count."""
    planned = _campaign(planned_cohort=1864)
    at_deadline = evaluate(planned, _tickets(rules, 10, 7), cst("2025-07-01 00:00"))
    assert (at_deadline.enrolled, at_deadline.resolved, at_deadline.rate, at_deadline.status) == (
        10, 7, round(7 / 1864, 6), "missed")
    before = evaluate(planned, _tickets(rules, 10, 7), cst("2025-06-10 00:00"))
    assert before.status == "at_risk" and before.projected_rate < 0.7
    assert before.needed_per_day == round((math.ceil(0.7 * 1864) - 7) / 21, 3)
    assert evaluate(_campaign(planned_cohort=8), _tickets(rules, 10, 7), cst("2025-07-01 00:00")).status == "met"


def test_a_ticket_of_another_jurisdiction_does_not_count(rules) -> None:  # type: ignore[no-untyped-def]
    """A 扎兰屯 event that names a 青浦 campaign (a misconfigured source system) is not part of it."""
    qingpu, = _tickets(rules, 1, 1)
    other = sla.on_work_order(None, work_order("Z1", cst("2025-06-02 10:00"), jurisdiction="zhalantun",
                                               decision=decision("Z1", jurisdiction="zhalantun"),
                                               campaigns=["c1"]), rules)
    assert other.campaigns == ["c1"] and other.jurisdiction != qingpu.jurisdiction
    assert evaluate(_campaign(), [qingpu, other], cst("2025-06-10 00:00")).enrolled == 1


def test_schedule_is_daily_and_ends_at_the_deadline() -> None:
    c = _campaign()
    times = evaluation_times(c, None, cst("2025-08-01 00:00"))
    assert times[0] == cst("2025-06-01 00:00") and times[-1] == cst("2025-07-01 00:00") and len(times) == 31
    assert evaluation_times(c, cst("2025-06-10 00:00"), cst("2025-06-12 12:00")) == [
        cst("2025-06-11 00:00"), cst("2025-06-12 00:00")]
    assert next_evaluation(c, cst("2025-06-10 00:00")) == cst("2025-06-11 00:00")
    assert next_evaluation(c, cst("2025-06-10 05:00")) == cst("2025-06-11 00:00")
    assert next_evaluation(c, cst("2025-07-01 00:00")) is None


def test_at_risk_once_per_episode_and_missed_once(rules) -> None:  # type: ignore[no-untyped-def]
    c = _campaign()
    tickets = _tickets(rules, 10, 2)
    state, found = advance(c, CampaignState(campaign_id="c1"), CohortIndex.of(c, tickets), cst("2025-06-03 12:00"))
    assert found == []  # warm-up: three days after the first enrolment
    state, found = advance(c, state, CohortIndex.of(c, tickets), cst("2025-06-20 00:00"))
    assert [e.kind.value for e in found] == ["campaign_at_risk"]
    assert found[0].details["needed_per_day"] > 0 and found[0].campaign_id == "c1"
    state, found = advance(c, state, CohortIndex.of(c, tickets), cst("2025-06-28 00:00"))
    assert found == []  # still the same episode
    state, found = advance(c, state, CohortIndex.of(c, tickets), cst("2025-08-01 00:00"))
    assert [e.kind.value for e in found] == ["campaign_missed"]
    state, found = advance(c, state, CohortIndex.of(c, tickets), cst("2025-09-01 00:00"))
    assert found == []


def test_a_comfortable_campaign_never_cries_wolf(rules) -> None:  # type: ignore[no-untyped-def]
    c = _campaign()
    tickets = _tickets(rules, 10, 9, resolve_at="2025-06-03 10:00")
    _, found = advance(c, CampaignState(campaign_id="c1"), CohortIndex.of(c, tickets), cst("2025-07-02 00:00"))
    assert found == []


def test_shipped_campaigns_cite_the_plan(rules) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import REPO

    ids = {c.id: c for c in rules.campaigns.campaigns}
    assert {"qingpu-2025-hotspots-12345", "qingpu-2025-hotspots-petitions", "qingpu-2025-property-12345",
            "qingpu-2025-property-parking-petitions", "qingpu-2025-iot-alert-push"} <= set(ids)
    assert ids["qingpu-2025-hotspots-12345"].planned_cohort == 1864 and ids["qingpu-2025-hotspots-12345"].target == 0.7
    assert ids["qingpu-2025-hotspots-petitions"].planned_cohort == 619
    assert ids["qingpu-2025-iot-alert-push"].measure == "dispatched"
    for c in ids.values():
        assert (REPO / "plans" / c.citation.file).is_file()
        assert c.selector is None  # selector rules are off in the shipped definitions
        assert c.deadline - c.start > timedelta(days=30)


def test_a_ticket_of_another_source_that_names_the_campaign_is_not_enrolled(rules) -> None:  # type: ignore[no-untyped-def]
    """The plan counts 12345 tickets in one cohort and petitions in another: a mis-tagged petition counts in neither
    the 12345 cohort nor, untagged, the petitions'."""
    campaign = _campaign(sources=["hotline_12345"])
    hotline = sla.on_work_order(None, work_order("T1", cst("2025-06-02 10:00"), campaigns=["c1"]), rules)
    petition = sla.on_work_order(None, work_order("T2", cst("2025-06-02 10:00"), campaigns=["c1"], source="petition"),
                                 rules)
    assert [enrolled(campaign, t) for t in (hotline, petition)] == [True, False]
    assert evaluate(campaign, [hotline, petition], cst("2025-06-10 00:00")).enrolled == 1
    assert enrolled(_campaign(), petition)  # no sources: every source


def _pushed(rules, ticket: str, raised: str, dispatched: str):  # type: ignore[no-untyped-def]
    return sla.on_work_order(None, work_order(ticket, cst(raised), campaigns=["c1"], dispatched_at=cst(dispatched)),
                             rules)


def test_an_alert_raised_just_before_the_deadline_and_pushed_in_its_time_is_no_miss(rules) -> None:  # type: ignore[no-untyped-def]
    """A 100 % push rate: the deadline is judged 30 minutes after it, and an alert dispatched within 30 minutes of
    being raised counts from the moment it was raised."""
    push = _campaign(measure="dispatched", target=1.0, settle_minutes=30)
    tickets = [_pushed(rules, f"A{i}", "2025-06-20 10:00", "2025-06-20 10:00") for i in range(4)]
    tickets.append(_pushed(rules, "LATE", "2025-06-30 23:59", "2025-07-01 00:01"))  # 1 minute after the deadline
    state, found = advance(push, CampaignState(campaign_id="c1"), CohortIndex.of(push, tickets),
                           cst("2025-07-01 00:30"))
    final = state.history[-1]
    assert (final.at, final.status, final.enrolled, final.resolved) == (cst("2025-07-01 00:00"), "met", 5, 5)
    assert not [e for e in found if e.kind.value == "campaign_missed"]
    # without the settling time the same alert is a miss at the deadline
    strict = _campaign(measure="dispatched", target=1.0)
    state, found = advance(strict, CampaignState(campaign_id="c1"), CohortIndex.of(strict, tickets),
                           cst("2025-07-01 00:30"))
    assert state.history[-1].status == "missed" and [e.kind.value for e in found][-1] == "campaign_missed"


def test_a_push_after_its_time_counts_from_the_push(rules) -> None:  # type: ignore[no-untyped-def]
    push = _campaign(measure="dispatched", target=1.0, settle_minutes=30)
    slow = _pushed(rules, "SLOW", "2025-06-20 10:00", "2025-06-20 12:00")
    quick = _pushed(rules, "QUICK", "2025-06-20 10:00", "2025-06-20 10:20")
    counts = CohortIndex.of(push, [slow, quick])
    assert [counts.done(cst(t), cst("2025-06-21 00:00")) for t in ("2025-06-20 10:00", "2025-06-20 12:00")] == [1, 2]


def test_an_instant_is_judged_only_once_its_settling_time_has_passed() -> None:
    push = _campaign(measure="dispatched", target=1.0, settle_minutes=30)
    assert evaluation_times(push, cst("2025-06-29 00:00"), cst("2025-07-01 00:29")) == [cst("2025-06-30 00:00")]
    assert evaluation_times(push, cst("2025-06-30 00:00"), cst("2025-07-01 00:30")) == [cst("2025-07-01 00:00")]
    assert next_evaluation(push, cst("2025-06-30 00:00")) == cst("2025-07-01 00:30")
    assert next_evaluation(push, cst("2025-07-01 00:00")) is None
    # the SLA worker evaluates a chunk of instants up to the time its last one is judged: all of them, no fewer
    chunk = evaluation_times(push, cst("2025-06-25 00:00"), cst("2025-07-02 00:00"))[:3]
    assert evaluation_times(push, cst("2025-06-25 00:00"), judged_at(push, chunk[-1])) == chunk


def test_changing_a_campaigns_sources_recomputes_its_stored_facts() -> None:
    """The SLA store's facts key covers who enrols: a new key makes the backfill recompute every ticket's facts."""
    from services.domain.campaigns import CampaignBook
    from services.sla.store import facts_key

    keys = {facts_key(CampaignBook((_campaign(sources=s),))) for s in (None, ["hotline_12345"], ["petition"])}
    assert len(keys) == 3
    assert facts_key(CampaignBook((_campaign(settle_minutes=30),))) not in keys  # it moves a push's done period


def test_shipped_campaigns_name_the_source_of_their_cohort(rules) -> None:  # type: ignore[no-untyped-def]
    ids = {c.id: c.sources for c in rules.campaigns.campaigns}
    assert ids == {"qingpu-2025-hotspots-12345": ["hotline_12345"], "qingpu-2025-hotspots-petitions": ["petition"],
                   "qingpu-2025-property-12345": ["hotline_12345"],
                   "qingpu-2025-property-parking-petitions": ["petition"],
                   "qingpu-2025-iot-alert-push": ["iot_alert"]}


# What the plan gives for each shipped campaign: cohort, target, measure, deadline. 6月底前 = before 1 July 00:00 CST;
# the 2026-01-01 deadlines are this repository's reading of the plan's bare "2025年" (campaigns.yaml says so).
SHIPPED = {
    "qingpu-2025-hotspots-12345": (1864, 0.70, "resolved", "2025-07-01 00:00"),
    "qingpu-2025-hotspots-petitions": (619, 0.90, "resolved", "2025-07-01 00:00"),
    "qingpu-2025-property-12345": (274, 0.70, "resolved", "2026-01-01 00:00"),
    "qingpu-2025-property-parking-petitions": (38, 0.90, "resolved", "2026-01-01 00:00"),
    "qingpu-2025-iot-alert-push": (None, 1.0, "dispatched", "2026-01-01 00:00"),
}


def test_shipped_campaign_targets_and_deadlines(rules) -> None:  # type: ignore[no-untyped-def]
    import re

    ids = {c.id: c for c in rules.campaigns.campaigns}
    assert set(ids) == set(SHIPPED)
    for cid, (cohort, target, measure, deadline) in SHIPPED.items():
        c = ids[cid]
        assert (c.planned_cohort, c.target, c.measure, c.deadline) == (cohort, target, measure, cst(deadline)), cid
        assert c.jurisdiction == "qingpu" and c.start < c.deadline
        # the numbers are in the plan text the campaign quotes (quotes themselves: test_routing.py)
        quoted = "".join(re.findall(r"「([^」]+)」", c.citation.clause))
        assert f"{round(target * 100)}%" in quoted.replace(" ", ""), cid
        if cohort is not None:
            assert re.search(rf"(?<!\d){cohort} ?件", quoted), cid
        # a month-end deadline in the quote is the first instant of the next month; otherwise the plan gives only
        # the year 2025
        if "月底前" in quoted:
            month = int(re.search(r"(\d+) ?月底前", quoted).group(1))
            assert c.deadline == cst(f"2025-{month + 1:02d}-01 00:00"), cid
        else:
            assert c.deadline == cst("2026-01-01 00:00"), cid
    # 619 petitions at 90 %: the target counts in tickets, rounded up
    petitions = ids["qingpu-2025-hotspots-petitions"]
    assert (petitions.planned_cohort, petitions.target) == (619, 0.90)
    assert math.ceil(petitions.target * petitions.planned_cohort) == 558


# --- too little evidence to judge: insufficient_data, never escalated ---------------------------------------------


def _run(campaign: Campaign, tickets, now):  # type: ignore[no-untyped-def]
    """Every scheduled evaluation from the campaign's start up to ``now``: (statuses, escalation kinds)."""
    state, found = advance(campaign, CampaignState(campaign_id=campaign.id), CohortIndex.of(campaign, tickets), now)
    return [r.status for r in state.history], [(e.kind.value, e.level) for e in found]


def test_an_empty_campaign_is_insufficient_data_at_its_deadline_and_never_escalates() -> None:
    """Nothing enrolled means the service was not measuring (a replay of other data, a deployment after the
    campaign), not that the units failed: no ``missed``, no level-3 escalation to district leadership — with or
    without a plan's fixed cohort, for a resolution rate or the IoT alerts' 100 % push rate."""
    for campaign in (_campaign(), _campaign(planned_cohort=1864),
                     _campaign(measure="dispatched", target=1.0, warmup_days=1)):
        at_deadline = evaluate(campaign, [], campaign.deadline)
        assert (at_deadline.enrolled, at_deadline.resolved, at_deadline.status) == (0, 0, "insufficient_data")
        statuses, found = _run(campaign, [], cst("2027-03-01 00:00"))
        assert found == [] and len(statuses) == 31 and set(statuses) == {"insufficient_data"}
    assert CampaignState(campaign_id="c1").status == "insufficient_data"  # not yet evaluated is not on track


def test_a_fresh_deployment_does_not_escalate_past_campaigns(rules) -> None:  # type: ignore[no-untyped-def]
    """A service deployed in November 2026 on an empty database evaluates the shipped 2025 campaigns from their
    start: hundreds of evaluations, none escalated, none called on track, met or missed."""
    for campaign in rules.campaigns.campaigns:
        statuses, found = _run(campaign, [], cst("2026-11-15 09:00"))
        assert found == [] and statuses and set(statuses) == {"insufficient_data"}, campaign.id


def test_a_replay_of_one_rejected_line_escalates_nothing(router, rules, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The replay's clock runs to its last input's time even when that line is rejected; the shipped campaigns
    whose deadline passed were "missed" with no ticket at all (two level-3 campaign_missed)."""
    from services.replay.runner import run

    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "X1", "occurred_at": "2025-08-01T10:00:00+08:00"}\n', encoding="utf-8")
    result = run(events, None, router, rules)
    assert result.summary["rejected"] == 1 and result.summary["accepted"] == 0
    assert result.summary["escalations"] == {} and list(result.pipeline.escalations) == []
    assert {r.status for r in result.pipeline.campaign_reports(result.until)} == {"insufficient_data"}


def test_sparse_enrolment_is_not_on_track(rules) -> None:  # type: ignore[no-untyped-def]
    """Fewer than ``min_enrolled`` tickets before the deadline: too few to say on track. Without a plan's cohort the
    target is a share of the enrolled tickets, noise with 4 of them, either way; a good projection from 4 tickets
    of a plan's 38 is not evidence either."""
    sparse = _campaign(min_enrolled=5)
    none_done = evaluate(sparse, _tickets(rules, 4, 0), cst("2025-06-20 00:00"))
    assert (none_done.enrolled, none_done.projected_rate, none_done.status) == (4, 0.0, "insufficient_data")
    all_done = evaluate(sparse, _tickets(rules, 4, 4), cst("2025-06-20 00:00"))
    assert all_done.projected_rate == 1.0 and all_done.status == "insufficient_data"
    small_plan = _campaign(min_enrolled=5, planned_cohort=5, target=0.6)  # 4 done of the plan's 5 projects >= 60 %
    hopeful = evaluate(small_plan, _tickets(rules, 4, 4, resolve_at="2025-06-18 10:00"), cst("2025-06-20 00:00"))
    assert hopeful.projected_rate >= 0.6 and hopeful.status == "insufficient_data"
    statuses, found = _run(sparse, _tickets(rules, 4, 0), cst("2025-06-30 00:00"))  # before the deadline
    assert "on_track" not in statuses and "at_risk" not in statuses and found == []
    # at the deadline the measured rate is judged, however few the tickets: 0 of 4 resolved is a miss
    assert evaluate(sparse, _tickets(rules, 4, 0), sparse.deadline).status == "missed"
    assert evaluate(sparse, _tickets(rules, 4, 3), sparse.deadline).status == "met"


def test_a_plans_cohort_falling_short_with_sparse_enrolment_is_at_risk(rules) -> None:  # type: ignore[no-untyped-def]
    """The audit's case: 4 of the plan's 38 parking petitions enrolled, none resolved. It was on track at every
    evaluation and then missed. The plan's count (ceil(90 % × 38) = 35 done) at a pace of 0 a day is a shortfall the
    service sees: at risk once past the warm-up (escalated once, level 2), missed at the deadline (level 3)."""
    parking = _campaign(min_enrolled=5, planned_cohort=38, target=0.9)
    tickets = _tickets(rules, 4, 0)
    warming = evaluate(parking, tickets, cst("2025-06-04 00:00"))  # within 3 days of the first enrolment
    assert warming.status == "insufficient_data"
    later = evaluate(parking, tickets, cst("2025-06-10 00:00"))
    assert (later.enrolled, later.projected_rate, later.status) == (4, 0.0, "at_risk")
    statuses, found = _run(parking, tickets, cst("2025-08-01 00:00"))
    assert "on_track" not in statuses and statuses[-1] == "missed"
    assert found == [("campaign_at_risk", 2), ("campaign_missed", 3)]


def test_a_backlog_opened_before_the_start_gets_its_warm_up_from_the_start(rules) -> None:  # type: ignore[no-untyped-def]
    """The plan's 1864 tickets are a backlog opened before the campaign: at its start no pace can be measured yet, so
    the first days are too early to tell, not at risk (which was escalated at 00:00 of the first day)."""
    c = _campaign(planned_cohort=20, min_enrolled=5, start=cst("2025-06-10 00:00"))
    backlog = _tickets(rules, 20, 20, opened="2025-05-20 10:00", resolve_at="2025-06-11 10:00")
    statuses, found = _run(c, backlog, cst("2025-06-20 00:00"))
    assert statuses[:2] == ["insufficient_data"] * 2 and found == []  # before the resolutions of 06-11
    assert statuses[2:] == ["on_track"] * (len(statuses) - 2)
    stalled = _tickets(rules, 20, 0, opened="2025-05-20 10:00")
    assert evaluate(c, stalled, cst("2025-06-12 23:00")).status == "insufficient_data"
    assert evaluate(c, stalled, cst("2025-06-13 00:00")).status == "at_risk"


def test_net_reopenings_do_not_project_below_zero(rules) -> None:  # type: ignore[no-untyped-def]
    """More reopened than resolved in the velocity window: a negative pace, but never a negative projected rate."""
    tickets = _tickets(rules, 10, 8, resolve_at="2025-06-03 10:00")
    reopened = [sla.on_update(t, update(t.ticket_id, "callback", cst("2025-06-20 10:00"), satisfied=False, reason="no"),
                              rules).state for t in tickets[:6]]
    report = evaluate(_campaign(), [*reopened, *tickets[6:]], cst("2025-06-21 00:00"))
    assert report.resolved == 2 and report.projected_rate == 0.0 and report.status == "at_risk"


def test_a_failing_campaign_still_escalates_at_risk_and_missed(rules) -> None:  # type: ignore[no-untyped-def]
    """Enough tickets, no plan's cohort: 2 of 10 resolved is at risk past the warm-up and missed at the deadline."""
    c = _campaign(min_enrolled=5)
    statuses, found = _run(c, _tickets(rules, 10, 2), cst("2025-08-01 00:00"))
    assert found == [("campaign_at_risk", 2), ("campaign_missed", 3)]
    assert statuses[-1] == "missed" and statuses[-2] == "at_risk"
    # the warm-up days after the first enrolment (06-02 10:00, none resolved yet) are too early to tell, not on track
    assert statuses[:5] == ["insufficient_data"] * 5
    # and one that makes it is on track, then met, with no escalation
    statuses, found = _run(c, _tickets(rules, 10, 9, resolve_at="2025-06-03 10:00"), cst("2025-08-01 00:00"))
    assert found == [] and statuses[-1] == "met" and "on_track" in statuses and "at_risk" not in statuses


def test_insufficient_data_does_not_rearm_an_alarm(rules) -> None:  # type: ignore[no-untyped-def]
    """An at-risk alarm stands through insufficient_data evaluations (a ticket leaving the cohort, say): only
    ``rearm_days`` on-track evaluations in a row re-arm it, so at risk again is the same episode."""
    c = _campaign(min_enrolled=5)
    tickets = _tickets(rules, 10, 2)
    state, found = advance(c, CampaignState(campaign_id="c1"), CohortIndex.of(c, tickets), cst("2025-06-10 00:00"))
    assert [e.kind.value for e in found] == ["campaign_at_risk"] and state.alarmed
    few = CohortIndex.of(c, tickets[:4])  # 4 enrolled: below min_enrolled
    state, found = advance(c, state, few, cst("2025-06-15 00:00"))
    assert found == [] and state.status == "insufficient_data" and state.alarmed
    state, found = advance(c, state, CohortIndex.of(c, tickets), cst("2025-06-20 00:00"))
    assert found == [] and state.status == "at_risk"
