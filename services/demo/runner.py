"""``hotline demo``: the whole service on the embedded stack, fed with a realistic sample."""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from services.demo import sample as sample_mod
from services.demo.feeder import Feeder
from services.demo.sample import SampleFiles
from services.demo.stack import Running, start
from services.platform.embedded import stop_on_signals
from services.domain.sla import SlaRules
from services.replay.inputs import occurred_at
from services.replay.runner import run as replay
from services.replay.runner import write as write_replay
from services.sla.report import from_database, render, scorecard_scope

ROOT = Path(".hotline")  # the stack's data and logs, the sample, the replay output and the report


Round = list[tuple[str, bytes]]  # (topic: updates | rulings, message)
_NO_TIME = datetime.min.replace(tzinfo=UTC)


def input_rounds(updates: list[bytes], rulings: list[bytes]) -> list[Round]:
    """Merge time-ordered updates and rulings into rounds, each published and processed before the next. A
    return (退单) or a ruling changes who holds its ticket through the router, so a round ends before the next
    input of that ticket: the re-dispatched work order then reaches the SLA service before the next unit's
    updates do, and a dispute reaches the desk's queue before the desk rules on it."""

    def fields(raw: bytes) -> tuple[str, str]:
        try:
            data = json.loads(raw)
            return str(data.get("ticket_id", "")), str(data.get("action", ""))
        except (ValueError, AttributeError):
            return "", ""

    def merged(topic: str, lines: list[bytes]) -> list[tuple[datetime, int, str, bytes]]:
        return [(occurred_at(raw) or _NO_TIME, i, topic, raw) for i, raw in enumerate(lines)]

    timed = sorted([*merged("updates", updates), *merged("rulings", rulings)], key=lambda x: x[:2])
    rounds: list[Round] = [[]]
    moved: set[str] = set()  # tickets whose holder this round changes
    for _, _, topic, raw in timed:
        ticket, action = fields(raw)
        if ticket in moved:
            rounds.append([])
            moved = set()
        rounds[-1].append((topic, raw))
        if topic == "rulings" or action == "return":
            moved.add(ticket)
    return [r for r in rounds if r]


async def feed(running: Running, sample: sample_mod.Sample, until: datetime, progress: Progress | None = None) -> None:
    async with Feeder(running.settings, running.dsn) as feeder:
        task = progress.add_task("events → intake", total=len(sample.events)) if progress else None
        await feeder.publish("raw", sample.events, "jurisdiction",
                             (lambda n: progress.advance(task, n)) if progress and task is not None else None)
        await feeder.wait_quiescent()
        rounds = input_rounds(sample.updates, sample.rulings)
        total = len(sample.updates) + len(sample.rulings)
        task = progress.add_task("unit updates, desk rulings", total=total) if progress else None
        for batch in rounds:
            for topic in ("updates", "rulings"):
                await feeder.publish(topic, [raw for t, raw in batch if t == topic], "ticket_id")
            await feeder.wait_quiescent()
            if progress and task is not None:
                progress.advance(task, len(batch))
        await feeder.tick(until)
        await feeder.wait_quiescent()


