"""Accuracy of the router against a labelled evaluation set (tests/data/routing_eval.jsonl).

    PYTHONPATH=. .venv/bin/python -m services.domain.routing.evaluation tests/data/routing_eval.jsonl
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from schemas.intake import IntakeEvent
from schemas.routing import RoutingDecision

TARGETS = {"lead_accuracy": 0.95, "territory_accuracy": 0.99, "out_of_scope_triage": 1.0, "emergency_redirect": 1.0}


def load_rows(path: Path | str) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _ratio(hit: int, n: int) -> float | None:
    return hit / n if n else None


def _misses(decision: RoutingDecision, expected: dict[str, Any]) -> list[str]:
    wrong = []
    if decision.outcome.value != expected["outcome"]:
        wrong.append("outcome")
    if expected["outcome"] == "dispatch" and decision.lead_unit != expected["lead_unit"]:
        wrong.append("lead_unit")
    if expected["outcome"] == "redirect" and decision.redirect_to != expected.get("redirect_to"):
        wrong.append("redirect_to")
    if decision.territorial_unit != expected.get("territorial_unit"):
        wrong.append("territorial_unit")
    return wrong


def evaluate(router: Any, rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per jurisdiction: n, lead-unit accuracy on dispatch rows, territory accuracy, out-of-scope -> triage
    rate, emergency -> redirect rate (with the right number), outcome accuracy, and the misses."""
    stats: dict[str, dict[str, Any]] = {}
    for row in rows:
        event = IntakeEvent.model_validate(row["event"])
        expected = row["expected"]
        decision = router.route(event)
        s = stats.setdefault(
            str(event.jurisdiction),
            {k: 0 for k in ("n", "dispatch_n", "lead_ok", "territory_ok", "oos_n", "oos_ok", "em_n", "em_ok", "outcome_ok")}
            | {"misses": []},
        )
        s["n"] += 1
        s["outcome_ok"] += decision.outcome.value == expected["outcome"]
        s["territory_ok"] += decision.territorial_unit == expected.get("territorial_unit")
        if expected["outcome"] == "dispatch":
            s["dispatch_n"] += 1
            s["lead_ok"] += decision.lead_unit == expected["lead_unit"]
        elif expected["outcome"] == "triage":
            s["oos_n"] += 1
            s["oos_ok"] += decision.outcome.value == "triage"
        elif expected["outcome"] == "redirect":
            s["em_n"] += 1
            s["em_ok"] += decision.outcome.value == "redirect" and decision.redirect_to == expected.get("redirect_to")
        wrong = _misses(decision, expected)
        if wrong:
            s["misses"].append(
                {
                    "event_id": event.event_id,
                    "content": event.content,
                    "wrong": wrong,
                    "expected": {k: expected.get(k) for k in ("outcome", "category", "lead_unit", "territorial_unit", "redirect_to")},
                    "got": {
                        "outcome": decision.outcome.value,
                        "category": decision.category,
                        "lead_unit": decision.lead_unit,
                        "territorial_unit": decision.territorial_unit,
                        "redirect_to": decision.redirect_to,
                        "rule_id": decision.rule_id,
                        "confidence": decision.confidence,
                        "triage_reason": decision.triage_reason,
                    },
                }
            )
    report: dict[str, Any] = {"rulebook_version": getattr(router, "version", None), "jurisdictions": {}}
    for j in sorted(stats):
        s = stats[j]
        report["jurisdictions"][j] = {
            "n": s["n"],
            "dispatch_n": s["dispatch_n"],
            "lead_accuracy": _ratio(s["lead_ok"], s["dispatch_n"]),
            "territory_accuracy": _ratio(s["territory_ok"], s["n"]),
            "out_of_scope_n": s["oos_n"],
            "out_of_scope_triage": _ratio(s["oos_ok"], s["oos_n"]),
            "emergency_n": s["em_n"],
            "emergency_redirect": _ratio(s["em_ok"], s["em_n"]),
            "outcome_accuracy": _ratio(s["outcome_ok"], s["n"]),
            "misses": s["misses"],
        }
    return report


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Routing evaluation (rulebook {report.get('rulebook_version')})",
        "",
        "| jurisdiction | n | lead unit (dispatch rows) | territory | out-of-scope → triage | emergency → redirect | outcome |",
        "|---|---|---|---|---|---|---|",
    ]
    for j, r in report["jurisdictions"].items():
        lines.append(
            f"| {j} | {r['n']} | {_pct(r['lead_accuracy'])} ({r['dispatch_n']}) | {_pct(r['territory_accuracy'])} | "
            f"{_pct(r['out_of_scope_triage'])} ({r['out_of_scope_n']}) | {_pct(r['emergency_redirect'])} ({r['emergency_n']}) | "
            f"{_pct(r['outcome_accuracy'])} |"
        )
    lines += ["", "Targets: " + ", ".join(f"{k} ≥ {v:.0%}" for k, v in TARGETS.items()), ""]
    misses = [(j, m) for j, r in report["jurisdictions"].items() for m in r["misses"]]
    lines.append(f"Misses: {len(misses)}")
    for j, m in misses:
        got, exp = m["got"], m["expected"]
        lines.append(
            f"- {m['event_id']} ({', '.join(m['wrong'])}): 「{m['content']}」 expected "
            f"{exp['outcome']}/{exp['lead_unit'] or exp['redirect_to']}/{exp['territorial_unit']}, got "
            f"{got['outcome']}/{got['lead_unit'] or got['redirect_to'] or got['triage_reason']}/{got['territorial_unit']} "
            f"via {got['rule_id']} (confidence {got['confidence']})"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from services.domain.routing import Router

    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else str(Path(__file__).resolve().parents[3] / "tests" / "data" / "routing_eval.jsonl")
    report = evaluate(Router.load(args[1] if len(args) > 1 else None), load_rows(path))
    sys.stdout.write(render_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
