from __future__ import annotations

from datetime import timedelta

from services.domain import deadlines, sla
from services.domain.tickets import Cycle
from services.domain.validation import Rejection
from tests.conftest import cst
from tests.factories import DESK, decision, review, update, work_order


def _kinds(found):  # type: ignore[no-untyped-def]
    return [(e.kind.value, e.level, e.threshold, e.at) for e in found]


def test_untouched_ticket_gets_warnings_then_overdue_levels(rules) -> None:  # type: ignore[no-untyped-def]
    state = sla.on_work_order(None, work_order("T1", cst("2025-06-09 09:00")), rules)  # Monday
    state, found, upcoming = sla.sweep(state, cst("2025-06-30 00:00"), rules)
    assert _kinds(found) == [
        ("ack_overdue", 1, None, cst("2025-06-10 09:00")),
        ("ack_overdue", 2, None, cst("2025-06-11 09:00")),
        ("resolve_warning", 1, 0.5, cst("2025-06-11 21:00")),  # 2.5 of the 5 working days
        ("resolve_warning", 1, 0.75, cst("2025-06-13 03:00")),  # 3.75 of them
        ("resolve_overdue", 1, None, cst("2025-06-16 09:00")),
        ("resolve_overdue", 2, None, cst("2025-06-17 09:00")),
        ("resolve_overdue", 3, None, cst("2025-06-23 09:00")),
    ]
    assert upcoming is None
    again, nothing, _ = sla.sweep(state, cst("2025-07-30 00:00"), rules)
    assert nothing == [] and again == state  # emitted once


def test_warnings_count_working_time_across_a_holiday(rules) -> None:  # type: ignore[no-untyped-def]
    """Dispatched the day before 国庆 2025 (1–8 Oct off, Saturday 11 Oct a make-up working day), due 14 Oct: the
    50 % warning comes after 2.5 working days, not in the middle of the holiday (calendar half: 7 Oct)."""
    state = sla.on_work_order(None, work_order("T1", cst("2025-09-30 10:00")), rules)
    _, found, _ = sla.sweep(state, cst("2025-10-31 00:00"), rules)
    warnings = [(e.threshold, e.at) for e in found if e.kind.value == "resolve_warning"]
    assert warnings == [(0.5, cst("2025-10-10 22:00")), (0.75, cst("2025-10-13 04:00"))]
    assert [e.at for e in found if e.kind.value == "resolve_overdue"][0] == cst("2025-10-14 10:00")


def test_warnings_of_a_limit_in_hours_count_elapsed_time() -> None:
    from services.domain.clock import WorkCalendar
    from services.domain.policies import Limit

    start, due = cst("2025-09-30 20:00"), cst("2025-10-01 20:00")  # 24 hours, into the holiday
    assert deadlines._share(start, due, 0.5, Limit(24, "hours"), WorkCalendar()) == cst("2025-10-01 08:00")


def test_timely_ticket_gets_nothing(rules) -> None:  # type: ignore[no-untyped-def]
    state = sla.on_work_order(None, work_order("T1", cst("2025-06-09 09:00")), rules)
    for action, at in (("acknowledge", "2025-06-09 11:00"), ("resolve", "2025-06-11 10:00")):
        state = sla.on_update(state, update("T1", action, cst(at)), rules).state
    _, found, upcoming = sla.sweep(state, cst("2025-12-31 00:00"), rules)
    assert found == [] and upcoming is None


def test_answer_is_the_same_whenever_the_question_is_asked(rules) -> None:  # type: ignore[no-untyped-def]
    """Sweeping often (replay) or once at the end (a worker that was down) emits the same escalations."""
    base = sla.on_work_order(None, work_order("T1", cst("2025-06-09 09:00")), rules)
    steps = [("acknowledge", "2025-06-11 10:00"), ("resolve", "2025-06-18 10:00")]
    incremental, emitted = base, []
    for action, at in steps:
        incremental, found, _ = sla.sweep(incremental, cst(at) - timedelta(microseconds=1), rules)
        emitted += found
        incremental = sla.on_update(incremental, update("T1", action, cst(at), event_id=action), rules).state
    _, found, _ = sla.sweep(incremental, cst("2025-08-01 00:00"), rules)
    emitted += found
    late = base
    for action, at in steps:
        late = sla.on_update(late, update("T1", action, cst(at), event_id=action), rules).state
    _, at_once, _ = sla.sweep(late, cst("2025-08-01 00:00"), rules)
    assert sorted(e.escalation_id for e in emitted) == sorted(e.escalation_id for e in at_once)
    assert {e.kind.value for e in at_once} == {"ack_overdue", "resolve_warning", "resolve_overdue"}
    assert max(e.level for e in at_once if e.kind.value == "resolve_overdue") == 2  # resolved before level 3


