"""``hotline``: the command line of the 12345 dispatch service."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

app = typer.Typer(help="12345 hotline & work-order dispatch: intake, routing and SLA on Kafka and PostgreSQL.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
db_app = typer.Typer(help="PostgreSQL schema.", no_args_is_help=True)
schemas_app = typer.Typer(help="Generated contracts (JSON Schema, AsyncAPI).", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")
app.add_typer(schemas_app, name="schemas")
console = Console(stderr=True, width=None if sys.stderr.isatty() else 130)  # progress, messages, errors
results = Console(width=None if sys.stdout.isatty() else 130)  # what a command produces, for `> file`
REPO = Path(__file__).resolve().parents[1]  # the checkout (the project is installed editable)

if TYPE_CHECKING:
    from services.platform.settings import Settings

# Exit status: 2 for an invalid HOTLINE_* setting (main), 1 for a broker or database that cannot be reached.
UNREACHABLE = 1


def masked_dsn(dsn: str) -> str:
    """The DSN without its password, to name it in a message."""
    dsn = re.sub(r"(://[^:/@?]*:)[^@/?]+@", r"\1***@", dsn)
    return re.sub(r"(password=)[^&]*", r"\1***", dsn)


def _reason(exc: BaseException) -> str:
    name = type(exc).__name__
    text = " ".join(str(exc).split()) or "no detail"
    text = text.removeprefix(f"{name}: ")
    text = re.sub(r"\('([^']*)', (\d+), <AddressFamily[^>]*>\)", r"\1:\2", text)  # aiokafka's address tuples
    return f"{name}: {text}"


@contextmanager
def reaching(what: Literal["kafka", "database"], settings: Settings) -> Iterator[None]:
    """Turn a broker or database that cannot be reached into one line naming it and the variable to set, and
    exit status 1, instead of a traceback."""
    import asyncpg
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
    from rich.markup import escape

    if what == "kafka":
        errors: tuple[type[BaseException], ...] = (KafkaConnectionError, KafkaTimeoutError, OSError, TimeoutError)
    else:
        errors = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InvalidAuthorizationSpecificationError,
                  asyncpg.InvalidCatalogNameError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
                  asyncpg.ClientConfigurationError, asyncpg.ConnectionDoesNotExistError)
    try:
        yield
    except errors as exc:
        if what == "kafka":
            variable = "HOTLINE_KAFKA_BOOTSTRAP"
            message = f"cannot reach Kafka at {settings.kafka_bootstrap} ({_reason(exc)})"
            if settings.kafka_security_protocol != "PLAINTEXT":
                message += f"; check also the HOTLINE_KAFKA_SSL_*/SASL_* settings of {settings.kafka_security_protocol}"
        else:
            variable = "HOTLINE_DATABASE_URL"
            message = f"cannot connect to PostgreSQL at {masked_dsn(settings.database_url)} ({_reason(exc)})"
        console.print(f"[red]connection error[/red] {variable}: {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(UNREACHABLE) from None


async def _probe_kafka(settings: Settings) -> None:
    """Connect to the brokers once (and close again), so that a wrong address fails before anything starts."""
    from aiokafka.client import AIOKafkaClient

    from services.platform.kafka_security import client_options

    client = AIOKafkaClient(**client_options(settings))
    quiet = logging.getLogger("aiokafka")  # it logs each failed attempt; the caller prints one line instead
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        await client.bootstrap()
    finally:
        quiet.setLevel(level)
        await client.close()


async def _probe_database(settings: Settings) -> None:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    await conn.close()


def _router():  # type: ignore[no-untyped-def]
    from services.domain.routing import Router

    return Router.load()


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic with its explicit partition count (idempotent)."""
    from services.platform.kafka_admin import all_specs, create_topics
    from services.platform.settings import get_settings

    settings = get_settings()
    units = [(code, name) for _, code, name in _router().all_units()]
    with reaching("kafka", settings):
        asyncio.run(_probe_kafka(settings))
        created = asyncio.run(create_topics(settings, all_specs(settings, units)))
    table = Table("topic", "partitions", "status")
    for r in created:
        table.add_row(r.name, str(r.partitions), r.status)
    console.print(table)
    if any(r.status.startswith("exists-with") for r in created):
        console.print("[red]some topics exist with a different partition count; see the status column[/red]")
        raise typer.Exit(1)


