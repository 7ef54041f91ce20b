"""The HTTP / Open311 entry on the real embedded broker and database with the three workers running (wall clock):
requests become tickets the router dispatches to the unit it would pick offline, status comes back in Open311 form,
bad requests name the field, API keys are enforced, and an Open311 retry with the same Idempotency-Key opens one
ticket."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from structlog.testing import capture_logs

from services.demo.stack import Running, start
from services.domain.intake import accept_event
from services.domain.validation import Rejection
from services.intake.http import build_app, kafka_publisher
from services.intake.open311 import load_categories
from services.platform.db import create_pool
from services.platform.topics import names

pytestmark = pytest.mark.integration
KEY = "itest-key-7f3a"
AUTH = {"X-API-Key": KEY}
PHONE = "13912345678"
DISPATCH_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def running(router, tmp_path_factory):  # type: ignore[no-untyped-def]
    stack = start(tmp_path_factory.mktemp("http-stack"), router, sla_clock="wall")
    try:
        yield stack
    finally:
        stack.stop()


@asynccontextmanager
async def entry(running: Running) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The app in-process, wired to a real producer (acks=all) on the raw topic and a real pool."""
    settings = running.settings.model_copy(update={"http_api_keys": f"{KEY}, another-key"})
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    pool = await create_pool(running.dsn, 2)
    try:
        app = build_app(settings, publish=kafka_publisher(producer, names(settings.topic_prefix)["raw"]), pool=pool,
                        categories=load_categories())
        async with TestClient(TestServer(app)) as client:
            yield client
    finally:
        await pool.close()
        await producer.stop()


def _event(event_id: str, jurisdiction: str, content: str, address: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "source": "hotline_12345", "jurisdiction": jurisdiction,
            "occurred_at": datetime.now(UTC).isoformat(), "content": content, "address": address, **extra}


async def _poll(client: TestClient, url: str, done: Callable[[dict[str, Any]], bool],  # type: ignore[type-arg]
                timeout: float = DISPATCH_TIMEOUT) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        response = await client.get(url, headers=AUTH)
        last = (response.status, await response.json())
        if response.status == 200 and done(last[1][0]):
            return last[1][0]  # type: ignore[no-any-return]
        assert response.status in (200, 404), last
        await asyncio.sleep(0.3)
    raise AssertionError(f"{url} not done after {timeout:.0f}s; last answer {last}")


async def _db(running: Running, sql: str, *args: Any) -> list[dict[str, Any]]:
    pool = await create_pool(running.dsn, 1)
    try:
        return [dict(r) for r in await pool.fetch(sql, *args)]
    finally:
        await pool.close()


async def test_event_is_dispatched_to_the_unit_the_router_picks(  # type: ignore[no-untyped-def]
        running, router) -> None:
    event = _event("HTTP-EV-0001", "qingpu",
                   "盈中新村12号楼一楼住户把自家院子围起来，正在搭彩钢板房，这两天天天在电焊，眼看就要封顶了，麻烦城管赶紧来看看。",
                   "上海市青浦区盈浦街道盈中新村12号", caller={"name": "李雷", "phone": PHONE})
    raw = json.dumps(event, ensure_ascii=False).encode()
    parsed = accept_event(raw)
    assert not isinstance(parsed, Rejection)
    decision = router.route(parsed)
    assert decision.outcome == "dispatch" and decision.lead_unit

    with capture_logs() as logs:
        async with entry(running) as client:
            response = await client.post("/v1/events", data=raw, headers={**AUTH, "Content-Type": "application/json"})
            assert response.status == 202
            body = await response.json()
            assert body == {"event_id": "HTTP-EV-0001", "status_url": "/requests/HTTP-EV-0001.json"}
            item = await _poll(client, body["status_url"], lambda r: r["status_notes"] == "dispatched")
            several = await client.get("/requests.json", params={"service_request_id": "HTTP-EV-0001,NOPE-1"},
                                       headers=AUTH)
            assert several.status == 200 and [r["service_request_id"] for r in await several.json()] == ["HTTP-EV-0001"]

    assert item["status"] == "open"
    assert item["agency_responsible"] == decision.lead_unit
    assert item["service_code"] == decision.category and item["service_name"]
    assert item["expected_datetime"] is not None
    assert datetime.fromisoformat(item["expected_datetime"]) > datetime.fromisoformat(item["requested_datetime"])
    assert item["description"] == parsed.content and item["address"] == parsed.address
    answer = json.dumps(item, ensure_ascii=False)
    assert PHONE not in answer and "李雷" not in answer
    logged = json.dumps(logs, ensure_ascii=False, default=str)
    assert "HTTP-EV-0001" in logged
    assert KEY not in logged and PHONE not in logged and "李雷" not in logged and "彩钢板房" not in logged


