"""Inputs that arrive before what they name, on a real PostgreSQL with the workers' real agent functions.

Kafka orders the messages of one partition of one topic only: a unit's acknowledgement (topic ``updates``) can
reach the SLA worker before the work order it acknowledges (topic ``workorders``), and a message a crashed worker
committed but never published is relayed seconds later, after messages that depend on it. Such inputs are held
and applied once what they need has arrived, with the result the offline replay gives; what never arrives is
dead-lettered after HOTLINE_HOLD_SECONDS. The agents are driven with hand-made batches (no broker): each test
orders the deliveries as the broker may.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from schemas import WorkOrder
from services.domain.sla import SlaRules
from services.platform import db
from services.platform.codec import Outgoing, encode, headers_from_json
from services.platform.embedded import free_port
from services.platform.settings import Settings
from services.replay.pipeline import Pipeline

pytestmark = pytest.mark.integration
EVENT = {"event_id": "QP-1", "source": "hotline_12345", "jurisdiction": "qingpu",
         "occurred_at": "2025-05-06T09:00:00+08:00", "content": "小区门口路灯不亮了好几天晚上很黑",
         "address": "上海市青浦区夏阳街道青湖路100号", "caller": {"name": "张三", "phone": "13812345678"}}
NOW = datetime(2025, 5, 6, 2, 0, tzinfo=UTC)


class _Stream:
    def __init__(self, batches: list[list[Any]]) -> None:
        self.batches = batches

    async def take_events(self, n: int, within: float):  # type: ignore[no-untyped-def]
        for batch in self.batches:
            yield batch


def _event(topic: str, offset: int, value: bytes, headers: list[tuple[str, bytes]] | None = None,
           sent: datetime | None = None) -> Any:
    """A Kafka event as Faust hands it over; ``sent``: its record's timestamp (None: a record without one)."""
    timestamp = sent.timestamp() if sent is not None else None
    return SimpleNamespace(value=value, message=SimpleNamespace(topic=topic, partition=0, offset=offset,
                                                                headers=headers or [], timestamp=timestamp))


def _delivered(m: Outgoing, offset: int) -> Any:
    return _event(m.topic, offset, m.value, list(m.headers))


def _capture(app: Any, sink: list[Outgoing], *, drop: bool = False,
             ends: dict[str, int] | Exception | None = None) -> None:
    """Publish into ``sink`` (or, with ``drop``, not at all: the worker died right after its commit). The broker
    says the ticket-opening topics end at ``ends`` (``{"topic/partition": offset}``; default: they are empty; an
    exception: the broker cannot say)."""
    rt = app.hotline_runtime

    async def topic_ends(topics: Any) -> dict[str, int]:
        if isinstance(ends, Exception):
            raise ends
        return dict(ends or {})

    rt.topic_ends = topic_ends

    async def publish(rows: list[tuple[int, Outgoing]]) -> bool:
        if not drop:
            sink.extend(m for _, m in rows)
            await db.mark_published(await rt.pool(), [i for i, _ in rows])
        return True

    rt.publish = publish


def _sla(database: str, rules: SlaRules, published: list[Outgoing] | None = None,
         ends: dict[str, int] | Exception | None = None, **settings: Any) -> Any:
    """The SLA worker's app on ``database``, publishing into ``published``."""
    from services.sla.agents import build

    app = build(Settings(database_url=database, sla_port=free_port(), **settings), rules)
    _capture(app, [] if published is None else published, ends=ends)
    return app


async def _agent(app: Any, name: str, batches: list[list[Any]]) -> None:
    agent = next(a for a in app.agents.values() if a.name.endswith(name))
    await agent.fun(_Stream(batches))


def _raw(**changes: object) -> bytes:
    return json.dumps({**EVENT, **changes}, ensure_ascii=False).encode()


def _update(order: WorkOrder, event_id: str, action: str, minutes: int) -> bytes:
    update = {"event_id": event_id, "ticket_id": order.ticket_id, "unit": order.lead_unit, "action": action,
              "occurred_at": (order.dispatched_at + timedelta(minutes=minutes)).isoformat()}
    if action == "return":
        update["reason"] = "不属于本单位职责"
    return json.dumps(update, ensure_ascii=False).encode()


def _work_order(order: WorkOrder, offset: int) -> Any:
    return _delivered(encode(order, topic="hotline.workorders", key=order.ticket_id, ce_id=order.work_order_id,
                             source="/hotline/router", subject=order.ticket_id, time=order.dispatched_at), offset)


async def _sla_state(app: Any, ticket_id: str) -> tuple[str | None, list[str], int]:
    pool = await app.hotline_runtime.pool()
    status = await pool.fetchval("SELECT status FROM tickets WHERE ticket_id = $1", ticket_id)
    letters = [r["reason"] for r in await pool.fetch("SELECT reason FROM dead_letters ORDER BY 1")]
    held = await pool.fetchval("SELECT count(*) FROM held_inputs")
    return status, letters, int(held)


