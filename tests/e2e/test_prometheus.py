"""End to end with a real Prometheus: the three workers on the embedded broker and database, scraped by the
Prometheus server from Debian's ``prometheus`` package, with the project's alert rules loaded.

What it proves that the promtool unit tests (tests/deploy) cannot: the job names, label names and label values the
rules and the dashboard rely on are the ones the running workers really export (flow counters, processing time,
lag, outbox, triage backlog, unit gauges, the SLA clock and its lateness, every campaign gauge), the rules evaluate
without errors on real series, an overdue ticket ends in the overdue-work alert firing for the right jurisdiction
and unit, and campaigns without tickets raise no at-risk alert.

The test stages one overdue ticket: a 12345 report of illegal construction in Qingpu, published on the raw topic
(keyed by jurisdiction, as producers are asked to) with ``occurred_at`` about 20 working days ago, so that its
acknowledge and resolve deadlines (1 and 5 working days) are long past. The SLA worker runs on the wall clock
(``sla_clock="wall"``) and escalates it at its next sweep; its scorecard gauges refresh every 2 s in the stack.

The rules are a *test copy* of ``deploy/prometheus/rules/hotline.rules.yml``, rewritten with PyYAML:

* every alerting rule gets ``for: 0s`` — the real durations are minutes (``HotlineUnitOverdueWork`` waits 10m),
  far longer than a test may run; with ``0s`` an alert fires at the first evaluation whose expression matches,
  which is exactly the part under test (expression, labels, aggregation). The durations themselves are covered
  by ``promtool test rules`` (tests/deploy/test_alert_rules.py);
* every group's ``interval`` is set to ``1s`` — the groups set their own interval (30s, 1m), which would
  override the global ``evaluation_interval: 1s`` of the generated configuration.

Everything else (expressions, labels, annotations) is the file as shipped. The generated Prometheus configuration
scrapes the workers every second under the production job names ``hotline-intake``, ``hotline-router`` and
``hotline-sla``. The Prometheus binary is ``$HOTLINE_PROMETHEUS``, else ``prometheus`` on PATH, else
``/usr/bin/prometheus``; the test fails (does not skip) without it. Prometheus and the stack are stopped in
``finally``; Prometheus's log is printed when an assertion fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from schemas import IntakeEvent
from services.demo.feeder import Feeder
from services.demo.stack import Running, start
from services.domain.clock import CHINA_TZ
from services.platform.embedded import free_port
from tests.conftest import REPO

pytestmark = pytest.mark.integration

RULES = REPO / "deploy" / "prometheus" / "rules" / "hotline.rules.yml"
JOBS = {"intake": "hotline-intake", "router": "hotline-router", "sla": "hotline-sla"}
OVERDUE_METRIC = "hotline_work_orders_overdue"
POLL_SECONDS = 90.0  # everything after the event is published, across all waits
T = TypeVar("T")


# ---- Prometheus -------------------------------------------------------------------------------------------------

def prometheus_binary() -> str:
    candidates = [os.environ.get("HOTLINE_PROMETHEUS"), shutil.which("prometheus"), "/usr/bin/prometheus"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("The Prometheus server binary is missing (looked at $HOTLINE_PROMETHEUS, `prometheus` on PATH and "
                "/usr/bin/prometheus), so the end-to-end monitoring test cannot run. Install it: "
                "`apt-get install -y prometheus` (Debian/Ubuntu; CI does this before the tests) or point "
                "HOTLINE_PROMETHEUS at a Prometheus 2.x binary.")


def rules_for_test(source: Path, target: Path) -> dict[str, Any]:
    """The project's rules with every alerting rule's ``for`` set to 0s and every group's interval to 1s."""
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
    target.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return doc


def prometheus_config(ports: dict[str, int], rules_file: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{ports[service]}"]}]}
            for service, job in JOBS.items()
        ],
    }


