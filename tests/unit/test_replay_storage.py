"""The replay's output spools and packed states: they give back exactly what was put in, in the right order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import Escalation, WorkOrder
from services.demo.sample import generate
from services.domain.tickets import TicketState
from services.replay import spool as spool_module
from services.replay.packed import PackedStates
from services.replay.pipeline import SETTLED
from services.replay.runner import ReplayResult, run, write
from services.replay.spool import Spool


@pytest.fixture(scope="module")
def replayed(router, rules, tmp_path_factory: pytest.TempPathFactory) -> ReplayResult:  # type: ignore[no-untyped-def]
    events, updates, rulings = generate(router, n_events=120, seed=11).write(tmp_path_factory.mktemp("in"))
    return run(events, updates, router, rules, rulings=rulings)


def test_a_spool_gives_back_what_was_appended_in_order(replayed: ReplayResult,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    orders = list(replayed.pipeline.work_orders)
    assert len(orders) > 50 and any("区" in o.model_dump_json() for o in orders)  # Chinese text survives
    monkeypatch.setattr(spool_module, "_BLOCK", 7)  # lines split across many reads
    spool: Spool[WorkOrder] = Spool(WorkOrder)
    assert list(spool) == [] and len(spool) == 0 and not spool
    spool.extend(orders)
    assert len(spool) == len(orders) and spool
    assert list(spool) == orders
    assert list(spool.lines()) == [o.model_dump_json().encode() for o in orders]
    assert spool[0] == orders[0] and spool[-1] == orders[-1] and spool[len(orders) // 2] == orders[len(orders) // 2]
    with pytest.raises(IndexError):
        spool[len(orders)]
    spool.append(orders[0])  # still pending, not yet in the file: read from there after a write
    assert spool[-1] == orders[0] and len(spool) == len(orders) + 1
    with pytest.raises(TypeError):
        list(spool.sorted_lines())


def test_sorted_lines_follow_the_key_and_keep_ties_in_append_order(replayed: ReplayResult) -> None:
    escalations = list(replayed.pipeline.escalations)
    spool: Spool[Escalation] = Spool(Escalation, key=lambda e: (e.level,))  # many ties
    spool.extend(escalations[::-1])
    expected = sorted(escalations[::-1], key=lambda e: e.level)  # sorted() is stable too
    assert [Escalation.model_validate_json(line) for line in spool.sorted_lines()] == expected
    assert len({e.level for e in escalations}) > 1


def test_written_outputs_are_sorted_as_documented(replayed: ReplayResult, tmp_path: Path) -> None:
    write(replayed, tmp_path)
    p = replayed.pipeline
    orders = sorted(p.work_orders, key=lambda w: (w.dispatched_at, w.work_order_id))
    escalations = sorted(p.escalations, key=lambda e: (e.at, e.escalation_id))
    assert (tmp_path / "work_orders.jsonl").read_text(encoding="utf-8") == "".join(
        w.model_dump_json() + "\n" for w in orders)
    assert (tmp_path / "escalations.jsonl").read_text(encoding="utf-8") == "".join(
        e.model_dump_json() + "\n" for e in escalations)
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rejects and [r["line"] for r in rejects] == [r.offset for r in p.rejects]


def test_packed_states_read_back_equal_and_keep_their_order(replayed: ReplayResult) -> None:
    states = list(replayed.pipeline.tickets.values())[:30]
    store: PackedStates[TicketState] = PackedStates(TicketState)
    for s in states:
        store[s.ticket_id] = s
    first, second = states[0].ticket_id, states[1].ticket_id
    store.pack(first)
    store.pack(first)  # packing twice is one packed state
    store.pack("no-such-ticket")
    assert store.packed == 1
    assert store[first] == states[0] and store[first] is not states[0]
    assert store.get(first) == states[0] and store.get("no-such-ticket") is None
    store[first] = states[0]  # stored again: live, in its first place
    assert store.packed == 0 and store[first] is states[0]
    store.pack(second)
    del store[second]
    assert store.packed == 0 and second not in store and first in store
    assert list(store) == [s.ticket_id for s in states if s.ticket_id != second]
    assert list(store.values()) == [s for s in states if s.ticket_id != second]


def test_the_replay_packs_exactly_the_settled_tickets(replayed: ReplayResult) -> None:
    p = replayed.pipeline
    settled = [t for t, s in p.tickets.items() if s.status in SETTLED]
    assert settled and len(settled) < len(p.tickets)  # both kinds are in the sample
    assert p.tickets.packed == len(settled)
    assert p.routing.packed == len(settled)