def test_extension_before_the_deadline_prevents_the_breach(rules) -> None:  # type: ignore[no-untyped-def]
    state = sla.on_work_order(None, work_order("T1", cst("2025-06-09 09:00")), rules)
    state = sla.on_update(state, update("T1", "acknowledge", cst("2025-06-09 10:00")), rules).state
    state = sla.on_update(state, update("T1", "extend", cst("2025-06-13 10:00"), new_due=cst("2025-06-27 18:00"),
                                        reason="需协调"), rules).state
    _, found, _ = sla.sweep(state, cst("2025-06-16 09:00"), rules)  # asked, not granted yet: the old deadline holds
    assert ("resolve_overdue", 1) in {(e.kind.value, e.level) for e in found}
    state = sla.on_update(state, review("T1", cst("2025-06-13 15:00")), rules).state
    _, found, _ = sla.sweep(state, cst("2025-06-27 17:00"), rules)
    assert "resolve_overdue" not in {e.kind.value for e in found}
    _, found, _ = sla.sweep(state, cst("2025-06-27 18:00"), rules)
    assert ("resolve_overdue", 1) in {(e.kind.value, e.level) for e in found}


def test_reopen_rearms_the_clock_with_new_ids(rules) -> None:  # type: ignore[no-untyped-def]
    state = sla.on_work_order(None, work_order("T1", cst("2025-06-09 09:00")), rules)
    for action, at, extra in (("acknowledge", "2025-06-09 10:00", {}), ("resolve", "2025-06-10 10:00", {}),
                              ("callback", "2025-06-11 10:00", {"satisfied": False, "reason": "未解决"})):
        state = sla.on_update(state, update("T1", action, cst(at), **extra), rules).state
    _, found, _ = sla.sweep(state, cst("2025-06-30 00:00"), rules)
    overdue = [e for e in found if e.kind.value == "resolve_overdue"]
    assert overdue and all(e.details["cycle"] == 2 and e.details["cycle_kind"] == "reopen" for e in overdue)
    assert overdue[0].at == cst("2025-06-16 10:00")


def test_ids_are_deterministic() -> None:
    assert deadlines.escalation_id("ack_overdue", "T1", 1, 1, None) == deadlines.escalation_id(
        "ack_overdue", "T1", 1, 1, None)
    assert deadlines.escalation_id("ack_overdue", "T1", 1, 1, None) != deadlines.escalation_id(
        "ack_overdue", "T1", 2, 1, None)


def test_policies_are_chosen_by_source_category_and_urgency(rules) -> None:  # type: ignore[no-untyped-def]
    p = rules.policies.for_ticket
    assert p(jurisdiction="qingpu", source="hotline_12345", category="x", urgency="normal").name == "defaults"
    assert p(jurisdiction="qingpu", source="petition", category="x", urgency="normal").resolve.describe() == "60 days"
    lamp = p(jurisdiction="zhalantun", source="hotline_12345", category="street_lamp", urgency="urgent")
    assert lamp.resolve.describe() == "24 hours" and "24小时" in lamp.citation


def test_zhalantun_facility_faults_get_24_hours_whatever_the_urgency(rules) -> None:  # type: ignore[no-untyped-def]
    """任务清单 二、(一)5: every 道路 / 路灯 (and, by 二、(一)1, 排水管沟) fault found gets a repair crew within 24 hours,
    not only urgent tickets; 公交站牌 / 候车亭 (street_facilities, 四、(三)10, 城管执法局) keep the default limits."""
    p = rules.policies.for_ticket
    for category in ("street_lamp", "road_damage", "drainage_flooding"):
        for urgency in ("normal", "urgent"):
            for source in ("hotline_12345", "grid_inspection"):
                policy = p(jurisdiction="zhalantun", source=source, category=category, urgency=urgency)
                assert policy.name.startswith("zhalantun-municipal-facility-faults"), (category, urgency, source)
                assert policy.resolve.describe() == "24 hours" and "二、(一)5" in policy.citation
    assert p(jurisdiction="zhalantun", source="hotline_12345", category="street_facilities",
             urgency="normal").name == "defaults"
    assert p(jurisdiction="qingpu", source="hotline_12345", category="street_lamp", urgency="normal").name == "defaults"
    # a non-urgent street-lamp ticket: resolve due 24 natural hours after dispatch
    order = work_order("ZL1", cst("2025-06-13 17:00"), unit="住建局", jurisdiction="zhalantun", category="street_lamp",
                       content="路灯不亮", address="扎兰屯市兴华街道",
                       decision=decision("ZL1", "住建局", jurisdiction="zhalantun", category="street_lamp"))
    state = sla.on_work_order(None, order, rules)
    assert (state.jurisdiction, state.category, state.urgency) == ("zhalantun", "street_lamp", "normal")
    assert rules.policy_for(state).name == "zhalantun-municipal-facility-faults"
    _, found, _ = sla.sweep(state, cst("2025-06-20 00:00"), rules)
    assert ("resolve_overdue", 1, None, cst("2025-06-14 17:00")) in _kinds(found)
    assert p(jurisdiction="qingpu", source="iot_alert", category="x", urgency="normal").name == "iot-alerts"