@topics_app.command("list")
def topics_list() -> None:
    """Print the topic plan: name, partitions, key and what each carries."""
    from services.platform.kafka_admin import all_specs
    from services.platform.settings import get_settings

    settings = get_settings()
    units = [(code, name) for _, code, name in _router().all_units()]
    for spec in all_specs(settings, units):
        print(json.dumps(spec.__dict__, ensure_ascii=False))


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending database migrations."""
    from services.platform.db import migrate
    from services.platform.settings import get_settings

    settings = get_settings()
    with reaching("database", settings):
        applied = asyncio.run(migrate(settings.database_url))
    console.print(f"applied: {', '.join(applied) if applied else 'nothing (up to date)'}")


@app.command()
def worker(service: Annotated[str, typer.Argument(help="intake | router | sla")]) -> None:
    """Run one service's Faust worker (its own consumer group, /metrics on its port)."""
    from services.platform.logging import configure
    from services.platform.run import run_worker
    from services.platform.settings import get_settings

    settings = get_settings()
    configure(settings.log_level, settings.log_format, service)
    if service == "intake":
        from services.intake.agents import build

        faust_app = build(settings)
    elif service == "router":
        from services.router.agents import build as build_router

        faust_app = build_router(settings, _router())
    elif service == "sla":
        from services.domain.sla import SlaRules
        from services.sla.agents import build as build_sla

        faust_app = build_sla(settings, SlaRules.load())
    else:
        raise typer.BadParameter("service must be intake, router or sla")
    sys.argv = [sys.argv[0], "worker"]
    run_worker(faust_app, settings)


def _read_input(path: str) -> list[bytes]:
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


@app.command()
def http() -> None:
    """Run the HTTP / Open311 entry on HOTLINE_WEB_HOST:HOTLINE_HTTP_PORT (keys: HOTLINE_HTTP_API_KEYS)."""
    from services.intake.http import serve
    from services.platform.logging import configure
    from services.platform.settings import get_settings

    settings = get_settings()
    configure(settings.log_level, settings.log_format, "http")
    with reaching("kafka", settings):
        asyncio.run(_probe_kafka(settings))
    with reaching("database", settings):
        asyncio.run(_probe_database(settings))
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass


@app.command()
def classify(input: Annotated[str, typer.Option("--input", help="JSONL file of intake events, or - for stdin")]) -> None:
    """Route each event offline and print one JSON decision per line."""
    from services.domain.intake import accept_event
    from services.domain.validation import Rejection

    router = _router()
    for number, raw in enumerate(_read_input(input), 1):
        event = accept_event(raw)
        if isinstance(event, Rejection):
            print(json.dumps({"line": number, "rejected": True, "reason": event.reason, "field": event.field,
                              "error": event.error}, ensure_ascii=False))
            continue
        d = router.route(event)
        print(json.dumps({
            "event_id": event.event_id, "jurisdiction": event.jurisdiction.value, "outcome": d.outcome.value,
            "category": d.category, "lead_unit": d.lead_unit, "cooperating_units": d.cooperating_units,
            "territorial_unit": d.territorial_unit, "confidence": d.confidence, "needs_triage": d.needs_triage,
            "triage_reason": d.triage_reason, "redirect_to": d.redirect_to, "rule_id": d.rule_id,
            "matched_terms": d.matched_terms,
            "runner_up": d.runner_up.model_dump(mode="json") if d.runner_up else None,
            "citations": [c.model_dump() for c in d.citations], "explanation": d.explanation,
        }, ensure_ascii=False))


