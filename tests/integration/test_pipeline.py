"""The three workers on the real embedded broker (Tansu) and database (pgserver) give the same work orders,
escalations and rejections as the offline replay of the same files, and redelivery changes nothing."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from services.demo.feeder import Feeder
from services.demo.runner import feed
from services.demo.sample import generate
from services.demo.stack import start
from services.domain.scorecards import compute
from services.domain.tickets import OPEN_FOR_UNIT
from services.platform.kafka_security import client_options
from services.platform.unit_signature import UnitKeys, signed_headers as unit_headers
from services.replay.runner import run as replay
from services.sla.report import from_database
from tests.conftest import cst

pytestmark = pytest.mark.integration
UNTIL = cst("2025-07-20 00:00")


@pytest.fixture(scope="module")
def world(router, rules, tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("stack")
    sample = generate(router, n_events=160, seed=12345)  # a seed whose sample has re-dispatches, merges, disputes
    events, updates, rulings = sample.write(root / "input")
    running = start(root, router, sla_clock="ticks")
    try:
        asyncio.run(feed(running, sample, UNTIL))
        offline = replay(events, updates, router, rules, rulings=rulings, until=UNTIL)
        yield running, sample, offline, root
    finally:
        running.stop()


async def _fetch(dsn: str, sql: str) -> list[dict]:  # type: ignore[type-arg]
    conn = await asyncpg.connect(dsn)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def _db(running, sql: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    return asyncio.run(_fetch(running.dsn, sql))


def test_streaming_work_orders_equal_replay(world) -> None:  # type: ignore[no-untyped-def]
    running, _, offline, _ = world
    streamed = {r["work_order_id"]: r["payload"] for r in _db(running, "SELECT work_order_id, payload FROM work_orders")}
    expected = {w.work_order_id: w.model_dump(mode="json") for w in offline.pipeline.work_orders}
    assert len(expected) > 100
    assert streamed == expected
    assert any(w.dispatch_seq > 1 for w in offline.pipeline.work_orders)  # re-dispatch after a return


def test_streaming_escalations_equal_replay(world) -> None:  # type: ignore[no-untyped-def]
    running, _, offline, _ = world
    streamed = {r["escalation_id"]: r["payload"] for r in _db(running, "SELECT escalation_id, payload FROM escalations")}
    expected = {e.escalation_id: e.model_dump(mode="json") for e in offline.pipeline.escalations}
    kinds = Counter(e["kind"] for e in expected.values())
    assert {"ack_overdue", "resolve_warning", "resolve_overdue", "ownership_dispute", "triage_overdue",
            "repeat_after_close", "extension_review_overdue"} <= set(kinds), kinds
    assert streamed == expected


def test_streaming_rejections_equal_replay(world) -> None:  # type: ignore[no-untyped-def]
    running, _, offline, _ = world
    streamed = Counter((r["stage"], r["reason"]) for r in _db(running, "SELECT stage, reason FROM dead_letters"))
    expected = Counter((r.stage, r.reason) for r in offline.pipeline.rejects)
    assert streamed == expected and sum(expected.values()) >= 5
    letters = _db(running, "SELECT original FROM dead_letters")
    assert all(not re.search(r"1[3-9]\d{9}", r["original"]) for r in letters)


def test_redelivered_and_forged_inputs_change_nothing_and_are_counted(world, rules) -> None:  # type: ignore[no-untyped-def]
    running, sample, _, _ = world
    tables = ("work_orders", "escalations", "transitions", "routing_decisions", "dead_letters", "tickets")
    before = {t: _db(running, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables}
    state_before = _db(running, "SELECT ticket_id, state FROM tickets ORDER BY ticket_id")

    router_tickets = [r["state"] for r in _db(running, "SELECT state FROM router_tickets")]

    def router_duplicates() -> float:
        found = re.search(r'hotline_duplicates_total\{stage="router"\} (\S+)', running.metrics("router"))
        return float(found.group(1)) if found else 0.0

    async def returns_again() -> int:
        """Every message the SLA worker sent the router on the returns topic, sent once more as a crash would."""
        topic = running.settings.topic_prefix + ".returns"
        consumer = AIOKafkaConsumer(**client_options(running.settings), enable_auto_commit=False)
        producer = AIOKafkaProducer(**client_options(running.settings))
        await consumer.start()
        await producer.start()
        try:
            await consumer.topics()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            messages = []
            while any([await consumer.position(tp) < end[tp] for tp in partitions]):
                messages += [m for batch in (await consumer.getmany(timeout_ms=1000)).values() for m in batch]
            sent = [await producer.send(topic, m.value, key=m.key, headers=list(m.headers)) for m in messages]
            await asyncio.gather(*sent)
            return len(sent)
        finally:
            await consumer.stop()
            await producer.stop()

    async def again() -> int:
        async with Feeder(running.settings, running.dsn) as feeder:
            await feeder.publish("raw", sample.events, "jurisdiction")
            await feeder.publish("updates", sample.updates, "ticket_id")
            await feeder.publish("rulings", sample.rulings, "ticket_id")
            await feeder.publish("raw", [conflicting], "jurisdiction")
            for topic, raw, headers in forged:  # not signed by the desk, or not by the unit they name
                await feeder.producer.send_and_wait(running.settings.topic_prefix + "." + topic, raw,
                                                    key=json.loads(raw)["ticket_id"].encode(), headers=headers)
            returned = await returns_again()
            await feeder.wait_quiescent()
            return returned

    # an accepted event's id reused by another system for another report: dead-lettered, not a duplicate
    first = next(json.loads(e) for e in sample.events if e.startswith(b"{") and b'"event_id"' in e
                 and json.loads(e).get("source") == "hotline_12345")
    conflicting = json.dumps({**first, "content": first["content"] + "（另一系统的同号工单）"}, ensure_ascii=False).encode()
    # a report stored by an older build that today's contract refuses (here: a schema version since withdrawn) is
    # not shown to be the one sent again: an id_conflict dead letter, not an error that stops intake's batch
    old = next(json.loads(e) for e in sample.events if e.startswith(b"{") and b'"event_id"' in e
               and json.loads(e).get("source") == "hotline_12345" and json.loads(e)["event_id"] != first["event_id"])
    [stored] = _db(running, "UPDATE intake_events SET payload = jsonb_set(payload, '{schema_version}', '0') "
                            f"WHERE event_id = '{old['event_id']}' RETURNING event_id")
    # someone writes the dispatch desk's name: the reopening (复核重办) of a ticket closed after a satisfied callback,
    # the close of a ticket in the desk's queue. Without the desk's signature (HOTLINE_DESK_SIGNING_KEYS) both are
    # dead letters, and no ticket changes (above)
    closed = next(r for r in _db(running, "SELECT ticket_id, state FROM tickets WHERE status = 'closed' ORDER BY 1")
                  if r["state"]["transitions"][-1]["action"] == "callback")
    waiting = _db(running, "SELECT ticket_id, state FROM tickets WHERE status = 'triage' ORDER BY 1 LIMIT 1")[0]
    forged = [("updates", json.dumps({
        "event_id": "FORGED-REOPEN", "ticket_id": closed["ticket_id"], "action": "reopen", "reason": "群众不满意",
        "unit": rules.desks[closed["state"]["jurisdiction"]],
        "occurred_at": closed["state"]["transitions"][-1]["at"]}, ensure_ascii=False).encode(), None),
        ("rulings", json.dumps({
            "ruling_id": "FORGED-R", "ticket_id": waiting["ticket_id"], "action": "close", "reason": "已答复",
            "desk": rules.desks[waiting["state"]["jurisdiction"]],
            "occurred_at": waiting["state"]["transitions"][-1]["at"]}, ensure_ascii=False).encode(), None)]
    # and a unit's 办结 of a ticket its district's unit of that name holds: unsigned, signed by another unit of the
    # district in that name, and signed by the unit of the same name in another district (HOTLINE_UNIT_KEYS_FILE)
    keys = UnitKeys.load(Path(running.settings.unit_keys_file), rules.units)
    held, holder, elsewhere = next(
        (r, keys.codes[(r["state"]["jurisdiction"], r["state"]["unit"])], code)
        for r in _db(running, "SELECT ticket_id, state FROM tickets WHERE status = 'acknowledged' ORDER BY 1")
        for code, (j, name) in sorted(keys.units.items())
        if name == r["state"]["unit"] and j != r["state"]["jurisdiction"])
    neighbour = next(code for code, (j, _) in sorted(keys.units.items())
                     if j == held["state"]["jurisdiction"] and code != holder)
    resolve = {"ticket_id": held["ticket_id"], "action": "resolve", "unit": held["state"]["unit"], "note": "已办结",
               "occurred_at": held["state"]["transitions"][-1]["at"]}
    for n, signer in enumerate((None, neighbour, elsewhere)):
        raw = json.dumps({**resolve, "event_id": f"FORGED-RESOLVE-{n}"}, ensure_ascii=False).encode()
        forged.append(("updates", raw, unit_headers(signer, keys.keys[signer][0], raw) if signer else None))
    counted = router_duplicates()
    returned = asyncio.run(again())
    _db(running, "UPDATE intake_events SET payload = jsonb_set(payload, '{schema_version}', '1') "
                 f"WHERE event_id = '{stored['event_id']}' RETURNING event_id")
    after = {t: _db(running, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables}
    # New offsets mean new dead-letter rows for the broken lines; everything else is recognised.
    assert {t: after[t] for t in tables if t != "dead_letters"} == {t: before[t] for t in tables if t != "dead_letters"}
    assert _db(running, "SELECT ticket_id, state FROM tickets ORDER BY ticket_id") == state_before
    metrics = running.metrics("intake")
    assert re.search(r'hotline_duplicates_total\{stage="intake"\} [1-9]', metrics)
    conflicts = _db(running, "SELECT original FROM dead_letters WHERE reason = 'id_conflict'")
    assert len(conflicts) == 2 and sum("另一系统的同号工单" in c["original"] for c in conflicts) == 1
    assert sum(old["content"][:12] in c["original"] for c in conflicts) == 1
    assert not _db(running, "SELECT reason FROM dead_letters WHERE reason = 'internal_error'")
    signatures = _db(running, "SELECT stage, original FROM dead_letters WHERE reason = 'desk_signature' ORDER BY 1")
    assert [(r["stage"], "FORGED-" in r["original"]) for r in signatures] == [("router", True), ("sla", True)]
    units_refused = _db(running, "SELECT stage, error, original FROM dead_letters WHERE reason = 'unit_signature' "
                                 "ORDER BY original")
    assert [(r["stage"], f"FORGED-RESOLVE-{n}" in r["original"]) for n, r in enumerate(units_refused)] == [
        ("sla", True)] * 3
    assert [r["error"].split(" ")[:3] for r in units_refused] == [
        [held["state"]["unit"], f"({holder})", "signs"], ["signed", "by", neighbour], ["signed", "by", elsewhere]]
    # The router recognises each return (sent again as after a crash) and ruling it applied, and counts it
    assert returned >= sum(len(t["handled_returns"]) for t in router_tickets) > 0
    rulings_applied = sum(len(t["rulings"]) for t in router_tickets)
    assert rulings_applied > 0
    assert router_duplicates() - counted == returned + rulings_applied


def test_each_worker_serves_metrics(world) -> None:  # type: ignore[no-untyped-def]
    running, _, offline, _ = world
    assert "hotline_intake_received_total{" in running.metrics("intake")
    router_metrics = running.metrics("router")
    assert 'hotline_router_decisions_total{jurisdiction="qingpu",outcome="dispatch"}' in router_metrics
    assert "hotline_router_work_orders_total{" in router_metrics
    # why tickets went to the desk, and the decisions' confidence, counted as the replay decided
    samples = [s for family in text_string_to_metric_families(router_metrics) for s in family.samples]
    triage = Counter({(s.labels["jurisdiction"], s.labels["reason"]): s.value for s in samples
                      if s.name == "hotline_router_triage_total"})
    expected = Counter((str(t.jurisdiction), (t.decision.triage_reason or "").split(":", 1)[0])
                       for t in offline.pipeline.triage if t.decision.outcome == "triage")
    assert triage == expected and {"ownership_dispute", "out_of_scope"} <= {r for _, r in expected}
    decided = sum(s.value for s in samples if s.name == "hotline_router_decisions_total")
    assert decided == sum(s.value for s in samples if s.name == "hotline_router_category_decisions_total") > 0
    assert decided == sum(s.value for s in samples if s.name == "hotline_router_confidence_count")
    sla_metrics = running.metrics("sla")
    assert 'hotline_escalations_total{jurisdiction="qingpu",kind="resolve_overdue",level="1"}' in sla_metrics
    assert 'hotline_campaign_target_ratio{campaign_id="qingpu-2025-hotspots-12345"} 0.7' in sla_metrics
    for series in ("hotline_work_orders_open{", "hotline_work_orders_overdue{", "hotline_unit_response_ratio{",
                   "hotline_unit_satisfaction_ratio{", 'hotline_triage_backlog{jurisdiction="qingpu"}'):
        assert series in sla_metrics, series
    assert re.search(r"hotline_dispatch_latency_seconds_count [1-9]", router_metrics)
    assert "hotline_consumer_lag_messages{" in router_metrics


def test_workers_listen_only_on_the_configured_interface(world) -> None:  # type: ignore[no-untyped-def]
    """HOTLINE_WEB_HOST (default 127.0.0.1) is where /metrics and /healthz listen, not only the URL they name."""
    import psutil

    running, _, _, _ = world
    for service in ("intake", "router", "sla"):
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(running.stack.workers[service].pid)
                     .net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        assert listening == {("127.0.0.1", running.stack.ports[service])}, service


def test_logs_carry_no_personal_data(world) -> None:  # type: ignore[no-untyped-def]
    running, sample, _, _ = world
    callers = [json.loads(e)["caller"] for e in sample.events if e.startswith(b"{") and b'"caller"' in e]
    phones = {c["phone"] for c in callers}
    logs = "".join(p.read_text(encoding="utf-8", errors="replace") for p in running.stack.logs.glob("*.log"))
    assert phones and len(logs) > 100
    assert not [p for p in phones if p in logs]
    assert '"name"' not in logs or not any(f'"name": "{c["name"]}"' in logs for c in callers)


def test_unit_topics_carry_only_that_units_work(world, router) -> None:  # type: ignore[no-untyped-def]
    running, _, offline, _ = world
    from aiokafka import AIOKafkaConsumer

    order = next(w for w in offline.pipeline.work_orders if w.jurisdiction.value == "qingpu")
    code = router.unit_code("qingpu", order.lead_unit)
    topic = f"hotline.unit.{code}"

    async def read() -> list[dict]:  # type: ignore[type-arg]
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=running.settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=3000)
            return [json.loads(m.value) for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()

    received = asyncio.run(read())
    orders = [m for m in received if "work_order_id" in m]  # the rest are repeat reports of the unit's tickets
    assert orders
    assert all(order.lead_unit in (w["lead_unit"], *w["cooperating_units"], w["territorial_unit"]) for w in orders)
    assert {m["ticket_id"] for m in received} <= {w["ticket_id"] for w in orders}


def test_streaming_ticket_states_and_merges_equal_replay(world) -> None:  # type: ignore[no-untyped-def]
    running, _, offline, _ = world
    streamed = {r["ticket_id"]: r["state"] for r in _db(running, "SELECT ticket_id, state FROM tickets")}
    expected = {t: s.model_dump(mode="json") for t, s in offline.pipeline.tickets.items()}
    assert set(streamed) == set(expected)
    differing = {t: {k: (streamed[t].get(k), v) for k, v in expected[t].items() if streamed[t].get(k) != v}
                 for t in expected if streamed[t] != expected[t]}
    assert not differing, json.dumps(dict(list(differing.items())[:2]), ensure_ascii=False)[:3000]
    merged = _db(running, "SELECT event_id, ticket_id FROM intake_events WHERE merged ORDER BY event_id")
    assert merged == sorted(({"event_id": r.event_id, "ticket_id": r.ticket_id} for r in offline.pipeline.repeats),
                            key=lambda r: r["event_id"])
    assert merged and offline.summary["merged"] == len(merged)
    assert any(s["repeats"] > 0 for s in streamed.values())
    # the desk's reopening of a closed ticket (复核重办) came through the updates topic as in the replay
    assert any(t["action"] == "reopen" for s in streamed.values() for t in s["transitions"])
    audit = {}
    for r in _db(running, "SELECT ticket_id, update_id, seq, from_status, to_status FROM transitions"):
        audit.setdefault(r["ticket_id"], set()).add((r["update_id"], r["seq"], r["from_status"], r["to_status"]))
    for ticket_id, state in expected.items():  # the audit trail holds every transition, numbered as the state
        assert audit.get(ticket_id, set()) == {(t["update_id"], t["seq"], t["from_status"], t["to_status"])
                                               for t in state["transitions"]}, ticket_id


def test_streaming_campaign_evaluations_equal_replay(world) -> None:  # type: ignore[no-untyped-def]
    """The SLA worker's campaign evaluations (count queries over the stored facts) are the replay's (counts kept
    in memory), report by report, and so are the campaign escalations among all escalations above."""
    running, _, offline, _ = world
    streamed: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for r in _db(running, "SELECT campaign_id, report FROM campaign_evaluations ORDER BY campaign_id, at"):
        streamed.setdefault(r["campaign_id"], []).append(r["report"])
    expected = {cid: [json.loads(r.model_dump_json()) for r in s.history]
                for cid, s in offline.pipeline.campaign_states.items()}
    assert streamed == expected
    assert sum(len(h) for h in expected.values()) > 100 and any(r["enrolled"] for h in expected.values() for r in h)
    states = {r["campaign_id"]: r["state"] for r in _db(running, "SELECT campaign_id, state FROM campaign_state")}
    for cid, state in offline.pipeline.campaign_states.items():
        trimmed = json.loads(state.model_copy(update={"history": state.history[-1:]}).model_dump_json())
        assert states[cid] == trimmed, cid


def test_database_scorecards_equal_replay(world) -> None:  # type: ignore[no-untyped-def]
    """`hotline report` (and the gauges) count unit scorecards in SQL over the stored facts; they equal the pure
    ``scorecards.compute`` over the replay's tickets that the window covers."""
    running, _, offline, _ = world
    since = UNTIL - timedelta(days=running.settings.scorecard_window_days)
    _, streamed = asyncio.run(from_database(running.dsn, UNTIL, running.settings.scorecard_window_days))
    covered = [t for t in offline.pipeline.tickets.values() if t.opened_at >= since or t.status in OPEN_FOR_UNIT]
    expected = [s.as_dict() for s in compute(covered, UNTIL)]
    assert sum(s["dispatches"] for s in expected) > 100 and any(s["overdue"] for s in expected)
    assert streamed == expected


def test_the_desks_rulings_dispatch_and_close_as_in_the_replay(world) -> None:  # type: ignore[no-untyped-def]
    """Rulings on the rulings topic: the router dispatches (citing the rule) or closes, as the replay does."""
    running, sample, offline, _ = world
    assert sample.rulings
    rows = _db(running, "SELECT ticket_id, seq, outcome, lead_unit, decision->>'explanation' AS why "
                        "FROM routing_decisions WHERE decision->>'explanation' ~ '人工(派单|办结)'")
    ruled = {(r["ticket_id"], r["outcome"], r["lead_unit"]) for r in rows}
    expected = {(w.ticket_id, "dispatch", w.lead_unit) for w in offline.pipeline.work_orders
                if "人工派单" in w.decision.explanation}
    expected |= {(t.ticket_id, "close", None) for t in offline.pipeline.triage if t.decision.outcome == "close"}
    assert ruled == expected
    assert {"dispatch", "close"} <= {outcome for _, outcome, _ in ruled}
    assert all(r["seq"] >= 2 for r in rows)  # stored beside the router's own decision, not in its place