def test_updates_that_overtake_their_work_order_are_applied_when_it_arrives(database: str, rules: SlaRules,
                                                                             router) -> None:  # type: ignore[no-untyped-def]
    """The unit acknowledges and resolves from its own topic while the SLA worker's work-order agent lags."""
    order, ack, resolve = _ack_then_resolve(router, rules)

    async def go() -> None:
        app = _sla(database, rules)
        rt = app.hotline_runtime
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, ack), _event("hotline.updates", 1, resolve)]])
        assert await _sla_state(app, order.ticket_id) == (None, [], 2)  # held, not dead-lettered
        assert await rt.retry_held() == 2  # nothing has arrived yet: still held
        await _agent(app, "sla-workorders", [[_work_order(order, 0)]])
        assert await rt.retry_held() == 0
        assert await _sla_state(app, order.ticket_id) == ("resolved", [], 0)
        sample = rt.metrics.registry.get_sample_value
        assert sample("hotline_held_inputs", {"service": "sla"}) == 0
        assert sample("hotline_sla_updates_total", {"action": "acknowledge", "result": "applied"}) == 1
        assert sample("hotline_sla_updates_total", {"action": "acknowledge", "result": "rejected"}) is None
        await (await rt.pool()).close()

    asyncio.run(go())


def test_a_later_update_waits_behind_the_held_one_of_its_ticket(database: str, rules: SlaRules,
                                                                  router) -> None:  # type: ignore[no-untyped-def]
    """The acknowledgement is held for its work order; the work order arrives, and the resolution right after it,
    before the next retry: applied at once it would find the ticket only dispatched, and the acknowledgement,
    retried after it, would be refused. It waits behind the acknowledgement instead."""
    order, ack, resolve = _ack_then_resolve(router, rules)
    expected = ["dispatch", "acknowledge", "resolve"]  # as the replay records them

    async def go() -> None:
        app = _sla(database, rules)
        rt = app.hotline_runtime
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, ack)]])
        await _agent(app, "sla-workorders", [[_work_order(order, 0)]])
        await _agent(app, "sla-updates", [[_event("hotline.updates", 1, resolve)]])
        assert await _sla_state(app, order.ticket_id) == ("dispatched", [], 2)  # the resolution waits too
        assert await rt.retry_held() == 0
        assert await _sla_state(app, order.ticket_id) == ("resolved", [], 0)
        pool = await rt.pool()
        state = await pool.fetchval("SELECT state FROM tickets WHERE ticket_id = $1", order.ticket_id)
        assert [t["action"] for t in state["transitions"]] == expected
        await pool.close()

    asyncio.run(go())


def test_the_next_units_answer_to_a_re_dispatch_waits_for_it(database: str, rules: SlaRules,
                                                              router) -> None:  # type: ignore[no-untyped-def]
    """After a return (退单) the router re-dispatches; the new unit's acknowledgement may arrive first."""
    offline = Pipeline(router=router, rules=rules)
    offline.event(_raw(content="河道发黑发臭有人往河里排污水，路灯也一直不亮"), origin="f", offset=1, received_at=NOW)
    first = offline.work_orders[0]
    back = _update(first, "RET-1", "return", 10)
    offline.update(back, origin="f", offset=1, received_at=NOW)
    second = offline.work_orders[1]
    assert second.lead_unit != first.lead_unit
    ack = _update(second, "ACK-2", "acknowledge", 5)
    offline.update(ack, origin="f", offset=2, received_at=NOW)
    assert offline.tickets[first.ticket_id].status.value == "acknowledged"

    async def go() -> None:
        app = _sla(database, rules)
        rt = app.hotline_runtime
        await _agent(app, "sla-workorders", [[_work_order(first, 0)]])
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, back)], [_event("hotline.updates", 1, ack)]])
        assert await _sla_state(app, first.ticket_id) == ("returned", [], 1)
        await _agent(app, "sla-workorders", [[_work_order(second, 1)]])
        assert await rt.retry_held() == 0
        assert await _sla_state(app, first.ticket_id) == ("acknowledged", [], 0)
        await (await rt.pool()).close()

    asyncio.run(go())


def test_what_never_arrives_is_dead_lettered_after_the_hold(database: str, rules: SlaRules) -> None:
    """An update for a ticket that never comes, and one from a unit that does not hold a ticket (not held)."""
    update = json.dumps({"event_id": "U-1", "ticket_id": "NOPE", "unit": "区建管委", "action": "acknowledge",
                         "occurred_at": "2025-05-06T09:00:00+08:00"}, ensure_ascii=False).encode()

    async def go() -> None:
        published: list[Outgoing] = []
        app = _sla(database, rules, published, hold_seconds=0.5)
        rt = app.hotline_runtime
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, update)]])
        assert await _sla_state(app, "NOPE") == (None, [], 1)
        await asyncio.sleep(0.6)
        assert await rt.retry_held() == 0
        assert await _sla_state(app, "NOPE") == (None, ["unknown_ticket"], 0)
        pool = await rt.pool()
        letter = await pool.fetchrow('SELECT stage, field, topic, "offset" FROM dead_letters')
        assert dict(letter) == {"stage": "sla", "field": "ticket_id", "topic": "hotline.updates", "offset": 0}
        assert [m.topic for m in published] == ["hotline.deadletter"]
        assert rt.metrics.registry.get_sample_value("hotline_sla_updates_total",
                                                    {"action": "acknowledge", "result": "rejected"}) == 1
        await pool.close()

    asyncio.run(go())