async def test_open311_retry_with_the_same_idempotency_key_opens_one_ticket(  # type: ignore[no-untyped-def]
        running, router) -> None:
    form = {"api_key": KEY, "jurisdiction_id": "chongming", "service_code": "ebike_charging",
            "description": "小区楼道里有人飞线充电，电动车推上楼充电，很危险。",
            "address_string": "上海市崇明区城桥镇翠竹苑5号楼", "lat": "31.6262", "long": "121.3972",
            "first_name": "梅梅", "last_name": "韩", "phone": PHONE, "email": "someone@example.org"}
    with capture_logs() as logs:
        async with entry(running) as client:
            answers = []
            for _ in range(2):  # the client retries: same Idempotency-Key, a later moment
                response = await client.post("/requests.json", data=form, headers={"Idempotency-Key": "retry-42"})
                assert response.status == 201, await response.text()
                answers.append(await response.json())
                await asyncio.sleep(0.05)
            ids = {a[0]["service_request_id"] for a in answers}
            assert len(ids) == 1
            request_id = ids.pop()
            assert re.fullmatch(r"O311-[0-9a-f]{20}", request_id)
            assert answers[0][0]["account_id"] is None and request_id in answers[0][0]["service_notice"]
            item = await _poll(client, f"/requests/{request_id}.json", lambda r: r["status_notes"] == "dispatched")
            # the same key for a different report: refused, not answered with the first report's id
            reused = await client.post("/requests.json", data={**form, "description": "楼道里堆满了纸箱，物业不清理。"},
                                       headers={"Idempotency-Key": "retry-42"})
            assert reused.status == 409, await reused.text()
            assert "Idempotency-Key" in (await reused.json())[0]["description"]
            # the report as an older build stored it, which today's contract refuses (content over today's limit):
            # still compared, field by field, and still a 409 for another report, not an error
            await _db(running, """UPDATE intake_events SET payload = jsonb_set(payload, '{content}',
                                  to_jsonb(repeat('旧', 5000))) WHERE event_id = $1""", request_id)
            reused = await client.post("/requests.json", data={**form, "description": "楼道里堆满了纸箱，物业不清理。"},
                                       headers={"Idempotency-Key": "retry-42"})
            assert reused.status == 409, await reused.text()
            # a fresh key is a new request (another place and matter, so that it is not merged as a repeat)
            other_form = {**form, "jurisdiction_id": "zhalantun", "service_code": "",
                          "description": "吊桥小区门口的路灯坏了三天了，晚上很黑。", "address_string": "扎兰屯市吊桥小区"}
            other = await client.post("/requests.json", data=other_form, headers={"Idempotency-Key": "retry-43"})
            assert other.status == 201, await other.text()
            assert (await other.json())[0]["service_request_id"] != request_id

    parsed = accept_event(json.dumps({"event_id": "X", "source": "hotline_12345", "jurisdiction": "chongming",
                                      "occurred_at": datetime.now(UTC).isoformat(), "content": form["description"],
                                      "address": form["address_string"], "category_hint": "ebike_charging"}).encode())
    assert not isinstance(parsed, Rejection)
    decision = router.route(parsed)
    assert item["agency_responsible"] == decision.lead_unit and item["service_code"] == decision.category
    assert item["expected_datetime"] is not None and item["status"] == "open"
    assert (item["lat"], item["long"]) == (31.6262, 121.3972)
    assert PHONE not in json.dumps(item, ensure_ascii=False)
    assert KEY not in json.dumps(logs, ensure_ascii=False, default=str)

    # intake saw the retry and recognised it: one intake record, one ticket, one work order
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        metrics = await asyncio.to_thread(running.metrics, "intake")
        seen = re.search(r'hotline_duplicates_total\{stage="intake"\} ([0-9.]+)', metrics)
        if seen and float(seen.group(1)) >= 1:
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("intake never recognised the retried request as a duplicate")
    for table, column in (("intake_events", "event_id"), ("tickets", "ticket_id"), ("work_orders", "ticket_id")):
        rows = await _db(running, f"SELECT count(*) AS n FROM {table} WHERE {column} = $1", request_id)
        assert rows[0]["n"] == 1, table
    stored = await _db(running, "SELECT payload FROM work_orders WHERE ticket_id = $1", request_id)
    assert stored[0]["payload"]["caller"] == {"name": "韩梅梅", "phone": PHONE}  # only the unit's work order has it


