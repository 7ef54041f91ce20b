from __future__ import annotations

from services.domain import sla
from services.domain.lifecycle import Applied, Duplicate
from services.domain.tickets import Status
from services.domain.validation import Rejection
from tests.conftest import cst
from tests.factories import update, work_order


def _open(rules):  # type: ignore[no-untyped-def]
    state = sla.on_work_order(None, work_order("T1", cst("2025-06-09 09:00")), rules)
    assert not isinstance(state, Duplicate)
    return state


def test_happy_path_dispatch_ack_resolve_close(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    assert state.status is Status.dispatched
    assert state.cycle.ack_due == cst("2025-06-10 09:00")
    assert state.cycle.final_due == cst("2025-06-16 09:00")
    for action, expected in (("acknowledge", Status.acknowledged), ("resolve", Status.resolved),
                             ("callback", Status.closed)):
        result = sla.on_update(state, update("T1", action, cst("2025-06-10 08:00")), rules)
        assert isinstance(result, Applied), result
        state = result.state
        assert state.status is expected
    assert [t.to_status for t in state.transitions] == ["dispatched", "acknowledged", "resolved", "closed"]


def test_impossible_transitions_are_rejected_with_a_reason(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    bad = sla.on_update(state, update("T1", "callback", cst("2025-06-09 10:00")), rules)
    assert isinstance(bad, Rejection) and bad.reason == "invalid_transition" and bad.field == "action"
    other = sla.on_update(state, update("T1", "acknowledge", cst("2025-06-09 10:00"), unit="区房管局"), rules)
    assert isinstance(other, Rejection) and other.reason == "unit_mismatch" and other.field == "unit"
    early = sla.on_update(state, update("T1", "acknowledge", cst("2025-06-08 10:00")), rules)
    assert isinstance(early, Rejection) and early.reason == "before_dispatch"
    unknown = sla.on_update(None, update("T9", "acknowledge", cst("2025-06-09 10:00")), rules)
    assert isinstance(unknown, Rejection) and unknown.reason == "unknown_ticket"


def test_redelivered_update_changes_nothing(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    ack = update("T1", "acknowledge", cst("2025-06-09 10:00"))
    first = sla.on_update(state, ack, rules)
    assert isinstance(first, Applied)
    again = sla.on_update(first.state, ack, rules)
    assert isinstance(again, Duplicate) and again.state == first.state
    assert isinstance(sla.on_work_order(first.state, work_order("T1", cst("2025-06-09 09:00")), rules), Duplicate)


def test_unsatisfied_callback_reopens_with_rehandle_clock(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    for action, at in (("acknowledge", "2025-06-09 10:00"), ("resolve", "2025-06-10 10:00")):
        state = sla.on_update(state, update("T1", action, cst(at)), rules).state
    result = sla.on_update(state, update("T1", "callback", cst("2025-06-11 10:00"), satisfied=False,
                                         reason="没解决"), rules)
    assert isinstance(result, Applied)
    state = result.state
    assert state.status is Status.reopened and state.reopens == 1
    assert state.cycle.kind == "reopen" and state.cycle.ack_due is None
    assert state.cycle.final_due == cst("2025-06-16 10:00")  # 3 working days (重办)
    assert not state.resolved_as_of(cst("2025-06-12 00:00"))
    assert state.resolved_as_of(cst("2025-06-10 12:00"))


def test_extension_moves_the_deadline_and_is_audited(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    late = sla.on_update(state, update("T1", "extend", cst("2025-06-10 10:00"), new_due=cst("2025-06-05 00:00"),
                                       reason="x"), rules)
    assert isinstance(late, Rejection) and late.reason == "extension_not_later" and late.field == "new_due"
    result = sla.on_update(state, update("T1", "extend", cst("2025-06-10 10:00"), new_due=cst("2025-06-30 18:00"),
                                         reason="需协调"), rules)
    assert isinstance(result, Applied)
    assert result.state.cycle.final_due == cst("2025-06-30 18:00")
    assert result.transition.action == "extend" and "2025-06-30" in (result.transition.note or "")


def test_return_asks_for_redispatch_and_new_work_order_starts_a_cycle(rules) -> None:  # type: ignore[no-untyped-def]
    state = _open(rules)
    result = sla.on_update(state, update("T1", "return", cst("2025-06-09 12:00")), rules)
    assert isinstance(result, Applied) and result.redispatch and result.state.status is Status.returned
    again = sla.on_update(result.state, update("T1", "resolve", cst("2025-06-09 13:00")), rules)
    assert isinstance(again, Rejection)
    state = sla.on_work_order(result.state, work_order("T1", cst("2025-06-09 09:00"), unit="区房管局", seq=2,
                                                       dispatched_at=cst("2025-06-09 12:00")), rules)
    assert state.status is Status.dispatched and state.unit == "区房管局" and len(state.cycles) == 2
    assert state.cycles[0].ended_at == cst("2025-06-09 12:00")


def test_a_disputed_ticket_moves_from_returned_to_triage(rules) -> None:  # type: ignore[no-untyped-def]
    from schemas import TriageItem
    from tests.factories import decision

    state = _open(rules)
    state = sla.on_update(state, update("T1", "return", cst("2025-06-09 12:00")), rules).state
    item = TriageItem(ticket_id="T1", jurisdiction="qingpu", source="hotline_12345", urgency="normal",
                      opened_at=cst("2025-06-09 09:00"), content="违建", address="青浦", queue="区城运中心",
                      decision=decision("T1", outcome="triage", lead_unit=None, needs_triage=True,
                                        triage_reason="ownership_dispute"))
    moved = sla.on_triage(state, item)
    assert not isinstance(moved, Duplicate)
    assert moved.status is Status.triage and moved.unit is None
    assert moved.transitions[-1].reason == "ownership_dispute" and moved.transitions[-1].at == cst("2025-06-09 12:00")
    assert isinstance(sla.on_triage(moved, item), Duplicate)