@app.command()
def replay(
    events: Annotated[Path, typer.Option(help="JSONL file of intake events")],
    out: Annotated[Path, typer.Option(help="output directory")],
    updates: Annotated[Optional[Path], typer.Option(help="JSONL file of unit updates")] = None,
    rulings: Annotated[Optional[Path], typer.Option(help="JSONL file of the dispatch desk's rulings")] = None,
    until: Annotated[Optional[str], typer.Option(
        help="ISO 8601 time with offset the clock runs to (default: the time of the last input line)")] = None,
) -> None:
    """Run intake → router → SLA offline in event time over the same domain functions as the workers.
    The unit scorecards cover the HOTLINE_SCORECARD_WINDOW_DAYS before the clock's end, as `hotline report` does."""
    from services.domain.sla import SlaRules
    from services.platform.settings import get_settings
    from services.replay.runner import run, write

    until_at = datetime.fromisoformat(until) if until else None
    if until_at is not None and until_at.tzinfo is None:
        raise typer.BadParameter("--until needs a UTC offset, e.g. 2025-07-01T00:00:00+08:00")
    settings = get_settings()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=None)
        result = run(events, updates, _router(), SlaRules.load(), rulings=rulings, until=until_at,
                     max_returns=settings.max_returns,
                     scorecard_window_days=settings.scorecard_window_days,
                     progress=lambda n: progress.advance(task, n))
    write(result, out)
    results.print_json(json.dumps(result.summary, ensure_ascii=False))


ROUTING_EVAL = REPO / "tests" / "data" / "routing_eval.jsonl"


@app.command("evaluate-routing")
def evaluate_routing(
    input: Annotated[Optional[Path], typer.Option(
        "--input", help="labelled JSONL set (default: tests/data/routing_eval.jsonl of the checkout)")] = None,
) -> None:
    """Accuracy of the rulebooks on a labelled set, per jurisdiction, as Markdown."""
    from services.domain.routing.evaluation import evaluate, render_markdown

    if input is None:
        input = ROUTING_EVAL
        if not input.is_file():
            raise typer.BadParameter(f"no labelled set at {input} (an installed copy without the checkout's tests/); "
                                     "give one with --input", param_hint="--input")
    rows = [json.loads(line) for line in input.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(render_markdown(evaluate(_router(), rows)))


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="directory for report.md and the PNG charts")],
    replay_dir: Annotated[Optional[Path], typer.Option("--replay", help="a `hotline replay` output directory")] = None,
    at: Annotated[Optional[str], typer.Option(help="database mode: scorecards as of this ISO time (default now)")] = None,
) -> None:
    """Campaign burn-up charts against their targets, and unit scorecards, as Markdown + PNG.
    Reads a replay output directory (--replay) or, without it, the database of HOTLINE_DATABASE_URL."""
    from services.domain.sla import SlaRules
    from services.platform.settings import get_settings
    from services.sla.report import from_database, from_replay, render, replay_scope

    if replay_dir is not None:
        history, scores = from_replay(replay_dir)
        as_of, window_days = replay_scope(replay_dir)
        source = f"replay output {replay_dir}"
    else:
        settings = get_settings()
        as_of = datetime.fromisoformat(at) if at else datetime.now().astimezone()
        if as_of.tzinfo is None:
            raise typer.BadParameter("--at needs a UTC offset, e.g. 2025-07-01T00:00:00+08:00")
        window_days = settings.scorecard_window_days
        with reaching("database", settings):
            history, scores = asyncio.run(from_database(settings.database_url, as_of, window_days))
        source = f"database {masked_dsn(settings.database_url)}"
    path = render(history, SlaRules.load().campaigns, scores, out, source, as_of=as_of, window_days=window_days)
    results.print(f"wrote {path}", highlight=False)


@schemas_app.command("generate")
def schemas_generate() -> None:
    """Write JSON Schema files and the AsyncAPI document into schemas/generated."""
    from schemas.generate import write_all

    for path in write_all():
        console.print(f"wrote {path}")