def test_zhalantun_urgent_faults_and_alerts_keep_the_urgent_clocks(rules) -> None:  # type: ignore[no-untyped-def]
    """The first matching rule gives every key: a Zhalantun facility fault that is urgent, or an IoT alert, keeps the
    plan's 24 hours and takes the desk's 30 minutes and the escalation delays any other urgent ticket or alert gets."""
    p = rules.policies.for_ticket

    def clocks(policy):  # type: ignore[no-untyped-def]
        return (policy.ack.describe(), [x.describe() for x in policy.ack_levels],
                [x.describe() for x in policy.resolve_levels], policy.triage.limit.describe(),
                [x.describe() for x in policy.triage.levels])

    urgent = p(jurisdiction="qingpu", source="hotline_12345", category="x", urgency="urgent")
    alert = p(jurisdiction="qingpu", source="iot_alert", category="x", urgency="normal")
    for category in ("street_lamp", "road_damage", "drainage_flooding"):
        road = p(jurisdiction="zhalantun", source="grid_inspection", category=category, urgency="urgent")
        assert clocks(road) == clocks(urgent) and road.resolve.describe() == "24 hours"
        assert road.triage.limit.describe() == "0.5 hours"
        for urgency in ("normal", "urgent"):  # an alert's clocks, whatever its urgency, as elsewhere
            sensor = p(jurisdiction="zhalantun", source="iot_alert", category=category, urgency=urgency)
            assert clocks(sensor) == clocks(alert) and "二、(一)5" in sensor.citation
        ordinary = p(jurisdiction="zhalantun", source="hotline_12345", category=category, urgency="normal")
        assert ordinary.triage.limit.describe() == "2 hours"
        assert [x.describe() for x in ordinary.resolve_levels] == ["0 hours", "12 hours", "48 hours"]


def test_policy_categories_exist_in_the_taxonomy(rules) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from tests.conftest import REPO

    taxonomy = yaml.safe_load((REPO / "services/router/rulebooks/categories.yaml").read_text(encoding="utf-8"))
    known = {c["id"] for c in taxonomy["categories"]}
    for rule in rules.policies.rules:
        assert rule.match.get("category", frozenset()) <= known, rule.name
        assert rule.citation.strip(), rule.name


def test_planned_escalations_keep_the_time_zone_of_the_history(rules) -> None:  # type: ignore[no-untyped-def]
    """Plans are cached by the ticket's cycles; the same instants written with another UTC offset compare equal
    but must still give escalations in that offset (they are printed with it)."""
    from datetime import UTC

    def escalations(zone):  # type: ignore[no-untyped-def]
        state = sla.on_work_order(None, work_order("TZ1", cst("2025-06-09 09:00").astimezone(zone)), rules)
        _, found, _ = sla.sweep(state, cst("2025-06-30 00:00"), rules)
        return [e.model_dump_json() for e in found]

    local = escalations(cst("2025-06-09 09:00").tzinfo)
    utc = escalations(UTC)
    assert local != utc and len(local) == len(utc)
    assert all('"at":"2025-06-' in e and "+08:00" in e for e in local)
    assert all("+08:00" not in e for e in utc)
    assert escalations(cst("2025-06-09 09:00").tzinfo) == local