class Prometheus:
    def __init__(self, root: Path, ports: dict[str, int], rules_source: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.rules_file = root / "hotline.rules.e2e.yml"
        self.rules = rules_for_test(rules_source, self.rules_file)
        self.config = root / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(prometheus_config(ports, self.rules_file), sort_keys=False),
                               encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, binary: str, timeout: float = 30.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
                cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus was not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]  # type: ignore[no-any-return]


# ---- the staged ticket ------------------------------------------------------------------------------------------

def working_days_ago(calendar: Any, now: datetime, days: float) -> datetime:
    """10:00 China time on the latest day at least ``days`` working days before ``now``."""
    local = now.astimezone(CHINA_TZ)
    day = local.replace(hour=10, minute=0, second=0, microsecond=0)
    while calendar.working_days_between(day, local) < days:
        day -= timedelta(days=1)
    return day


def overdue_event(occurred_at: datetime) -> dict[str, Any]:
    event_id = f"QP{occurred_at:%Y%m%d}E2E01"
    return {
        "event_id": event_id, "source": "hotline_12345", "jurisdiction": "qingpu",
        "occurred_at": occurred_at.isoformat(),
        "content": "民佳苑12号楼一楼住户把自家院子围起来，私自扩建，正在搭彩钢板房，天天在电焊，"
                   "眼看就要封顶了，疑似违法建筑，麻烦城管赶紧来看看。",
        "address": "上海市青浦区赵巷镇业辉路88弄民佳苑12号",
        "urgency": "normal",
        "caller": {"name": "王女士", "phone": "13912345678"},
        "hotline": {"ticket_no": f"12345-{event_id}", "channel": "phone"},
    }