def test_a_repeat_report_that_overtakes_its_relayed_ticket_is_merged(database: str, rules: SlaRules,
                                                                      router) -> None:  # type: ignore[no-untyped-def]
    """Intake commits a batch holding QP-1 and dies before publishing it (its outbox row waits for the relay).
    The partition's next owner skips that batch (already processed) and merges QP-2 into QP-1: the RepeatReport
    is published at once and reaches the router before QP-1 does."""
    first, second = _raw(), _raw(event_id="QP-2", occurred_at="2025-05-06T09:10:00+08:00",
                                 caller={"name": "李四", "phone": "13900000000"})
    offline = Pipeline(router=router, rules=rules)
    offline.event(first, origin="f", offset=1, received_at=NOW)
    assert offline.event(second, origin="f", offset=2, received_at=NOW) == "merged"
    assert offline.routing["QP-1"].repeats == ["QP-2"]  # the replay's answer

    async def go() -> None:
        from services.intake.agents import build as build_intake
        from services.router.agents import build as build_router

        settings = Settings(database_url=database, intake_port=free_port(), router_port=free_port())
        dead = build_intake(settings)
        _capture(dead, [], drop=True)  # committed, then killed before publishing
        await _agent(dead, "intake", [[_event("hotline.events.raw", 0, first)]])
        live = build_intake(settings)
        accepted: list[Outgoing] = []
        _capture(live, accepted)
        await _agent(live, "intake", [[_event("hotline.events.raw", 0, first)],  # redelivered: skipped
                                      [_event("hotline.events.raw", 1, second)]])
        assert [m.topic for m in accepted] == ["hotline.events.accepted"]  # the repeat report only
        routed = build_router(settings, router)
        _capture(routed, [])
        rt = routed.hotline_runtime
        await _agent(routed, "route", [[_delivered(m, i) for i, m in enumerate(accepted)]])
        pool = await rt.pool()
        relayed = await db.unpublished(pool, "intake", older_than_seconds=0)  # what intake's relay sends later
        await _agent(routed, "route", [[_delivered(m, 100 + i) for i, (_, m) in enumerate(relayed)]])
        assert await rt.retry_held() == 0
        state = await pool.fetchval("SELECT state FROM router_tickets WHERE ticket_id = 'QP-1'")
        assert state["repeats"] == ["QP-2"]
        assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
        await pool.close()

    asyncio.run(go())


# --- order, starvation and failures across rounds and replicas (from a review of the first version) ------------------

def _ack_then_resolve(router, rules: SlaRules) -> tuple[WorkOrder, bytes, bytes]:  # type: ignore[no-untyped-def]
    offline = Pipeline(router=router, rules=rules)
    offline.event(_raw(), origin="f", offset=1, received_at=NOW)
    order = offline.work_orders[0]
    ack, resolve = _update(order, "ACK-1", "acknowledge", 5), _update(order, "RES-1", "resolve", 60)
    for i, line in enumerate((ack, resolve)):
        offline.update(line, origin="f", offset=i, received_at=NOW)
    ticket = offline.tickets[order.ticket_id]
    assert ticket.status.value == "resolved" and ticket.cycles[-1].acked_at is not None  # the replay's answer
    assert [t.action for t in ticket.transitions] == ["dispatch", "acknowledge", "resolve"]
    return order, ack, resolve


async def _acked(app: Any, ticket_id: str) -> bool:
    state = await (await app.hotline_runtime.pool()).fetchval("SELECT state FROM tickets WHERE ticket_id = $1",
                                                              ticket_id)
    return state["cycles"][-1].get("acked_at") is not None


def _unknown(i: int) -> bytes:
    return json.dumps({"event_id": f"B{i}", "ticket_id": f"NOPE-{i}", "unit": "区建管委", "action": "acknowledge",
                       "occurred_at": "2025-05-06T09:00:00+08:00"}, ensure_ascii=False).encode()


def test_held_inputs_of_one_batch_retry_in_offset_order(database: str, rules: SlaRules,
                                                        router) -> None:  # type: ignore[no-untyped-def]
    """Offsets 9 and 10: as text, "...:10" sorts before "...:9"."""
    order, ack, resolve = _ack_then_resolve(router, rules)

    async def go() -> None:
        app = _sla(database, rules)
        await _agent(app, "sla-updates", [[_event("hotline.updates", 9, ack), _event("hotline.updates", 10, resolve)]])
        await _agent(app, "sla-workorders", [[_work_order(order, 0)]])
        await app.hotline_runtime.retry_held()
        assert (await _sla_state(app, order.ticket_id), await _acked(app, order.ticket_id)) == (("resolved", [], 0), True)
        await (await app.hotline_runtime.pool()).close()

    asyncio.run(go())