@app.command("unit-keys")
def unit_keys(
    out: Annotated[Path, typer.Argument(help="the keys file to write (not overwritten if it exists)")],
) -> None:
    """Write a new HOTLINE_UNIT_KEYS_FILE: a random key for every unit and territory of the rulebooks, readable by
    its owner only. Give each unit's system its own line; delete the lines of units that do not sign yet."""
    from services.domain.routing.rulebook import load_library, unit_directory
    from services.platform.unit_signature import write_new_keys_file

    units = unit_directory(load_library())
    try:
        write_new_keys_file(out, units)
    except OSError as exc:
        console.print(f"[red]cannot write[/red] {out}: {exc.strerror}", highlight=False)
        raise typer.Exit(1) from None
    results.print(f"wrote {out}: a key for each of {len(units)} units; set HOTLINE_UNIT_KEYS_FILE={out} on the SLA "
                  "workers", highlight=False, soft_wrap=True)


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="directory for events.jsonl, updates.jsonl and rulings.jsonl")],
    events: Annotated[int, typer.Option(help="how many reports to generate")] = 400,
    seed: Annotated[int, typer.Option(help="random seed (the same seed gives the same files)")] = 12345,
) -> None:
    """Write a realistic sample, events.jsonl, updates.jsonl and rulings.jsonl (the dispatch desk's), for replay,
    classify or a feed of your own (with the demo's defaults it is the demo's input)."""
    from services.demo.sample import generate

    made = generate(_router(), n_events=events, seed=seed)
    files = made.write(out)
    results.print(f"wrote {files.events}, {files.updates} and {files.rulings}: {made.describe()}", highlight=False,
                  soft_wrap=True)
    assert made.end is not None
    results.print(f"replay it: hotline replay --events {files.events} --updates {files.updates} --rulings "
                  f"{files.rulings} --until {made.end.isoformat()} --out DIR", highlight=False, soft_wrap=True)


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help="topic name, e.g. hotline.deadletter or hotline.unit.qingpu.cgzf "
                                              "(`hotline topics list` names them all)")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="start at the oldest message "
                                                                          "(default: only new ones)")] = False,
    max_messages: Annotated[Optional[int], typer.Option("--max", min=1, help="stop after this many messages "
                                                                             "(default: run until Ctrl-C)")] = None,
) -> None:
    """Print a topic's messages, one JSON line each: partition, offset, key, CloudEvents headers and value.
    Reads without a consumer group, so the workers are not affected."""
    from services.platform.settings import get_settings
    from services.tail import NoSuchTopic, tail as run_tail

    settings = get_settings()

    def write(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        with reaching("kafka", settings):
            asyncio.run(_probe_kafka(settings))
            asyncio.run(run_tail(settings, topic, from_beginning=from_beginning, max_messages=max_messages,
                                 write=write))
    except NoSuchTopic:
        console.print(f"no topic {topic} on {settings.kafka_bootstrap} (`hotline topics list` prints the names)",
                      highlight=False, markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    events: Annotated[int, typer.Option(help="how many sample events to generate")] = 400,
    seed: Annotated[int, typer.Option(help="random seed of the sample")] = 12345,
    keep: Annotated[bool, typer.Option(help="keep running after the summary until Ctrl-C")] = False,
) -> None:
    """Start the embedded broker and database and the three workers, feed a realistic sample, show the result."""
    from services.demo.runner import run_demo

    raise typer.Exit(run_demo(n_events=events, seed=seed, keep=keep, console=console, out=results))


def main() -> None:
    from rich.markup import escape

    from services.platform.settings import ConfigurationError

    try:
        app()
    except ConfigurationError as exc:  # a wrong HOTLINE_* variable: say which and why, without a traceback
        for problem in exc.problems:
            console.print(f"[red]configuration error[/red] {escape(problem)}", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
