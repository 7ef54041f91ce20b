"""End to end with a real Prometheus: the three workers on the embedded broker and database, scraped by the
Prometheus server from Debian's ``prometheus`` package, with the project's alert rules loaded.

What it proves that the promtool unit tests (tests/deploy) cannot: the job names, label names and label values the
rules and the dashboard rely on are the ones the running workers really export (flow counters, processing time,
lag, outbox, triage backlog, unit gauges, the SLA clock and its lateness, every campaign gauge), the rules evaluate
without errors on real series, an overdue ticket ends in the overdue-work alert firing for the right jurisdiction
and unit, campaigns without tickets raise no at-risk alert, and every query of the Grafana dashboard
(``deploy/grafana/dashboards/hotline.json``) evaluates on the live series and, where this run has the data, shows it.

The test stages one overdue ticket: a 12345 report of illegal construction in Qingpu, published on the raw topic
(keyed by jurisdiction, as producers are asked to) with ``occurred_at`` about 20 working days ago, so that its
acknowledge and resolve deadlines (1 and 5 working days) are long past. The SLA worker runs on the wall clock
(``sla_clock="wall"``) and escalates it at its next sweep; its scorecard gauges refresh every 2 s in the stack.
A second, completed ticket (a report in Changning from two hours ago, acknowledged, resolved and called back
satisfied by its unit) gives its unit every one of the six scorecard ratios, 满意率 included, and the dashboard's
"Unit updates" panel its series; it raises no escalation and touches nothing the assertions about Qingpu look at.

The dashboard's queries are sent as Grafana sends them (see ``DashboardQuery`` and ``GRAFANA_BUILTINS``): range
panels as ``query_range`` over the dashboard's default 24 h, instant panels and tables as ``query``, the annotation
as a range query at its own step; template variables get their options from the label values API as Grafana's
``label_values()`` does, and are substituted twice: all on "All" (the dashboard's saved selection, Grafana's
``allValue`` ``.*``), then on the staged jurisdictions, units and one campaign, regex-escaped and joined as Grafana
formats a multi-value selection. Every query must succeed (a syntax or type error names the panel), and every one
must return data except those listed in ``MAY_BE_EMPTY``, each with the reason this run cannot have their data.

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
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
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
POLL_SECONDS = 180.0  # everything after the event is published, across all waits (a pass takes ~25 s)
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

    def evaluate(self, path: str, **params: str) -> dict[str, Any]:
        """POST to the query API as Grafana's data source does (``httpMethod: POST``); the whole response, errors
        included (Prometheus answers a bad query with 400 or 422 and a JSON body saying why)."""
        data = urllib.parse.urlencode(params).encode()
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}", data=data, timeout=10) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return json.loads(body)  # type: ignore[no-any-return]
            except ValueError:
                return {"status": "error", "errorType": f"HTTP {exc.code}",
                        "error": body[:300].decode(errors="replace")}


# ---- the staged tickets -----------------------------------------------------------------------------------------

def working_days_ago(calendar: Any, now: datetime, days: float) -> datetime:
    """10:00 China time on the latest day at least ``days`` working days before ``now``."""
    local = now.astimezone(CHINA_TZ)
    day = local.replace(hour=10, minute=0, second=0, microsecond=0)
    while calendar.working_days_between(day, local) < days:
        day -= timedelta(days=1)
    return day


def _event(event_id: str, jurisdiction: str, occurred_at: datetime, content: str, address: str,
           caller: dict[str, str]) -> dict[str, Any]:
    return {"event_id": event_id, "source": "hotline_12345", "jurisdiction": jurisdiction,
            "occurred_at": occurred_at.isoformat(), "content": content, "address": address, "urgency": "normal",
            "caller": caller, "hotline": {"ticket_no": f"12345-{event_id}", "channel": "phone"}}


def overdue_event(occurred_at: datetime) -> dict[str, Any]:
    return _event(f"QP{occurred_at:%Y%m%d}E2E01", "qingpu", occurred_at,
                  "民佳苑12号楼一楼住户把自家院子围起来，私自扩建，正在搭彩钢板房，天天在电焊，"
                  "眼看就要封顶了，疑似违法建筑，麻烦城管赶紧来看看。",
                  "上海市青浦区赵巷镇业辉路88弄民佳苑12号", {"name": "王女士", "phone": "13912345678"})


def completed_event(occurred_at: datetime) -> dict[str, Any]:
    return _event(f"CN{occurred_at:%Y%m%d}E2E02", "changning", occurred_at,
                  "天山二村15号楼一楼住户把自家院子围起来，正在搭彩钢板房，这两天天天在电焊，"
                  "眼看就要封顶了，疑似违法建筑，麻烦城管赶紧来看看。",
                  "上海市长宁区天山路街道天山二村15号", {"name": "李先生", "phone": "13812345678"})


CHANGNING_DESK = "区城运中心"  # changning's dispatch desk (its rulebook's triage_unit) calls citizens back


def completed_updates(event: dict[str, Any], unit: str) -> list[dict[str, Any]]:
    """Acknowledged after 10 minutes, resolved after an hour, called back satisfied after 90 minutes: all before
    now, all in time, so the unit's six ratios are 1, 1, 1, 1 (response, resolution, satisfaction, on time) and
    0, 0 (returns, rehandling)."""
    opened = datetime.fromisoformat(event["occurred_at"])

    def update(suffix: str, action: str, minutes: int, who: str = unit, **extra: Any) -> dict[str, Any]:
        return {"event_id": f"{event['event_id']}-{suffix}", "ticket_id": event["event_id"], "action": action,
                "unit": who, "occurred_at": (opened + timedelta(minutes=minutes)).isoformat(), **extra}
    return [update("ack", "acknowledge", 10, note="已签收"), update("res", "resolve", 60, note="已现场处置"),
            update("cb", "callback", 90, who=CHANGNING_DESK, satisfied=True)]


async def stage(running: Running, events: list[dict[str, Any]], updates: list[dict[str, Any]],
                statuses: dict[str, str], deadline: float) -> dict[str, dict[str, Any]]:
    """Publish the raw events (key = jurisdiction), wait for the SLA worker's ``tickets`` rows, publish the unit
    updates (key = ticket id) and wait until every ticket has the status in ``statuses``; the rows by ticket id."""
    dumps = [json.dumps(event, ensure_ascii=False).encode() for event in events]
    rows: dict[str, dict[str, Any]] = {}
    async with Feeder(running.settings, running.dsn) as feeder:
        assert feeder.db is not None

        async def read() -> dict[str, dict[str, Any]]:
            assert feeder.db is not None
            found = await feeder.db.fetch("SELECT ticket_id, status, unit, jurisdiction FROM tickets "
                                          "WHERE ticket_id = ANY($1::text[])", list(statuses))
            return {r["ticket_id"]: dict(r) for r in found}

        await feeder.publish("raw", dumps, "jurisdiction")
        while time.monotonic() < deadline and set(rows := await read()) != set(statuses):
            await asyncio.sleep(0.5)
        if set(rows) == set(statuses):
            await feeder.publish("updates", [json.dumps(u, ensure_ascii=False).encode() for u in updates],
                                 "ticket_id")
            while time.monotonic() < deadline:
                rows = await read()
                if {tid: r["status"] for tid, r in rows.items()} == statuses:
                    return rows
                await asyncio.sleep(0.5)
    raise AssertionError(f"the SLA worker's tickets never reached {statuses}: {rows} (logs: {running.stack.logs})")


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


# ---- the Grafana dashboard --------------------------------------------------------------------------------------

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "hotline.json"
# Grafana's built-in variables as Grafana computes them for this dashboard in production: its default range is the
# last 24 h and the data source's minimum interval (timeInterval in deploy/grafana/provisioning/datasources, = the
# production scrape interval) is 15 s. $__interval is the range over the panel's data points, 86.4 s for a panel
# about 1000 pixels wide, which Grafana rounds to 1m; $__rate_interval is max($__interval + 15 s, 4 x 15 s) = 75s.
# Range queries are sent over that 24 h with $__interval as their step. (The test's Prometheus scrapes every second,
# so every such window holds many samples of the run.)
DASHBOARD_RANGE_SECONDS = 24 * 3600
DASHBOARD_STEP_SECONDS = 60
GRAFANA_BUILTINS = {"__interval": "1m", "__interval_ms": "60000", "__rate_interval": "75s",
                    "__range": "86400s", "__range_s": "86400", "__range_ms": "86400000"}
# The dashboard's queries that may return nothing in this run, and why. Every other query must return data, under
# both selections (so a new panel is held to that as well, or listed here with its reason).
MAY_BE_EMPTY = {
    ("Consumer lag", "B"): "kafka_consumergroup_lag comes from kafka-exporter, which the embedded stack does not run",
    ("Duplicates and merges", "A"): "no input is a duplicate here, and the counter has no series before the first",
    ("Duplicates and merges", "B"): "no report is merged into an open ticket (并单) here; no series before the first",
    ("Overdue and returns over time", "B"): "no unit returns (退单) a ticket here; no series before the first",
    ("Why tickets go to the desk", "A"): "every staged ticket is dispatched, none triaged; no series before the first",
    ("Campaigns now", "C"): "a judged campaign's projection is withdrawn; every campaign here ended in 2025",
    ("Intake bytes and calendar fallback", "B"): "'> 0' keeps years without holiday data, which the run may not touch",
}
VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)\]\]|\$(\w+)")
LABEL_VALUES = re.compile(r"\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*")


@dataclass(frozen=True)
class DashboardQuery:
    panel: str  # the panel's title (the annotation's name for an annotation)
    ref: str  # the target's refId
    expr: str
    instant: bool  # sent to /api/v1/query at the end of the range (stat, bar gauge and table panels)
    range: bool  # sent to /api/v1/query_range over the dashboard's range
    step: int


def dashboard_queries(dashboard: dict[str, Any]) -> list[DashboardQuery]:
    """Every PromQL query of the dashboard: each panel target (rows' collapsed panels included) and each annotation.
    A target with neither ``instant`` nor ``range`` set is a range query, as in Grafana."""
    panels = [p for top in dashboard["panels"] for p in (top, *top.get("panels", []))]
    queries = []
    for panel in panels:
        for target in panel.get("targets", []):
            assert target.get("expr"), f"panel {panel.get('title')!r}: a target without a PromQL expr: {target}"
            instant = bool(target.get("instant"))
            queries.append(DashboardQuery(panel["title"], target.get("refId", "A"), target["expr"], instant,
                                          bool(target.get("range", not instant)), DASHBOARD_STEP_SECONDS))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            step = re.fullmatch(r"(\d+)s", annotation.get("step", "60s"))
            assert step, f"annotation {annotation['name']!r}: step {annotation.get('step')!r} is not in seconds"
            queries.append(DashboardQuery(annotation["name"], "annotation", annotation["expr"], False, True,
                                          int(step[1])))
    return queries


def interpolate(expr: str, values: dict[str, str]) -> str:
    """Grafana's variable substitution ($name, ${name}, ${name:format}, [[name]]); unknown names stay as they are,
    as in Grafana, and make the query fail."""
    return VARIABLE.sub(lambda m: values.get(m[1] or m[2] or m[3], m[0]), expr)


def grafana_regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape: a value of a multi-value or include-All variable goes into a regex
    matcher inside a PromQL string, hence the doubled backslashes."""
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m[0], value.replace("\\", "\\\\\\\\"))


