"""Hostile input: 10,000+ generated messages through intake; every one is accounted for, nothing raises."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.replay.pipeline import Pipeline

VALID = {"event_id": "F-1", "source": "hotline_12345", "jurisdiction": "qingpu",
         "occurred_at": "2025-05-06T09:00:00+08:00", "content": "小区里有人私搭乱建彩钢板房", "address": "上海市青浦区朱家角镇",
         "caller": {"name": "张三", "phone": "13812345678"}, "campaigns": ["qingpu-2025-hotspots-12345"]}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30)


@st.composite
def mutated_event(draw) -> bytes:  # type: ignore[no-untyped-def]
    event = dict(VALID)
    event["event_id"] = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True))
    for key in draw(st.lists(st.sampled_from(sorted(VALID) + ["extra", "location", "iot", "urgency"]), max_size=3)):
        if draw(st.booleans()):
            event.pop(key, None)
        else:
            event[key] = draw(json_values)
    return json.dumps(event, ensure_ascii=draw(st.booleans())).encode()


hostile = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated_event(),
    st.integers(1, 40).map(lambda n: b"[" * n * 3 + b"]" * n * 3),
)


def test_ten_thousand_hostile_messages_are_all_accounted(router, rules) -> None:  # type: ignore[no-untyped-def]
    pipeline = Pipeline(router=router, rules=rules)
    buckets: Counter[str] = Counter()
    now = datetime(2025, 5, 6, tzinfo=UTC)

    @settings(max_examples=10_000, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(raw=hostile)
    def feed(raw: bytes) -> None:
        bucket = pipeline.event(raw, origin="fuzz", offset=sum(buckets.values()), received_at=now)
        assert bucket in ("accepted", "rejected", "duplicate", "merged")
        buckets[bucket] += 1

    feed()
    total = sum(buckets.values())
    assert total >= 10_000
    assert buckets["rejected"] == len(pipeline.rejects)
    assert buckets["accepted"] == len(pipeline.routing) and buckets["accepted"] > 0
    assert all(r.reason and r.error for r in pipeline.rejects)
    assert all("13812345678" not in r.original for r in pipeline.rejects)