async def stage(running: Running, event: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Publish the raw event (key = jurisdiction) and wait for the SLA worker's ``tickets`` row."""
    async with Feeder(running.settings, running.dsn) as feeder:
        await feeder.publish("raw", [json.dumps(event, ensure_ascii=False).encode()], "jurisdiction")
        assert feeder.db is not None
        while time.monotonic() < deadline:
            row = await feeder.db.fetchrow("SELECT status, unit, jurisdiction FROM tickets WHERE ticket_id = $1",
                                           event["event_id"])
            if row is not None:
                return dict(row)
            await asyncio.sleep(0.5)
    raise AssertionError(f"the SLA worker never stored ticket {event['event_id']} (logs: {running.stack.logs})")


# ---- polling ----------------------------------------------------------------------------------------------------

def poll(deadline: float, what: str, check: Callable[[], T | None], interval: float = 1.0) -> T:
    """Call ``check`` until it returns a value (not None) without raising, or fail at the deadline with the last error."""
    last: object = None
    while True:
        try:
            result = check()
            if result is not None:
                return result
        except (AssertionError, urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
        time.sleep(interval)


def at_least(prometheus: Prometheus, expr: str, minimum: float) -> Callable[[], list[dict[str, Any]] | None]:
    def check() -> list[dict[str, Any]] | None:
        result = prometheus.query(expr)
        assert result, f"{expr}: no series"
        values = [float(s["value"][1]) for s in result]
        assert max(values) >= minimum, f"{expr}: {values} < {minimum}"
        return result
    return check


def equals(prometheus: Prometheus, expr: str, values: list[float]) -> list[dict[str, Any]] | None:
    result = prometheus.query(expr)
    assert sorted(float(s["value"][1]) for s in result) == values, f"{expr}: {result}"
    return result


# ---- the test ---------------------------------------------------------------------------------------------------

@pytest.mark.timeout(240)
def test_real_prometheus_scrapes_workers_and_fires_the_overdue_alert(tmp_path, router, rules):  # type: ignore[no-untyped-def]
    binary = prometheus_binary()
    now = datetime.now(CHINA_TZ)
    event = overdue_event(working_days_ago(rules.calendar, now, 20))
    decision = router.route(IntakeEvent.model_validate(event))
    assert decision.outcome.value == "dispatch" and decision.lead_unit, decision
    unit = decision.lead_unit  # the unit label carries the unit's name, e.g. 区城管执法局

    overdue_alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
                      for r in g["rules"] if "alert" in r and OVERDUE_METRIC in r["expr"]}
    assert overdue_alerts, f"no alert in {RULES} uses {OVERDUE_METRIC}"

    running = start(tmp_path / "stack", router, sla_clock="wall")
    prometheus = Prometheus(tmp_path / "prometheus", running.stack.ports, RULES)
    try:
        prometheus.start(binary)
        deadline = time.monotonic() + POLL_SECONDS
        ticket = asyncio.run(stage(running, event, deadline))
        assert ticket["jurisdiction"] == "qingpu" and ticket["unit"] == unit, ticket

        # 1. every worker is a healthy target under its production job name
        def targets_up() -> dict[str, str] | None:
            active = prometheus.api("targets", state="active")["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in active}
            assert health == {job: "up" for job in JOBS.values()}, health
            return health
        poll(deadline, "all three targets up", targets_up)
        up = prometheus.query('up{job=~"hotline-.*"}')
        assert sorted((s["metric"]["job"], s["value"][1]) for s in up) == sorted((j, "1") for j in JOBS.values())

        # 2. the series the rules and the dashboard rely on, from the job that owns them, with the staged ticket
        q = f'jurisdiction="qingpu",unit="{unit}"'
        expectations = [
            ('hotline_intake_received_total{job="hotline-intake",jurisdiction="qingpu",source="hotline_12345"}', 1),
            ('hotline_router_decisions_total{job="hotline-router",jurisdiction="qingpu",outcome="dispatch"}', 1),
            (f'hotline_router_work_orders_total{{job="hotline-router",{q}}}', 1),
            ('hotline_dispatch_latency_seconds_count{job="hotline-router"}', 1),
            ('hotline_escalations_total{job="hotline-sla",kind="resolve_overdue",jurisdiction="qingpu"}', 1),
            (f'hotline_work_orders_overdue{{job="hotline-sla",{q}}}', 1),
            (f'hotline_work_orders_open{{job="hotline-sla",{q}}}', 1),
        ]
        for expr, minimum in expectations:
            poll(deadline, expr, at_least(prometheus, expr, minimum))
        # Never acknowledged and the acknowledge deadline long past: judged, and not in time.
        response = poll(deadline, "hotline_unit_response_ratio",
                        at_least(prometheus, f'hotline_unit_response_ratio{{job="hotline-sla",{q}}}', 0))
        assert [float(s["value"][1]) for s in response] == [0.0], response
        # hotline_consumer_lag_messages is reported by every worker (every 10 s, once it has partitions)
        lag_jobs = poll(deadline, "hotline_consumer_lag_messages from every worker", lambda: (
            jobs if (jobs := {s["metric"]["job"] for s in prometheus.query("hotline_consumer_lag_messages")})
            == set(JOBS.values()) else None))
        assert lag_jobs == set(JOBS.values())
        # every input is timed by the service that processed it (the ticket crossed all three)
        for service, job in JOBS.items():
            expr = f'hotline_processing_seconds_count{{job="{job}",service="{service}"}}'
            poll(deadline, expr, at_least(prometheus, expr, 1))
            assert prometheus.query(f'hotline_processing_seconds_bucket{{job="{job}",service="{service}",le="+Inf"}}')
        # the outbox gauge of each service (set by its relay every 2 s in the stack): present, and drained
        for service, job in JOBS.items():
            expr = f'hotline_outbox_pending{{job="{job}",service="{service}"}}'
            poll(deadline, f"{expr} == 0", lambda expr=expr: equals(prometheus, expr, [0.0]))
        # the triage backlog of every jurisdiction, 0 where nothing waits (the staged ticket was dispatched)
        backlog = poll(deadline, "hotline_triage_backlog", lambda: (
            r if len(r := prometheus.query('hotline_triage_backlog{job="hotline-sla"}')) >= 4 else None))
        assert {s["metric"]["jurisdiction"] for s in backlog} >= {"qingpu", "changning", "chongming", "zhalantun"}
        poll(deadline, "no triage backlog in qingpu",
             lambda: equals(prometheus, 'hotline_triage_backlog{job="hotline-sla",jurisdiction="qingpu"}', [0.0]))
        # the SLA clock follows the wall clock, behind it by the allowed lateness it exports (sweeps every 1 s)
        behind = ('time() - max(hotline_sla_clock_timestamp_seconds{job="hotline-sla"})'
                  ' - max(hotline_sla_allowed_lateness_seconds{job="hotline-sla"})')
        def clock_follows() -> list[dict[str, Any]] | None:
            delay = prometheus.query(behind)
            assert delay and -5 <= float(delay[0]["value"][1]) <= 30, delay
            return delay
        poll(deadline, "the SLA clock to follow the wall clock", clock_follows)
        lateness = prometheus.query('hotline_sla_allowed_lateness_seconds{job="hotline-sla"}')
        assert float(lateness[0]["value"][1]) > 0, lateness
        # campaign gauges of every campaign in campaigns.yaml: target, start and deadline from the definitions;
        # rate, enrolled and the at-risk verdict once the (2025, empty, hence missed) campaigns are evaluated
        campaigns = {c.id: c for c in rules.campaigns.campaigns}

        def campaign_values(name: str) -> dict[str, float] | None:
            found = {s["metric"]["campaign_id"]: float(s["value"][1])
                     for s in prometheus.query(f'{name}{{job="hotline-sla"}}')}
            return found if set(found) == set(campaigns) else None
        for name, expected in (
                ("hotline_campaign_target_ratio", {i: c.target for i, c in campaigns.items()}),
                ("hotline_campaign_start_timestamp_seconds", {i: c.start.timestamp() for i, c in campaigns.items()}),
                ("hotline_campaign_deadline_timestamp_seconds",
                 {i: c.deadline.timestamp() for i, c in campaigns.items()}),
                ("hotline_campaign_enrolled", {i: 0.0 for i in campaigns}),
                ("hotline_campaign_rate_ratio", {i: 0.0 for i in campaigns}),
                ("hotline_campaign_at_risk", {i: 0.0 for i in campaigns})):
            assert poll(deadline, name, lambda name=name: campaign_values(name)) == expected, name

        # 3. the overdue-work alert fires for that jurisdiction and unit (one overdue order: the warning only)
        def overdue_firing() -> list[dict[str, Any]] | None:
            alerts = [a for a in prometheus.api("alerts")["alerts"] if a["labels"].get("alertname") in overdue_alerts
                      and a["labels"].get("jurisdiction") == "qingpu" and a["labels"].get("unit") == unit]
            firing = [a for a in alerts if a["state"] == "firing"]
            assert firing, f"not firing yet: {alerts}"
            return firing
        firing = poll(deadline, f"{sorted(overdue_alerts)} firing for qingpu / {unit}", overdue_firing)
        assert [a["labels"]["severity"] for a in firing] == ["warning"], firing
        assert firing[0]["labels"]["team"] == "operations"
        assert unit in firing[0]["annotations"]["summary"] and "qingpu" in firing[0]["annotations"]["summary"]

        # No campaign has a ticket: the SLA worker judges none at risk (on track, then missed), so the campaign
        # alert stays quiet although their projected rates were 0 (with `for: 0s` here, a single at-risk
        # evaluation would show)
        campaign_alerts = [a for a in prometheus.api("alerts")["alerts"]
                           if a["labels"].get("alertname") == "HotlineCampaignAtRisk"]
        assert campaign_alerts == [], campaign_alerts

        # 4. every rule of the shipped file loaded and evaluates without error on the real series
        groups = prometheus.api("rules")["groups"]
        loaded = [r["name"] for g in groups for r in g["rules"]]
        shipped = [r.get("alert") or r.get("record") for g in prometheus.rules["groups"] for r in g["rules"]]
        assert sorted(loaded) == sorted(shipped)
        errors = {r["name"]: r.get("lastError") for g in groups for r in g["rules"] if r.get("health") == "err"}
        assert not errors, errors
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- prometheus log (tail) ---\n{prometheus.log_tail()}\n"
                             f"--- worker logs: {running.stack.logs}") from exc
    finally:
        try:
            prometheus.stop()
        finally:
            running.stop()