def grafana_variable_value(variable: dict[str, Any], options: list[str], picked: list[str] | None) -> str:
    """What Grafana puts in place of the variable: ``picked`` None is "All" (its allValue, else every option)."""
    if picked is None:
        assert variable.get("includeAll"), f"${variable['name']} has no All option"
        if variable.get("allValue"):
            return str(variable["allValue"])
        picked = options
    if not variable.get("multi") and not variable.get("includeAll"):
        assert len(picked) == 1, f"${variable['name']} takes a single value: {picked}"
        return picked[0].replace("\\", "\\\\").replace("'", "\\\\'")  # prometheusRegularEscape
    escaped = [grafana_regex_escape(v) for v in picked]
    return escaped[0] if len(escaped) == 1 else f"({'|'.join(escaped)})"


def grafana_variables(prometheus: Prometheus, dashboard: dict[str, Any],
                      picks: dict[str, list[str] | None]) -> dict[str, str]:
    """The dashboard's template variables in order (a later query may use an earlier variable), each with its
    options from Prometheus as Grafana's ``label_values(metric{...}, label)`` gets them (the label values API with
    ``match[]``); each picked value must be among them. A variable ``picks`` does not name stays on "All"."""
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert set(picks) <= set(names), f"picks for variables the dashboard does not have: {set(picks) - set(names)}"
    values = dict(GRAFANA_BUILTINS)
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        assert variable["type"] == "query" and not variable.get("regex"), \
            f"${name}: only label_values() query variables without a regex are handled here: {variable}"
        query = variable["query"] if isinstance(variable["query"], str) else variable["query"]["query"]
        parsed = LABEL_VALUES.fullmatch(interpolate(query, values))
        assert parsed, f"${name}: not a label_values() query: {query}"
        params = {"match[]": parsed["match"]} if parsed["match"] else {}
        options = sorted(prometheus.api(f"label/{parsed['label']}/values", **params))
        picked = picks.get(name)
        assert options and set(picked or []) <= set(options), f"${name}: {picked} not among the options {options}"
        values[name] = grafana_variable_value(variable, options, picked)
    return values