async def summary(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        q = conn.fetch
        return {
            "intake": dict(await conn.fetchrow(
                """SELECT (SELECT count(*) FROM intake_events) AS accepted,
                          (SELECT count(*) FROM dead_letters) AS dead_letters,
                          (SELECT count(*) FROM work_orders) AS work_orders,
                          (SELECT count(*) FROM tickets WHERE status = 'triage') AS triage,
                          (SELECT count(*) FROM tickets WHERE status = 'redirected') AS redirected""")),
            "units": [dict(r) for r in await q(
                """SELECT jurisdiction, lead_unit, count(*) AS work_orders FROM work_orders
                   GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 15""")],
            "status": [dict(r) for r in await q("SELECT status, count(*) AS n FROM tickets GROUP BY 1 ORDER BY 2 DESC")],
            "escalations": [dict(r) for r in await q(
                "SELECT kind, level, count(*) AS n FROM escalations GROUP BY 1, 2 ORDER BY 1, 2")],
            "dead_letters": [dict(r) for r in await q(
                "SELECT stage, reason, count(*) AS n FROM dead_letters GROUP BY 1, 2 ORDER BY 3 DESC")],
            "campaigns": [r["report"] for r in await q(
                """SELECT DISTINCT ON (campaign_id) report FROM campaign_evaluations
                   ORDER BY campaign_id, at DESC""")],
            "examples": [dict(r) for r in await q(
                """SELECT DISTINCT ON (outcome) ticket_id, outcome, lead_unit, decision->>'triage_reason' AS triage_reason,
                          decision->>'redirect_to' AS redirect_to, decision->>'explanation' AS explanation
                   FROM routing_decisions ORDER BY outcome, ticket_id""")],
            "work_order_ids": sorted(r["work_order_id"] for r in await q("SELECT work_order_id FROM work_orders")),
            "escalation_ids": sorted(r["escalation_id"] for r in await q("SELECT escalation_id FROM escalations")),
        }
    finally:
        await conn.close()


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    return table


def replay_command(files: SampleFiles, out: Path, until: datetime) -> str:
    """The `hotline replay` command line that reproduces the demo's result from its files."""
    return shlex.join([".venv/bin/hotline", "replay", "--events", str(files.events), "--updates", str(files.updates),
                       "--rulings", str(files.rulings), "--until", until.isoformat(), "--out", str(out)])


def look_inside(running: Running, until: datetime) -> list[str]:
    """With --keep: where everything is, and the lines that point the command line at it."""
    from pgserver._commands import POSTGRES_BIN_PATH  # the psql that comes with the pgserver wheel

    lines = [
        f"Broker (Kafka protocol): {running.settings.kafka_bootstrap}",
        f"Database: {running.dsn}",
        "To look inside from another terminal in this directory, first:",
        f"  export HOTLINE_KAFKA_BOOTSTRAP={running.settings.kafka_bootstrap}",
        f"  export HOTLINE_DATABASE_URL={shlex.quote(running.dsn)}",
        "then e.g.:",
        "  .venv/bin/hotline tail hotline.deadletter --from-beginning --max 3",
        f"  {shlex.quote(str(POSTGRES_BIN_PATH / 'psql'))} \"$HOTLINE_DATABASE_URL\" -c 'SELECT count(*) FROM work_orders'",
        f"  .venv/bin/hotline report --out .hotline/report-database --at {until.isoformat()}",
    ]
    for service in ("intake", "router", "sla"):
        url = running.metrics_url(service)
        lines.append(f"/metrics of {service}: {url}  (health: {url.removesuffix('/metrics')}/healthz)")
    lines.append(f"Logs: {running.stack.logs}")
    return lines


def run_demo(n_events: int, seed: int, keep: bool, console: Console, out: Console | None = None) -> int:
    """``console`` (stderr) gets progress and messages, ``out`` (stdout) the result."""
    from services.domain.routing import Router

    out = out or console
    began = time.monotonic()
    stop_on_signals()
    router = Router.load()
    rules = SlaRules.load()
    sample = sample_mod.generate(router, n_events=n_events, seed=seed)
    until = sample.end or datetime.now().astimezone()
    files = sample.write(ROOT / "sample")
    out.print(f"[bold]Sample[/bold] ({', '.join(map(str, files))}): {sample.describe()}; "
              f"the clock runs to {until.isoformat()}", highlight=False)
    console.print("Starting Tansu (Kafka protocol) and PostgreSQL (its database emptied), provisioning topics, "
                  "starting 3 workers …")
    running = start(ROOT, router, sla_clock="ticks")
    try:
        with Progress(console=console) as progress:
            asyncio.run(feed(running, sample, until, progress))
        result = asyncio.run(summary(running.dsn))
        _show(out, result)
        window = running.settings.scorecard_window_days
        history, scores = asyncio.run(from_database(running.dsn, until, window))
        report = render(history, rules.campaigns, scores, ROOT / "report", "the demo's database",
                        as_of=until, window_days=window)
        out.print(f"Campaign burn-up charts and unit scorecards: {report} (and the PNGs beside it). "
                  f"{scorecard_scope(until, window)} The tables above count every ticket.", highlight=False)
        offline = replay(files.events, files.updates, router, rules, rulings=files.rulings, until=until,
                         max_returns=running.settings.max_returns, scorecard_window_days=window)
        write_replay(offline, ROOT / "replay")
        same_orders = sorted(w.work_order_id for w in offline.pipeline.work_orders) == result["work_order_ids"]
        same_escalations = sorted(e.escalation_id for e in offline.pipeline.escalations) == result["escalation_ids"]
        verdict = "[green]agree[/green]" if same_orders and same_escalations else "[red]DIFFER[/red]"
        out.print(f"Offline replay of the same files ({ROOT / 'replay'}): {len(offline.pipeline.work_orders)} work "
                  f"orders, {len(offline.pipeline.escalations)} escalations — streaming and replay {verdict}.",
                  highlight=False)
        out.print(f"Reproduce the replay: {replay_command(files, ROOT / 'replay', until)}",
                  highlight=False, markup=False, soft_wrap=True)
        console.print(f"Summary ready {time.monotonic() - began:.0f} s after the start.")
        if keep:
            for line in look_inside(running, until):
                out.print(line, highlight=False, markup=False, soft_wrap=True)
            console.print("Running until Ctrl-C …")
            try:
                while True:
                    asyncio.run(asyncio.sleep(3600))
            except KeyboardInterrupt:
                pass
        else:
            out.print(f"Logs: {running.stack.logs}", highlight=False)
        return 0 if same_orders and same_escalations else 1
    finally:
        console.print("Stopping workers, broker and database …")
        running.stop()
        console.print(f"Stopped, {time.monotonic() - began:.0f} s after the start.")


def example_line(d: dict[str, Any]) -> str:
    """One routing example: ticket, outcome, where it went (unit, redirect target or triage reason), why."""
    target = d.get("lead_unit") or d.get("redirect_to") or d.get("triage_reason")
    where = f" → {escape(target)}" if target else ""
    return f"[bold]{escape(str(d['ticket_id']))}[/bold] {escape(str(d['outcome']))}{where}: " \
           f"{escape(str(d['explanation']))}"


def _show(console: Console, s: dict[str, Any]) -> None:
    console.print(_table("Pipeline", [s["intake"]], list(s["intake"])))
    for d in s["examples"]:
        console.print(example_line(d), highlight=False)
    console.print(_table("Work orders per lead unit, whole sample (top 15)", s["units"],
                         ["jurisdiction", "lead_unit", "work_orders"]))
    console.print(_table("Tickets by status", s["status"], ["status", "n"]))
    console.print(_table("Escalations", s["escalations"], ["kind", "level", "n"]))
    console.print(_table("Dead letters", s["dead_letters"], ["stage", "reason", "n"]))
    campaigns = [{"campaign": c["campaign_id"], "enrolled": c["enrolled"],
                  "plan's tickets": c.get("planned_cohort") or "—", "resolved": c["resolved"], "rate": f"{c['rate']:.1%}", "target": f"{c['target']:.0%}",
                  "projected": f"{c['projected_rate']:.1%}", "status": c["status"], "as of": str(c["at"])[:10]}
                 for c in s["campaigns"]]
    console.print(_table("Campaigns (last scheduled evaluation)", campaigns,
                         ["campaign", "enrolled", "plan's tickets", "resolved", "rate", "target", "projected", "status",
                          "as of"]))
    console.print("A campaign's rate is a share of the plan's tickets where the plan names how many (1864 hotline "
                  "tickets, say) and fewer are enrolled: the sample holds only a few of them.", highlight=False)