async def test_unclear_report_waits_in_triage_without_a_deadline(  # type: ignore[no-untyped-def]
        running, router) -> None:
    event = _event("HTTP-EV-0002", "qingpu", "我想咨询一下今年的政策。", "上海市青浦区公园路1号")
    raw = json.dumps(event, ensure_ascii=False).encode()
    parsed = accept_event(raw)
    assert not isinstance(parsed, Rejection)
    decision = router.route(parsed)
    assert decision.outcome == "triage"
    async with entry(running) as client:
        response = await client.post("/v1/events", data=raw, headers=AUTH)
        assert response.status == 202
        item = await _poll(client, "/requests/HTTP-EV-0002.json", lambda r: r["status_notes"] != "received")
    assert item["status"] == "open" and item["status_notes"] == f"triage: {decision.triage_reason}"
    assert item["expected_datetime"] is None and item["agency_responsible"] is None


async def test_bad_requests_are_refused_naming_the_field(running) -> None:  # type: ignore[no-untyped-def]
    async with entry(running) as client:
        bad = _event("HTTP-BAD-1", "pudong", "路灯不亮", "上海市青浦区公园路1号")
        response = await client.post("/v1/events", json=bad, headers=AUTH)
        body = await response.json()
        assert response.status == 400 and set(body) == {"error", "field", "message"}
        assert (body["error"], body["field"]) == ("unknown_jurisdiction", "jurisdiction")
        response = await client.post("/v1/events", json={**bad, "jurisdiction": "qingpu", "colour": "red"},
                                     headers=AUTH)
        body = await response.json()
        assert response.status == 400 and (body["error"], body["field"]) == ("unknown_field", "colour")
        tomorrow = (datetime.now(UTC) + timedelta(hours=8)).isoformat()  # a Beijing time written as UTC
        response = await client.post("/v1/events", json={**bad, "jurisdiction": "qingpu", "occurred_at": tomorrow},
                                     headers=AUTH)
        body = await response.json()
        assert response.status == 400 and (body["error"], body["field"]) == ("future_timestamp", "occurred_at")
        assert "8 hours ahead" in body["message"]
        response = await client.post("/v1/events", data=b"x" * (64 * 1024 + 1), headers=AUTH)
        assert response.status == 413 and (await response.json())["error"] == "too_large"

        form = {"jurisdiction_id": "qingpu", "address_string": "上海市青浦区公园路1号"}
        response = await client.post("/requests.json", data=form, headers=AUTH)
        body = await response.json()
        assert response.status == 400 and body[0]["code"] == 400 and body[0]["description"].startswith("description:")
        response = await client.post("/requests.json", json={**form, "description": "路灯不亮", "phone": "call me"},
                                     headers=AUTH)
        body = await response.json()
        assert response.status == 400 and body[0]["description"].startswith("phone:")
        response = await client.post("/requests.json", data={**form, "description": "路灯不亮", "service_code": "x"},
                                     headers=AUTH)
        assert response.status == 400 and (await response.json())[0]["description"].startswith("service_code:")

        response = await client.get("/requests/NOT-THERE-1.json", headers=AUTH)
        assert response.status == 404 and (await response.json()) == [{"code": 404,
                                                                        "description": "service_request_id: not found"}]
        response = await client.get("/requests.json", headers=AUTH)
        assert response.status == 400

        metrics = await (await client.get("/metrics")).text()
        assert 'hotline_http_requests_total{endpoint="events",status="400"} 3.0' in metrics
        assert 'hotline_http_rejected_total{endpoint="events",reason="unknown_jurisdiction"} 1.0' in metrics
        assert not re.search(r"^hotline_http_published_total\{", metrics, re.MULTILINE)
    rows = await _db(running, "SELECT count(*) AS n FROM dead_letters WHERE original LIKE '%HTTP-BAD-1%'")
    assert rows[0]["n"] == 0  # refused at the door, never published


