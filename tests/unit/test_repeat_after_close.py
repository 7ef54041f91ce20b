"""A repeat report (并单) that joins a ticket already closed: the ticket stays closed, and the dispatch desk hears of
it at once as ``repeat_after_close`` (policies.yaml ``defaults.repeat_after_close``), whatever order the repeat and
the closing callback arrive in."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from schemas import EscalationKind, Ruling
from services.domain import deadlines, dispatch, sla
from services.domain.lifecycle import Applied
from services.domain.tickets import Status, TicketState
from services.domain.validation import Rejection
from tests.conftest import cst
from tests.factories import DESK, apply_all, repeat_report, reported, update, work_order

REPEAT = EscalationKind.repeat_after_close


def _resolved(rules: Any) -> TicketState:
    state = sla.on_work_order(None, work_order("T1", cst("2025-06-09 09:00")), rules)
    assert isinstance(state, TicketState)
    for action, at in (("acknowledge", "2025-06-09 10:00"), ("resolve", "2025-06-10 16:00")):
        result = sla.on_update(state, update("T1", action, cst(at)), rules)
        assert isinstance(result, Applied)
        state = result.state
    return state


def _repeats_due(state: TicketState, now: str, rules: Any) -> list[tuple[str, int, str | None, datetime]]:
    _, found, _ = sla.sweep(state, cst(now), rules)
    return [(e.escalation_id, e.level, e.unit, e.at) for e in found if e.kind is REPEAT]


def test_a_repeat_after_the_satisfied_callback_goes_to_the_desk_once(rules: Any) -> None:
    callback = update("T1", "callback", cst("2025-06-11 09:00"))
    before = repeat_report("R-before", cst("2025-06-10 12:00"))  # while the unit worked on it: an ordinary repeat
    after = repeat_report("R-after", cst("2025-06-11 15:00"))
    state = apply_all(_resolved(rules), rules, before, callback, after)
    assert state.status is Status.closed and state.repeats == 2  # still closed: the desk decides
    # due at the report's time, not before; the next check is that moment
    assert _repeats_due(state, "2025-06-11 14:59", rules) == []
    assert sla.next_check(state, rules) == cst("2025-06-11 15:00")
    swept, found, upcoming = sla.sweep(state, cst("2025-06-11 15:00"), rules)
    assert [(e.kind, e.level, e.unit, e.at) for e in found] == [(REPEAT, 1, DESK, cst("2025-06-11 15:00"))]
    details = found[0].details
    assert details["repeat_update_id"] == "repeat:R-after" and details["closed_at"] == cst("2025-06-11 09:00").isoformat()
    assert details["repeat_after_close"] == 1 and "重办" in details["policy_citation"]
    assert details["ended_by"] == "callback"
    assert "deadline" not in details and upcoming is None
    assert sla.sweep(swept, cst("2025-06-12 09:00"), rules)[1] == []  # emitted once


def test_the_same_escalation_whatever_the_arrival_order(rules: Any) -> None:
    """Repeats come through intake and the router, callbacks straight from the desk: either may arrive first."""
    callback = update("T1", "callback", cst("2025-06-11 09:00"))
    late, early = repeat_report("R2", cst("2025-06-11 15:00")), repeat_report("R1", cst("2025-06-10 12:00"))
    in_order = apply_all(_resolved(rules), rules, early, callback, late)
    repeats_first = apply_all(_resolved(rules), rules, late, early, callback)
    assert _repeats_due(in_order, "2025-06-12 09:00", rules) == _repeats_due(repeats_first, "2025-06-12 09:00", rules)
    assert len(_repeats_due(in_order, "2025-06-12 09:00", rules)) == 1
    assert deadlines.repeats_after_close(repeats_first) == [
        deadlines.RepeatAfterClose(1, "repeat:R2", cst("2025-06-11 15:00"), cst("2025-06-11 09:00"), "callback")]


def test_a_repeat_at_the_instant_of_closure_comes_after_it(rules: Any) -> None:
    callback = update("T1", "callback", cst("2025-06-11 09:00"))
    state = apply_all(_resolved(rules), rules, repeat_report("R1", cst("2025-06-11 09:00")), callback)
    assert [at for *_, at in _repeats_due(state, "2025-06-11 09:00", rules)] == [cst("2025-06-11 09:00")]


def test_no_escalation_while_the_ticket_is_open_or_reopened(rules: Any) -> None:
    unsatisfied = update("T1", "callback", cst("2025-06-11 09:00"), satisfied=False, reason="没修好")
    state = apply_all(_resolved(rules), rules, unsatisfied, repeat_report("R1", cst("2025-06-11 15:00")))
    assert state.status is Status.reopened
    assert _repeats_due(state, "2025-06-20 09:00", rules) == []


def test_a_planner_can_turn_it_off(rules: Any) -> None:
    state = apply_all(_resolved(rules), rules, update("T1", "callback", cst("2025-06-11 09:00")),
                   repeat_report("R1", cst("2025-06-11 15:00")))
    policy = dataclasses.replace(rules.policy_for(state), repeat_after_close=False)
    assert [p for p in deadlines.scheduled(state, policy, rules.calendar) if p.kind is REPEAT] == []
    assert [p.kind for p in deadlines.scheduled(state, rules.policy_for(state), rules.calendar)
            if p.kind is REPEAT] == [REPEAT]


def test_a_repeat_after_the_desk_closed_a_triaged_ticket(router: Any, rules: Any) -> None:
    out, state = reported(router, "QP-9")
    ruling = Ruling(ruling_id="R-close", ticket_id="QP-9", desk=DESK, action="close",
                    occurred_at=cst("2025-06-09 10:00"), reason="已当场答复")
    closed = dispatch.on_ruling(out.ticket, ruling, router)
    assert not isinstance(closed, Rejection) and closed.triage is not None
    state = sla.on_triage(state, closed.triage)
    assert isinstance(state, TicketState) and state.status is Status.closed
    state = apply_all(state, rules, repeat_report("R1", cst("2025-06-09 16:00"), ticket="QP-9"))
    assert [(level, unit, at) for _, level, unit, at in _repeats_due(state, "2025-06-09 16:00", rules)] == [
        (1, DESK, cst("2025-06-09 16:00"))]
    assert _repeats_due(state, "2025-06-09 16:00", rules) and deadlines.repeats_after_close(state)[0].ended_by == "close"


def test_a_repeat_while_the_ticket_stands_redirected_until_the_desk_dispatches_it(router: Any, rules: Any) -> None:
    """Handed to 119, the ticket has no owner in the city: a caller reporting it again (the fire brigade has not
    come, or the damage is a civic matter too) goes to the desk. Once the desk dispatches it, a repeat is ordinary."""
    out, state = reported(router, "QP-F", "家里着火了，火很大")
    assert state.status is Status.redirected
    redirected = apply_all(state, rules, repeat_report("R1", cst("2025-06-09 09:40"), ticket="QP-F"))
    found = [e for e in sla.sweep(redirected, cst("2025-06-09 10:00"), rules)[1] if e.kind is REPEAT]
    assert [(e.level, e.unit, e.at) for e in found] == [(1, DESK, cst("2025-06-09 09:40"))]
    assert found[0].details["ended_by"] == "redirect"
    assert found[0].details["closed_at"] == cst("2025-06-09 09:00").isoformat()
    ruling = Ruling(ruling_id="R-disp", ticket_id="QP-F", desk=DESK, action="dispatch",
                    occurred_at=cst("2025-06-09 10:00"), rule_id="qingpu.street-lamp", reason="火已扑灭，路灯烧坏")
    ruled = dispatch.on_ruling(out.ticket, ruling, router)
    assert not isinstance(ruled, Rejection) and ruled.work_order is not None
    dispatched = sla.on_work_order(redirected, ruled.work_order, rules)
    assert isinstance(dispatched, TicketState)
    later = apply_all(dispatched, rules, repeat_report("R2", cst("2025-06-09 12:00"), ticket="QP-F"))
    assert [r.update_id for r in deadlines.repeats_after_close(later)] == ["repeat:R1"]