def test_an_input_another_replica_is_retrying_still_blocks_its_ticket(database: str, rules: SlaRules,
                                                                       router) -> None:  # type: ignore[no-untyped-def]
    order, ack, resolve = _ack_then_resolve(router, rules)

    async def go() -> None:
        import asyncpg

        app = _sla(database, rules)
        rt = app.hotline_runtime
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, ack)], [_event("hotline.updates", 1, resolve)]])
        await _agent(app, "sla-workorders", [[_work_order(order, 0)]])
        other = await asyncpg.connect(database)  # another replica is inside _retry_one for the ack: row locked
        async with other.transaction():
            await other.fetchrow("SELECT 1 FROM held_inputs WHERE input_key = 'sla:hotline.updates:0:0' FOR UPDATE")
            assert await rt.retry_held() == 2  # the resolution does not overtake it
        await other.close()
        assert await rt.retry_held() == 0
        assert (await _sla_state(app, order.ticket_id), await _acked(app, order.ticket_id)) == (("resolved", [], 0), True)
        await (await rt.pool()).close()

    asyncio.run(go())


def test_after_a_rebalance_the_new_owner_keeps_the_order(database: str, rules: SlaRules,
                                                         router) -> None:  # type: ignore[no-untyped-def]
    """Replica A holds the acknowledgement and stops; replica B, which had nothing held, takes the partitions."""
    order, ack, resolve = _ack_then_resolve(router, rules)

    async def go() -> None:
        a, b = _sla(database, rules), _sla(database, rules)
        assert await b.hotline_runtime.retry_held() == 0  # B has counted: nothing held
        await _agent(a, "sla-updates", [[_event("hotline.updates", 0, ack)]])
        await _agent(b, "sla-workorders", [[_work_order(order, 0)]])
        await _agent(b, "sla-updates", [[_event("hotline.updates", 1, resolve)]])  # before B's next round
        assert await b.hotline_runtime.retry_held() == 0
        assert (await _sla_state(b, order.ticket_id), await _acked(b, order.ticket_id)) == (("resolved", [], 0), True)
        for app in (a, b):
            await (await app.hotline_runtime.pool()).close()

    asyncio.run(go())


def test_inputs_whose_ticket_never_comes_do_not_starve_the_others(database: str, rules: SlaRules, router,  # type: ignore[no-untyped-def]
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from services.platform import worker

    monkeypatch.setattr(worker, "HOLD_RETRY_BATCH", 3)  # 200 in production; 3 older held inputs fill a round
    order, ack, _ = _ack_then_resolve(router, rules)

    async def go() -> None:
        app = _sla(database, rules)
        await _agent(app, "sla-updates", [[_event("hotline.updates", i, _unknown(i))] for i in range(3)])
        await _agent(app, "sla-updates", [[_event("hotline.updates", 3, ack)]])
        await _agent(app, "sla-workorders", [[_work_order(order, 0)]])
        assert await app.hotline_runtime.retry_held() == 3
        assert await _sla_state(app, order.ticket_id) == ("acknowledged", [], 3)
        await (await app.hotline_runtime.pool()).close()

    asyncio.run(go())


def test_one_held_input_that_cannot_be_dead_lettered_does_not_stop_the_others(database: str, rules: SlaRules) -> None:
    async def go() -> None:
        app = _sla(database, rules, hold_seconds=0.1)
        rt = app.hotline_runtime
        await _agent(app, "sla-updates", [[_event("hotline.updates", i, _unknown(i))] for i in range(2)])
        real = rt.reject

        async def reject(batch: Any, rejection: Any, raw: bytes, message: Any) -> list[Outgoing]:
            if message.offset == 0:
                raise RuntimeError("this dead letter cannot be written")
            return await real(batch, rejection, raw, message)

        rt.reject = reject  # type: ignore[method-assign]
        await asyncio.sleep(0.2)
        assert await rt.retry_held() == 1  # offset 0 stays; offset 1, expired too, is dead-lettered
        assert (await _sla_state(app, "NOPE-1"))[1] == ["unknown_ticket"]
        await (await rt.pool()).close()

    asyncio.run(go())


def test_beyond_the_cap_an_early_input_is_dead_lettered_at_once(database: str, rules: SlaRules) -> None:
    """A flood of ids that will never come (a unit system with a bug) must not grow the table without end."""
    async def go() -> None:
        app = _sla(database, rules, hold_max=2)
        await _agent(app, "sla-updates", [[_event("hotline.updates", i, _unknown(i)) for i in range(3)]])
        assert await _sla_state(app, "NOPE-2") == (None, ["unknown_ticket"], 2)
        await (await app.hotline_runtime.pool()).close()

    asyncio.run(go())


# --- the hold outlasts a catch-up (migration 005) ----------------------------------------------------------------------

def _another(router, rules: SlaRules, n: int) -> WorkOrder:  # type: ignore[no-untyped-def]
    """The work order of another ticket: it moves the work-order topic on without opening the test's ticket."""
    offline = Pipeline(router=router, rules=rules)
    offline.event(_raw(event_id=f"OTHER-{n}"), origin="f", offset=1, received_at=NOW)
    return offline.work_orders[0]


def test_a_held_acknowledgement_outlasts_its_hold_while_work_orders_are_behind(
        database: str, rules: SlaRules, router) -> None:  # type: ignore[no-untyped-def]
    """After an outage the SLA worker reads the unit's acknowledgement long before the backlog of work orders
    ahead of its own: held past HOTLINE_HOLD_SECONDS, it is not dead-lettered while the work orders that were on
    the topic when it was held are still unread, and it applies when its work order comes."""
    order, ack, _ = _ack_then_resolve(router, rules)

    async def go() -> None:
        app = _sla(database, rules, ends={"hotline.workorders/0": 2, "hotline.triage/0": 0}, hold_seconds=0.1)
        rt = app.hotline_runtime
        await _agent(app, "sla-workorders", [[_work_order(_another(router, rules, 1), 0)]])  # 1 of the 2 read
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, ack)]])
        await asyncio.sleep(0.2)
        assert await rt.retry_held() == 1  # its hold has run out, the backlog has not
        assert await _sla_state(app, order.ticket_id) == (None, [], 1)
        await _agent(app, "sla-workorders", [[_work_order(order, 1)]])
        assert await rt.retry_held() == 0
        assert await _sla_state(app, order.ticket_id) == ("acknowledged", [], 0)
        await (await rt.pool()).close()

    asyncio.run(go())