async def test_api_keys_are_required_except_for_metrics(running) -> None:  # type: ignore[no-untyped-def]
    async with entry(running) as client:
        for method, path in (("GET", "/services.json"), ("POST", "/v1/events"), ("POST", "/requests.json"),
                             ("GET", "/requests/X-1.json"), ("GET", "/requests.json?service_request_id=X-1")):
            response = await client.request(method, path)
            assert response.status == 401, path
            assert response.content_type == "application/json"
            response = await client.request(method, path, headers={"X-API-Key": "wrong"})
            assert response.status == 403, path
        assert (await client.post("/v1/events", json={}, params={"api_key": "nope"})).status == 403
        body = await (await client.post("/v1/events", json={})).json()
        assert body["error"] == "unauthorized"
        body = await (await client.get("/services.json", headers={"X-API-Key": "nope"})).json()
        assert body == [{"code": 403, "description": "the API key is not valid"}]

        response = await client.get("/services.json", params={"api_key": "another-key"})  # Open311 style
        assert response.status == 200
        services = await response.json()
        assert len(services) == len(load_categories())
        assert {"service_code": "illegal_construction", "service_name": "违法建筑", "type": "realtime",
                "metadata": False}.items() <= services[0].items()

        metrics = await client.get("/metrics")
        assert metrics.status == 200
        text = await metrics.text()
        assert 'hotline_http_requests_total{endpoint="services",status="401"} 1.0' in text
        assert 'hotline_http_requests_total{endpoint="services",status="200"} 1.0' in text


async def test_serve_runs_the_entry_until_cancelled(running) -> None:  # type: ignore[no-untyped-def]
    import aiohttp

    from services.intake.http import serve
    from services.platform.embedded import free_port

    port = free_port()
    settings = running.settings.model_copy(update={"http_api_keys": KEY, "http_port": port, "web_host": "127.0.0.1"})
    task = asyncio.create_task(serve(settings))
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"{base}/metrics") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("serve() never listened")
            event = _event("HTTP-EV-0003", "changning", "仙霞路300号门口的共享单车乱停乱放，把人行道全堵住了，轮椅都过不去。",
                           "上海市长宁区仙霞路300号")
            async with session.post(f"{base}/v1/events", json=event, headers=AUTH) as response:
                assert response.status == 202
            loop = asyncio.get_running_loop()
            deadline = loop.time() + DISPATCH_TIMEOUT
            while loop.time() < deadline:
                async with session.get(f"{base}/requests/HTTP-EV-0003.json", headers=AUTH) as response:
                    if response.status == 200 and (await response.json())[0]["status_notes"] == "dispatched":
                        break
                await asyncio.sleep(0.3)
            else:
                raise AssertionError("the event served through serve() was never dispatched")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