def _reference_scheduled(state, policy, calendar):  # type: ignore[no-untyped-def]
    """The plan computed from scratch, without caches (what ``scheduled`` computed before it cached each
    cycle's candidates): as (at, offset, id, deadline) for each planned escalation."""
    from schemas import EscalationKind

    def end(cycle, *moments):  # type: ignore[no-untyped-def]
        known = [m for m in (*moments, cycle.ended_at) if m is not None]
        return min(known) if known else None

    def crossing(cycle, instant_for_due):  # type: ignore[no-untyped-def]
        for i, segment in enumerate(cycle.due):
            until = cycle.due[i + 1].effective_from if i + 1 < len(cycle.due) else None
            candidate = max(segment.effective_from, instant_for_due(segment.due))
            if until is None or candidate < until:
                return candidate
        return None

    out = []

    def plan(c, kind, level, at, deadline, threshold=None):  # type: ignore[no-untyped-def]
        out.append((at, at.utcoffset(), deadlines.escalation_id(kind.value, state.ticket_id, c.index, level, threshold),
                    deadline, deadline.utcoffset()))

    for c in state.cycles:
        if c.ack_due is not None:
            done = end(c, c.acked_at, c.resolved_at)
            if done is None or done > c.ack_due:
                for level, delay in enumerate(policy.ack_levels[:3], start=1):
                    at = delay.after(c.ack_due, calendar)
                    if done is None or at < done:
                        plan(c, EscalationKind.ack_overdue, level, at, c.ack_due)
        done = end(c, c.resolved_at)
        limit = policy.resolve_limit(c.kind)
        for t in policy.warnings:
            if limit.unit == "working_days":
                at = crossing(c, lambda due, c=c, t=t: calendar.add_working_days(
                    c.start, t * calendar.working_days_between(c.start, due)))
            else:
                at = crossing(c, lambda due, c=c, t=t: c.start + (due - c.start) * t)
            if at is not None and (done is None or at < done):
                plan(c, EscalationKind.resolve_warning, 1, at, c.resolve_due_at(at), t)
        breach = crossing(c, lambda due: due)
        if breach is not None and (done is None or breach < done):
            for level, delay in enumerate(policy.resolve_levels[:3], start=1):
                at = delay.after(breach, calendar)
                if done is None or at < done:
                    plan(c, EscalationKind.resolve_overdue, level, at, breach)
    return sorted(out, key=lambda p: (p[0], p[2]))


def _planned(state, policy, calendar):  # type: ignore[no-untyped-def]
    """The plan of the units' cycles (the desk's clocks, not in the reference, have tests of their own)."""
    return [(p.at, p.at.utcoffset(), p.escalation_id, p.deadline, p.deadline.utcoffset())
            for p in deadlines.scheduled(state, policy, calendar) if isinstance(p.cycle, Cycle)]


def test_plans_follow_every_change_of_the_cycles(rules) -> None:  # type: ignore[no-untyped-def]
    """Re-planning a ticket after each change (from the cached candidates of its cycles) gives what a fresh
    computation gives: acknowledgement, extension, resolution, reopening, an extension of the new cycle, and on
    other tickets returns with and without acknowledgement."""
    histories = {
        "PC1": [("acknowledge", "2025-06-11 10:00", {}),
                ("extend", "2025-06-12 10:00", {"new_due": cst("2025-06-27 18:00"), "reason": "需协调"}),
                ("review_extension", "2025-06-12 15:00", {"unit": DESK}),
                ("resolve", "2025-06-20 10:00", {}),
                ("callback", "2025-06-21 10:00", {"satisfied": False, "reason": "未解决"}),
                ("extend", "2025-06-24 10:00", {"new_due": cst("2025-07-15 18:00"), "reason": "需协调"}),
                ("review_extension", "2025-06-25 10:00", {"unit": DESK}),
                ("resolve", "2025-07-20 10:00", {})],
        "PC2": [("acknowledge", "2025-06-12 10:00", {}), ("return", "2025-06-13 10:00", {})],
        "PC3": [("return", "2025-06-16 10:00", {})],  # returned late, never acknowledged
    }
    for ticket, steps in histories.items():
        state = sla.on_work_order(None, work_order(ticket, cst("2025-06-09 09:00")), rules)
        for step in [*steps, None]:
            policy = rules.policy_for(state)
            for _ in range(2):  # the second call is answered from the cache
                assert _planned(state, policy, rules.calendar) == _reference_scheduled(state, policy, rules.calendar)
            if step is None:
                break
            action, at, extra = step
            result = sla.on_update(state, update(ticket, action, cst(at), **extra), rules)
            assert not isinstance(result, Rejection), (action, result)
            state = result.state
        assert state.cycles[-1].resolved_at is not None or state.cycles[-1].ended_at is not None


