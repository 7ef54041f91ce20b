"""Held-out routing evaluation: 200 reports written from the plans by a second author, without looking at the
rulebooks or at tests/data/routing_eval.jsonl, in citizen / inspector / petition / sensor phrasing.

- routing_holdout_dev.jsonl (100 rows, 25 per jurisdiction): rules were tuned on its misses only. Held to the
  floors below (lead ≥ 90 %, territory ≥ 95 %, out-of-scope → triage 100 %, emergency → redirect 100 %).
- routing_holdout_test.jsonl (100 rows, 25 per jurisdiction): measured once before and once after tuning, never
  tuned on. Its floors are the figures measured after tuning, rounded down to the next 5 %; they guard against
  regressions, they are not targets. Raise them when the rules genuinely improve; do not tune on this file's misses.

Both files: stratified split by (jurisdiction, outcome) with a fixed seed. See docs/routing.md, "Held-out evaluation".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.intake import IntakeEvent
from services.domain.routing import Router
from services.domain.routing.evaluation import evaluate, load_rows

DATA = Path(__file__).resolve().parents[1] / "data"
DEV = DATA / "routing_holdout_dev.jsonl"
TEST = DATA / "routing_holdout_test.jsonl"
JURISDICTIONS = ("qingpu", "chongming", "changning", "zhalantun")

DEV_FLOORS = {"lead_accuracy": 0.90, "territory_accuracy": 0.95, "out_of_scope_triage": 1.0, "emergency_redirect": 1.0}

# Test set, never tuned on, measured after the vocabulary pass (rulebook 5849908532e7, docs/routing.md):
#   changning  lead 85.0 %, territory 100 %, out-of-scope → triage 100 %, emergency 100 %
#   chongming  lead 73.7 %, territory 100 %, out-of-scope → triage 100 %, emergency 100 %
#   qingpu     lead 70.0 %, territory 100 %, out-of-scope → triage 100 %, emergency 100 %
#   zhalantun  lead 95.0 %, territory 100 %, out-of-scope → triage 100 %, emergency 100 %
# (first measurement, before any tuning: lead 65.0 / 52.6 / 60.0 / 70.0 %). Floors = measured, rounded down to 5 %.
TEST_FLOORS = {
    "changning": {"lead_accuracy": 0.85, "territory_accuracy": 1.0, "out_of_scope_triage": 1.0, "emergency_redirect": 1.0},
    "chongming": {"lead_accuracy": 0.70, "territory_accuracy": 1.0, "out_of_scope_triage": 1.0, "emergency_redirect": 1.0},
    "qingpu": {"lead_accuracy": 0.70, "territory_accuracy": 1.0, "out_of_scope_triage": 1.0, "emergency_redirect": 1.0},
    "zhalantun": {"lead_accuracy": 0.95, "territory_accuracy": 1.0, "out_of_scope_triage": 1.0, "emergency_redirect": 1.0},
}


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load()


@pytest.fixture(scope="module")
def dev_report(router: Router) -> dict:
    return evaluate(router, load_rows(DEV))


@pytest.fixture(scope="module")
def test_report(router: Router) -> dict:
    return evaluate(router, load_rows(TEST))


@pytest.mark.parametrize("path", [DEV, TEST], ids=["dev", "test"])
def test_holdout_set_shape(router: Router, path: Path) -> None:
    rows = load_rows(path)
    assert len(rows) == 100
    for j in JURISDICTIONS:
        mine = [r for r in rows if r["event"]["jurisdiction"] == j]
        assert len(mine) >= 25, j
        assert sum(r["expected"]["outcome"] == "triage" for r in mine) >= 2, j
        assert sum(r["expected"]["outcome"] == "redirect" for r in mine) >= 2, j
    for r in rows:
        event = IntakeEvent.model_validate(r["event"])
        exp = r["expected"]
        assert exp["outcome"] in {"dispatch", "triage", "redirect"}
        if exp["outcome"] == "dispatch":
            # the label names a unit the jurisdiction's rulebook knows (spelling aligned, choice is the author's)
            router.unit_code(str(event.jurisdiction), exp["lead_unit"])
        else:
            assert exp["lead_unit"] is None
        assert (exp["redirect_to"] is not None) == (exp["outcome"] == "redirect")
        if exp["territorial_unit"] is not None:
            router.unit_code(str(event.jurisdiction), exp["territorial_unit"])


def test_dev_and_test_are_disjoint() -> None:
    dev, test = load_rows(DEV), load_rows(TEST)
    assert not {r["event"]["event_id"] for r in dev} & {r["event"]["event_id"] for r in test}
    assert not {r["event"]["content"] for r in dev} & {r["event"]["content"] for r in test}


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_dev_floors(dev_report: dict, jurisdiction: str) -> None:
    r = dev_report["jurisdictions"][jurisdiction]
    for metric, floor in DEV_FLOORS.items():
        assert r[metric] is not None and r[metric] >= floor, (metric, r[metric], r["misses"])


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_test_floors(test_report: dict, jurisdiction: str) -> None:
    r = test_report["jurisdictions"][jurisdiction]
    for metric, floor in TEST_FLOORS[jurisdiction].items():
        assert r[metric] is not None and r[metric] >= floor - 1e-9, (metric, r[metric], [m["event_id"] for m in r["misses"]])