def test_what_never_arrives_is_dead_lettered_once_the_backlog_is_read(database: str, rules: SlaRules,
                                                                      router) -> None:  # type: ignore[no-untyped-def]
    """While the broker cannot say where the topics end, nothing expires; then the input waits for the backlog
    the broker names, and is dead-lettered once that is read without its ticket."""
    async def go() -> None:
        app = _sla(database, rules, ends=ConnectionError("broker down"), hold_seconds=0.1)
        rt = app.hotline_runtime
        await _agent(app, "sla-workorders", [[_work_order(_another(router, rules, 1), 0)]])
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, _unknown(1))]])
        await asyncio.sleep(0.2)
        assert await rt.retry_held() == 1  # where the backlog ends is not known: it waits
        _capture(app, [], ends={"hotline.workorders/0": 2, "hotline.triage/0": 0})
        assert await rt.retry_held() == 1  # one work order of the backlog is unread
        pool = await rt.pool()
        assert await pool.fetchval("SELECT waits_for FROM held_inputs") == {"hotline.workorders/0": 2,
                                                                            "hotline.triage/0": 0}
        _capture(app, [], ends={"hotline.workorders/0": 9})  # later ends are not what the input waits for
        await _agent(app, "sla-workorders", [[_work_order(_another(router, rules, 2), 1)]])
        assert await rt.retry_held() == 0
        assert await _sla_state(app, "NOPE-1") == (None, ["unknown_ticket"], 0)
        assert await pool.fetchval("SELECT next_offset FROM input_progress WHERE service = 'sla' "
                                   "AND topic = 'hotline.workorders' AND partition = 0") == 2
        await pool.close()

    asyncio.run(go())


def test_a_tickets_held_inputs_expire_in_the_order_they_came(database: str, rules: SlaRules,
                                                             router) -> None:  # type: ignore[no-untyped-def]
    """Two replicas note the acknowledgement and the resolution behind it in different rounds, so the resolution
    waits for less of the backlog than the acknowledgement: it still does not expire before it (dead-lettering
    the resolution first would lose it once the work order came)."""
    order, ack, resolve = _ack_then_resolve(router, rules)

    async def go() -> None:
        app = _sla(database, rules, hold_seconds=0.1)
        rt = app.hotline_runtime
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, ack)], [_event("hotline.updates", 1, resolve)]])
        await _agent(app, "sla-workorders", [[_work_order(_another(router, rules, 1), 0)]])  # read to 1
        pool = await rt.pool()
        await pool.execute("UPDATE held_inputs SET waits_for = $1::jsonb WHERE \"offset\" = 0",
                           {"hotline.workorders/0": 2})
        await pool.execute("UPDATE held_inputs SET waits_for = '{}'::jsonb WHERE \"offset\" = 1")
        await asyncio.sleep(0.2)
        assert await rt.retry_held() == 2
        assert await _sla_state(app, order.ticket_id) == (None, [], 2)
        await _agent(app, "sla-workorders", [[_work_order(order, 1)]])
        assert await rt.retry_held() == 0
        assert await _sla_state(app, order.ticket_id) == ("resolved", [], 0)
        await pool.close()

    asyncio.run(go())


# --- inputs dated after they were sent (future_timestamp) --------------------------------------------------------

def test_a_units_step_dated_after_it_was_sent_is_dead_lettered_and_the_true_steps_apply(
        database: str, rules: SlaRules, router) -> None:  # type: ignore[no-untyped-def]
    """The unit's system writes Beijing time as UTC: its acknowledgement, sent 5 minutes after the dispatch, is
    dated 8 hours later. Applied, it would make the resolution that follows (dated right) out of order."""
    order, ack, resolve = _ack_then_resolve(router, rules)
    sent_ack = order.dispatched_at + timedelta(minutes=5)
    skewed = _update(order, "ACK-Z", "acknowledge", 5 + 8 * 60)
    sent_resolve = order.dispatched_at + timedelta(minutes=60, seconds=2)

    async def go() -> None:
        app = _sla(database, rules)
        await _agent(app, "sla-workorders", [[_work_order(order, 0)]])
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, skewed, sent=sent_ack)],
                                          [_event("hotline.updates", 1, ack, sent=sent_ack)],
                                          [_event("hotline.updates", 2, resolve, sent=sent_resolve)]])
        assert await _sla_state(app, order.ticket_id) == ("resolved", ["future_timestamp"], 0)
        pool = await app.hotline_runtime.pool()
        error = await pool.fetchval("SELECT error FROM dead_letters")
        assert error.startswith("occurred_at: ") and "8 h 00 min after the message was sent" in error
        sample = app.hotline_runtime.metrics.registry.get_sample_value
        assert sample("hotline_sla_updates_total", {"action": "acknowledge", "result": "rejected"}) == 1
        assert sample("hotline_sla_updates_total", {"action": "acknowledge", "result": "applied"}) == 1
        await pool.close()

    asyncio.run(go())