def test_planned_ids_are_escalation_ids() -> None:
    for parts in (("ack_overdue", "T1", 1, 1, None), ("resolve_warning", "QI2025-1", 2, 1, 0.75),
                  ("resolve_warning", "x", 10, 1, 0.5), ("resolve_overdue", "T1", 1, 3, None)):
        assert deadlines._planned_id(*parts) == deadlines.escalation_id(*parts)


def test_guessed_calendar_years_are_recorded_as_when_each_plan_computed_its_levels(rules) -> None:  # type: ignore[no-untyped-def]
    """2027 is known to neither chinese_calendar nor the (empty) override file. A ticket dispatched on Friday
    18 Dec 2026 breaches on 25 Dec; its level 3 (5 working days later) falls in January 2027. The candidates work
    that out ahead, but the year counts as guessed only while the overdue levels are part of the plan (the ticket
    not resolved before the breach), as when each plan computed them."""
    from services.domain.clock import WorkCalendar

    def reference_years(state):  # type: ignore[no-untyped-def]
        calendar = WorkCalendar(rules.calendar.overrides)
        _reference_scheduled(state, rules.policy_for(state), calendar)
        return calendar.fallback_years

    opened = sla.on_work_order(None, work_order("FY1", cst("2026-12-18 09:00")), rules)
    resolved = sla.on_update(opened, update("FY1", "resolve", cst("2026-12-22 10:00")), rules).state
    calendar = WorkCalendar(rules.calendar.overrides)
    for state, expected in ((opened, {2027}), (resolved, set()), (opened, {2027})):
        assert reference_years(state) == expected
        for _ in range(2):  # computed, then from the cache
            calendar.fallback_years.clear()
            deadlines.scheduled(state, rules.policy_for(state), calendar)
            assert calendar.fallback_years == expected


def test_the_plan_cache_keeps_its_newer_half_and_a_replay_can_widen_it(rules, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """When full, the cache drops its older half (it used to drop everything, so a replay with more tickets open
    than it holds re-planned every ticket at every sweep); ``planning_cache`` widens it for a block, then trims
    it back to the default."""
    monkeypatch.setattr(deadlines, "_CANDIDATES", {})
    monkeypatch.setattr(deadlines, "_CANDIDATES_MAX", 8)
    states = [sla.on_work_order(None, work_order(f"T{i}", cst("2025-06-09 09:00")), rules) for i in range(12)]
    for state in states:
        sla.next_check(state, rules)
    kept = {key[0] for key in deadlines._CANDIDATES}
    assert kept == {f"T{i}" for i in range(4, 12)}  # full at 8: T0-T3 dropped, the newest kept
    with deadlines.planning_cache(100):
        for state in states:
            sla.next_check(state, rules)
        assert len(deadlines._CANDIDATES) == 12 and deadlines._CANDIDATES_MAX == 100
    assert deadlines._CANDIDATES_MAX == 8 and len(deadlines._CANDIDATES) == 8
    with deadlines.planning_cache(4):  # never below the default
        assert deadlines._CANDIDATES_MAX == 8
    expected = deadlines.scheduled(states[0], rules.policy_for(states[0]), rules.calendar)
    deadlines._CANDIDATES.clear()
    assert deadlines.scheduled(states[0], rules.policy_for(states[0]), rules.calendar) == expected  # same answer


def test_the_declared_kinds_and_levels_are_what_the_clocks_raise(rules) -> None:  # type: ignore[no-untyped-def]
    """The SLA worker declares ``raised_levels``' series from the start (at 0) for the alerts' increase(): every
    kind and level a sweep raises over random histories (with repeat reports after closure) is declared, and every
    declared one is raised."""
    from tests.factories import apply_all, repeat_report
    from tests.histories import histories

    raised: set[tuple[object, int]] = set()
    for state in histories(rules, 400, seed=11):
        if state.status.value == "closed":
            state = apply_all(state, rules, repeat_report(f"R-{state.ticket_id}", state.transitions[-1].at,
                                                          ticket=state.ticket_id))
        raised |= {(e.kind, e.level) for e in sla.sweep(state, state.opened_at + timedelta(days=120), rules)[1]}
    declared = {(kind, level) for kind, levels in deadlines.raised_levels(rules.policies.policies()).items()
                for level in levels}
    assert raised == declared
    assert (deadlines.EscalationKind.ack_overdue, 3) not in declared  # every policy has two ack levels