def run_dashboard(prometheus: Prometheus, queries: list[DashboardQuery], values: dict[str, str],
                  end: float) -> tuple[list[str], list[DashboardQuery]]:
    """Send every query; the errors (naming panel, query and Prometheus's message) and the queries without data."""
    errors: list[str] = []
    empty: list[DashboardQuery] = []
    for q in queries:
        expr = interpolate(q.expr, values)
        requests = []
        if q.instant:
            requests.append(("query", {"query": expr, "time": f"{end:.3f}"}))
        if q.range:
            requests.append(("query_range", {"query": expr, "start": f"{end - DASHBOARD_RANGE_SECONDS:.3f}",
                                             "end": f"{end:.3f}", "step": str(q.step)}))
        for path, params in requests:
            body = prometheus.evaluate(path, **params)
            if body.get("status") != "success":
                errors.append(f"panel {q.panel!r} {q.ref} ({path}): {body.get('errorType')}: {body.get('error')}\n"
                              f"    {expr}")
            elif body["data"]["resultType"] in ("vector", "matrix") and not body["data"]["result"]:
                empty.append(q)
    return errors, empty


# ---- the test ---------------------------------------------------------------------------------------------------

@pytest.mark.timeout(360)
def test_real_prometheus_scrapes_workers_and_fires_the_overdue_alert(tmp_path, router, rules):  # type: ignore[no-untyped-def]
    binary = prometheus_binary()
    now = datetime.now(CHINA_TZ)
    event = overdue_event(working_days_ago(rules.calendar, now, 20))
    decision = router.route(IntakeEvent.model_validate(event))
    assert decision.outcome.value == "dispatch" and decision.lead_unit, decision
    unit = decision.lead_unit  # the unit label carries the unit's name, e.g. 区城管执法局
    completed = completed_event(now - timedelta(hours=2))
    done = router.route(IntakeEvent.model_validate(completed))
    assert done.outcome.value == "dispatch" and done.lead_unit, done
    done_unit = done.lead_unit

    overdue_alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
                      for r in g["rules"] if "alert" in r and OVERDUE_METRIC in r["expr"]}
    assert overdue_alerts, f"no alert in {RULES} uses {OVERDUE_METRIC}"

    running = start(tmp_path / "stack", router, sla_clock="wall")
    prometheus = Prometheus(tmp_path / "prometheus", running.stack.ports, RULES)
    try:
        prometheus.start(binary)
        deadline = time.monotonic() + POLL_SECONDS
        tickets = asyncio.run(stage(running, [event, completed], completed_updates(completed, done_unit),
                                    {event["event_id"]: "dispatched", completed["event_id"]: "closed"}, deadline))
        ticket = tickets[event["event_id"]]
        assert ticket["jurisdiction"] == "qingpu" and ticket["unit"] == unit, ticket
        assert tickets[completed["event_id"]]["unit"] == done_unit, tickets

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
        # The completed ticket's unit: every ratio, all in time, nothing returned or reopened; its updates applied
        c = f'jurisdiction="changning",unit="{done_unit}"'
        for ratio, value in (("response", 1.0), ("resolution", 1.0), ("satisfaction", 1.0), ("on_time", 1.0),
                             ("return", 0.0), ("rehandle", 0.0)):
            expr = f'hotline_unit_{ratio}_ratio{{job="hotline-sla",{c}}}'
            poll(deadline, f"{expr} == {value}", lambda expr=expr, value=value: equals(prometheus, expr, [value]))
        for action in ("acknowledge", "resolve", "callback"):
            expr = f'hotline_sla_updates_total{{job="hotline-sla",action="{action}",result="applied"}}'
            poll(deadline, expr, at_least(prometheus, expr, 1))
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
            expr = f'hotline_batch_inputs_count{{job="{job}",service="{service}"}}'  # the batches they came in
            poll(deadline, expr, at_least(prometheus, expr, 1))
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
                ("hotline_campaign_resolved", {i: 0.0 for i in campaigns}),
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

        # No campaign has a ticket, so the SLA worker never judges one at risk: over the whole run (max_over_time
        # over more than the run lasts), no HotlineCampaignAtRisk alert was pending or firing (with `for: 0s` here a
        # single at-risk evaluation would have left an ALERTS sample) and hotline_campaign_at_risk stayed 0. That an
        # empty *live* campaign keeps the alert quiet where `projected < target` would fire is shown by the promtool
        # tests (tests/deploy) and tests/integration/test_sla_gauges.py.
        ever = prometheus.query('max_over_time(ALERTS{alertname="HotlineCampaignAtRisk"}[10m])')
        assert ever == [], ever
        verdicts = prometheus.query('max_over_time(hotline_campaign_at_risk{job="hotline-sla"}[10m])')
        assert len(verdicts) == len(campaigns) and all(float(v["value"][1]) == 0 for v in verdicts), verdicts

        # 4. every rule of the shipped file loaded and evaluates without error on the real series
        groups = prometheus.api("rules")["groups"]
        loaded = [r["name"] for g in groups for r in g["rules"]]
        shipped = [r.get("alert") or r.get("record") for g in prometheus.rules["groups"] for r in g["rules"]]
        assert sorted(loaded) == sorted(shipped)
        errors = {r["name"]: r.get("lastError") for g in groups for r in g["rules"] if r.get("health") == "err"}
        assert not errors, errors

        # 5. every query of the Grafana dashboard, sent as Grafana sends it, evaluates on the live series, and all
        # but MAY_BE_EMPTY return data: with every variable on "All", then on the staged values
        dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
        queries = dashboard_queries(dashboard)
        stale = set(MAY_BE_EMPTY) - {(q.panel, q.ref) for q in queries}
        assert not stale, f"MAY_BE_EMPTY names queries the dashboard does not have: {stale}"
        selections: dict[str, dict[str, list[str] | None]] = {
            "All": {},  # the dashboard's saved selection
            "the staged values": {"jurisdiction": ["changning", "qingpu"], "unit": sorted({unit, done_unit}),
                                  "campaign": [min(campaigns)]},
        }
        end = time.time()
        for selection, picks in selections.items():
            values = grafana_variables(prometheus, dashboard, picks)
            shown = {k: v for k, v in values.items() if k not in GRAFANA_BUILTINS}
            failing, empty = run_dashboard(prometheus, queries, values, end)
            assert not failing, f"dashboard queries failing with {selection} {shown}:\n" + "\n".join(failing)
            missing = [f"panel {q.panel!r} {q.ref}: {interpolate(q.expr, values)}"
                       for q in empty if (q.panel, q.ref) not in MAY_BE_EMPTY]
            assert not missing, f"dashboard queries without data with {selection} {shown}:\n" + "\n".join(missing)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- prometheus log (tail) ---\n{prometheus.log_tail()}\n"
                             f"--- worker logs: {running.stack.logs}") from exc
    finally:
        try:
            prometheus.stop()
        finally:
            running.stop()