def test_a_ruling_dated_after_it_was_sent_is_dead_lettered(database: str, router) -> None:  # type: ignore[no-untyped-def]
    """Judged before anything else about it (here, that the router does not know its ticket)."""
    from services.router.agents import build as build_router

    sent = datetime(2025, 5, 6, 2, 0, tzinfo=UTC)
    ruling = json.dumps({"ruling_id": "R-1", "ticket_id": "QP-404", "desk": "区城运中心", "action": "close",
                         "occurred_at": "2025-05-06T10:00:00Z", "reason": "已答复来电人"}, ensure_ascii=False).encode()

    async def go() -> list[str]:
        app = build_router(Settings(database_url=database, router_port=free_port()), router)
        _capture(app, [])
        await _agent(app, "rule", [[_event("hotline.rulings", 0, ruling, sent=sent)],
                                   [_event("hotline.rulings", 1, ruling.replace(b'"R-1"', b'"R-2"'),
                                           sent=sent + timedelta(hours=8))]])
        pool = await app.hotline_runtime.pool()
        reasons = [r["reason"] for r in await pool.fetch("SELECT reason FROM dead_letters ORDER BY \"offset\"")]
        await pool.close()
        return reasons

    assert asyncio.run(go()) == ["future_timestamp", "unknown_ticket"]


# --- the dispatch desk's signature (desk_signature) ---------------------------------------------------------------

DESK_KEY = "d" * 64


def _callback(order: WorkOrder, rules: SlaRules, event_id: str, minutes: int, unit: str | None = None) -> bytes:
    return json.dumps({"event_id": event_id, "ticket_id": order.ticket_id, "action": "callback", "satisfied": True,
                       "unit": unit or rules.desks[order.jurisdiction.value],
                       "occurred_at": (order.dispatched_at + timedelta(minutes=minutes)).isoformat()},
                      ensure_ascii=False).encode()


async def _restarted_for_the_work_order(database: str, rules: SlaRules, order: WorkOrder, keys: str) -> Any:
    """The SLA worker restarted with the desk's ``keys``: the work order arrives and the held inputs are tried."""
    app = _sla(database, rules, desk_signing_keys=keys)
    await _agent(app, "sla-workorders", [[_work_order(order, 0)]])
    assert await app.hotline_runtime.retry_held() == 0
    return app


async def _dead_letter_errors(pool: Any) -> list[str]:
    return [r["error"] for r in await pool.fetch("SELECT error FROM dead_letters ORDER BY \"offset\"")]


def test_a_desk_step_needs_the_desks_signature_also_when_held(
        database: str, rules: SlaRules, router) -> None:  # type: ignore[no-untyped-def]
    """With HOTLINE_DESK_SIGNING_KEYS set, a unit that writes the desk's name on a callback (unsigned, or signed
    with a key of its own) is dead-lettered; the desk's signed callback, held behind the unit's steps that overtook
    their work order, is judged again when retried, with the keys of that moment: the workers have meanwhile been
    restarted to replace the key (the new one listed before the old), and it applies. It carries a header without a
    value and two whose bytes jsonb cannot hold as text (not UTF-8; a NUL), which the held input keeps."""
    from services.platform.desk_signature import signed_headers

    order, ack, resolve = _ack_then_resolve(router, rules)
    forged = _callback(order, rules, "CB-FORGED", 70)
    other_key = _callback(order, rules, "CB-OTHER-KEY", 71)
    desks = _callback(order, rules, "CB-DESK", 72)

    async def go() -> None:
        app = _sla(database, rules, desk_signing_keys=DESK_KEY)
        rt = app.hotline_runtime
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, ack), _event("hotline.updates", 1, resolve)],
                                          [_event("hotline.updates", 2, forged)],
                                          [_event("hotline.updates", 3, other_key, signed_headers("x" * 32, other_key))],
                                          [_event("hotline.updates", 4, desks, [*signed_headers(DESK_KEY, desks),
                                                                                ("x-empty", None),
                                                                                ("x-bytes", b"\xff\xfe"),
                                                                                ("x-nul", b"a\x00b")])]])
        # the two forgeries are refused as they come; the desk's callback waits behind the unit's held steps
        assert await _sla_state(app, order.ticket_id) == (None, ["desk_signature", "desk_signature"], 3)
        stored = await (await rt.pool()).fetchval("SELECT headers FROM held_inputs WHERE \"offset\" = 4")
        assert headers_from_json(stored)[1:] == (("x-empty", None), ("x-bytes", b"\xff\xfe"),
                                                        ("x-nul", b"a\x00b"))
        await (await rt.pool()).close()
        app = await _restarted_for_the_work_order(database, rules, order, f"{'n' * 64},{DESK_KEY}")  # key replaced
        rt = app.hotline_runtime
        assert await _sla_state(app, order.ticket_id) == ("closed", ["desk_signature", "desk_signature"], 0)
        pool = await rt.pool()
        errors = await _dead_letter_errors(pool)
        assert "carries no signature" in errors[0] and "does not match" in errors[1]
        assert rt.metrics.registry.get_sample_value("hotline_sla_updates_total",
                                                    {"action": "callback", "result": "applied"}) == 1
        await pool.close()

    asyncio.run(go())


def test_desk_steps_held_before_the_key_was_set_or_with_a_key_removed_since_are_refused_when_tried(
        database: str, rules: SlaRules, router) -> None:  # type: ignore[no-untyped-def]
    """Held while the workers had no desk keys, an unsigned callback in the desk's name passed as it came; held
    while the old key was listed, one signed with it did too. The workers restart with the new key only: when
    tried, both are refused (a key must not be set only to let earlier forgeries through, and a removed key, say a
    compromised one, signs nothing any more), and the unit's held steps still apply. The desk's next callback, signed
    with the new key, closes the ticket."""
    from services.platform.desk_signature import signed_headers

    order, ack, resolve = _ack_then_resolve(router, rules)
    unsigned = _callback(order, rules, "CB-UNSIGNED", 70)
    old_key = "o" * 64
    with_old = _callback(order, rules, "CB-OLD-KEY", 71)
    with_new = _callback(order, rules, "CB-NEW-KEY", 72)

    async def go() -> None:
        app = _sla(database, rules)  # no keys yet: the desk's steps are taken on trust as they come
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, ack), _event("hotline.updates", 1, resolve)],
                                          [_event("hotline.updates", 2, unsigned)],
                                          [_event("hotline.updates", 3, with_old, signed_headers(old_key, with_old))]])
        assert await _sla_state(app, order.ticket_id) == (None, [], 4)
        await (await app.hotline_runtime.pool()).close()
        app = await _restarted_for_the_work_order(database, rules, order, DESK_KEY)
        rt = app.hotline_runtime
        assert await _sla_state(app, order.ticket_id) == ("resolved", ["desk_signature", "desk_signature"], 0)
        pool = await rt.pool()
        errors = await _dead_letter_errors(pool)
        assert "carries no signature" in errors[0] and "does not match" in errors[1]
        await _agent(app, "sla-updates", [[_event("hotline.updates", 5, with_new, signed_headers(DESK_KEY, with_new))]])
        assert await _sla_state(app, order.ticket_id) == ("closed", ["desk_signature", "desk_signature"], 0)
        sample = rt.metrics.registry.get_sample_value
        assert sample("hotline_sla_updates_total", {"action": "callback", "result": "rejected"}) == 2
        assert sample("hotline_sla_updates_total", {"action": "callback", "result": "applied"}) == 1
        await pool.close()

    asyncio.run(go())


def test_without_keys_a_desk_step_is_taken_on_trust(database: str, rules: SlaRules,
                                                    router) -> None:  # type: ignore[no-untyped-def]
    """The default (no HOTLINE_DESK_SIGNING_KEYS): the unsigned callback in the desk's name applies."""
    order, ack, resolve = _ack_then_resolve(router, rules)

    async def go() -> None:
        app = _sla(database, rules)
        await _agent(app, "sla-workorders", [[_work_order(order, 0)]])
        await _agent(app, "sla-updates", [[_event("hotline.updates", i, raw) for i, raw in
                                           enumerate((ack, resolve, _callback(order, rules, "CB-1", 70)))]])
        assert await _sla_state(app, order.ticket_id) == ("closed", [], 0)
        await (await app.hotline_runtime.pool()).close()

    asyncio.run(go())


def test_a_ruling_needs_the_desks_signature(database: str, router) -> None:  # type: ignore[no-untyped-def]
    """Checked before anything else about it: the signed ruling gets as far as finding its ticket unknown."""
    from services.platform.desk_signature import signed_headers
    from services.router.agents import build as build_router

    ruling = json.dumps({"ruling_id": "R-1", "ticket_id": "QP-404", "desk": "区城运中心", "action": "close",
                         "occurred_at": "2025-05-06T10:00:00+08:00", "reason": "已答复来电人"},
                        ensure_ascii=False).encode()

    async def go() -> list[tuple[str, str]]:
        app = build_router(Settings(database_url=database, router_port=free_port(), desk_signing_keys=DESK_KEY),
                           router)
        _capture(app, [])
        await _agent(app, "rule", [[_event("hotline.rulings", 0, ruling)],
                                   [_event("hotline.rulings", 1, ruling, signed_headers(DESK_KEY, ruling))]])
        pool = await app.hotline_runtime.pool()
        rows = await pool.fetch("SELECT reason, field FROM dead_letters ORDER BY \"offset\"")
        await pool.close()
        return [(r["reason"], r["field"]) for r in rows]

    assert asyncio.run(go()) == [("desk_signature", "hotline_desk_signature"), ("unknown_ticket", "ticket_id")]


# --- a unit's signature (unit_signature) --------------------------------------------------------------------------

def test_a_units_update_needs_its_signature_once_listed_also_when_held(
        database: str, rules: SlaRules, router, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With HOTLINE_UNIT_KEYS_FILE listing the lead unit, its updates that overtook their work order are held and
    judged when retried, with the keys of that moment: the workers restarted meanwhile with the unit's keys being
    replaced (old and new listed, a compromised one removed). The updates signed with a listed key apply; one signed
    with the removed key, and an unsigned one in the unit's name, are refused once the ticket is known; one signed by
    another unit of the district in its name, at once."""
    from services.platform.unit_signature import signed_headers

    order, ack, resolve = _ack_then_resolve(router, rules)
    lead = next(code for code, unit in rules.units.items() if unit == (order.jurisdiction.value, order.lead_unit))
    neighbour = next(code for code, (j, _) in sorted(rules.units.items())
                     if j == order.jurisdiction.value and code != lead)
    old, revoked, new, other = "a" * 64, "r" * 64, "b" * 64, "c" * 64
    keys = tmp_path / "unit-keys.yaml"
    keys.write_text(f"{lead}: [{old}, {revoked}]\n{neighbour}: [{other}]\n", encoding="utf-8")
    unsigned = _update(order, "RES-UNSIGNED", "resolve", 30)
    impostor = _update(order, "RES-NEIGHBOUR", "resolve", 40)
    stolen = _update(order, "RES-REVOKED", "resolve", 50)

    async def go() -> None:
        app = _sla(database, rules, unit_keys_file=str(keys))
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, ack, signed_headers(lead, old, ack))],
                                          [_event("hotline.updates", 1, unsigned)],
                                          [_event("hotline.updates", 2, impostor,
                                                  signed_headers(neighbour, other, impostor))],
                                          [_event("hotline.updates", 3, stolen, signed_headers(lead, revoked, stolen))],
                                          [_event("hotline.updates", 4, resolve, signed_headers(lead, old, resolve))]])
        assert await _sla_state(app, order.ticket_id) == (None, ["unit_signature"], 4)
        await (await app.hotline_runtime.pool()).close()
        keys.write_text(f"{lead}: [{new}, {old}]\n{neighbour}: [{other}]\n", encoding="utf-8")
        app = _sla(database, rules, unit_keys_file=str(keys))
        rt = app.hotline_runtime
        await _agent(app, "sla-workorders", [[_work_order(order, 0)]])
        assert await rt.retry_held() == 0
        assert await _sla_state(app, order.ticket_id) == ("resolved", ["unit_signature"] * 3, 0)
        pool = await rt.pool()
        errors = [r["error"] for r in await pool.fetch("SELECT error FROM dead_letters ORDER BY \"offset\"")]
        assert errors[0].startswith(f"{order.lead_unit} ({lead}) signs its updates and this one carries no valid")
        assert errors[1].startswith(f"signed by {neighbour} (") and errors[1].endswith(f"name of {order.lead_unit}")
        assert errors[2].startswith(f"the signature does not match the message under the keys of {lead}")
        state = await pool.fetchval("SELECT state FROM tickets WHERE ticket_id = $1", order.ticket_id)
        assert [t["update_id"] for t in state["transitions"][1:]] == ["ACK-1", "RES-1"]
        await pool.close()

    asyncio.run(go())


def test_a_bad_unit_keys_file_stops_the_sla_worker_naming_it(database: str, rules: SlaRules,
                                                              tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.platform.settings import ConfigurationError

    keys = tmp_path / "unit-keys.yaml"
    keys.write_text("qingpu.nope: [" + "k" * 32 + "]\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="entry 1: its code is not a unit or territory of the rulebooks"):
        _sla(database, rules, unit_keys_file=str(keys))


def test_a_unit_listed_while_its_updates_are_held_loses_none_and_a_forgery_is_found(
        database: str, rules: SlaRules, router, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A unit's system signs before the unit is listed (its signature is ignored until then). Its acknowledgement and
    a forged resolution in its name, both held for their work order, are tried after the unit was listed: the
    signature is checked then, so the acknowledgement applies and the forgery is refused."""
    from services.platform.unit_signature import signed_headers

    order, ack, resolve = _ack_then_resolve(router, rules)
    lead = next(code for code, unit in rules.units.items() if unit == (order.jurisdiction.value, order.lead_unit))
    key = "k" * 64
    keys = tmp_path / "unit-keys.yaml"
    keys.write_text("", encoding="utf-8")  # nobody listed yet
    forged = [("hotline_unit", lead.encode()), ("hotline_unit_signature", b"sha256=" + b"0" * 64)]

    async def go() -> tuple[str | None, list[str], int]:
        app = _sla(database, rules, unit_keys_file=str(keys))
        await _agent(app, "sla-updates", [[_event("hotline.updates", 0, ack, signed_headers(lead, key, ack)),
                                           _event("hotline.updates", 1, resolve, forged)]])
        await (await app.hotline_runtime.pool()).close()
        keys.write_text(f"{lead}: [{key}]\n", encoding="utf-8")
        app = _sla(database, rules, unit_keys_file=str(keys))
        await _agent(app, "sla-workorders", [[_work_order(order, 0)]])
        assert await app.hotline_runtime.retry_held() == 0
        state = await _sla_state(app, order.ticket_id)
        await (await app.hotline_runtime.pool()).close()
        return state

    assert asyncio.run(go()) == ("acknowledged", ["unit_signature"], 0)
