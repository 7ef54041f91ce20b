"""``hotline report``: campaign burn-up charts (PNG, matplotlib) and unit scorecards (Markdown)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from services.domain.campaigns import CampaignBook
from services.domain.scorecards import RATIOS

RATIO_TITLES = {"response": "响应率", "resolution": "解决率", "satisfaction": "满意率", "on_time": "按时办结率",
                "return": "回退率", "rehandle": "重办率"}


def burn_up_chart(campaign_id: str, history: list[dict[str, Any]], target: float, deadline: datetime,
                  path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at = [datetime.fromisoformat(h["at"]) for h in history]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.plot(at, [h["rate"] for h in history], label="rate (resolved, not reopened / cohort)", color="#1f77b4")
    ax.plot(at, [h["projected_rate"] for h in history], label="projected rate at deadline", color="#ff7f0e",
            linestyle="--")
    ax.axhline(target, color="#d62728", label=f"target {target:.0%}")
    ax.axvline(deadline, color="grey", linestyle=":", label="deadline")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{campaign_id}: burn-up against target")
    ax.set_ylabel("share of the cohort (enrolled, or the plan's tickets if more)")
    ax.legend(loc="lower right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def scorecard_scope(as_of: datetime | None, window_days: int | None) -> str:
    """One sentence saying which tickets the unit scorecards count and at which moment."""
    if as_of is None or window_days is None:
        return "Scorecard window and moment not recorded (a replay output written before they were)."
    since = as_of - timedelta(days=window_days)
    return (f"Scorecards as of {as_of.isoformat()}, over the tickets opened in the {window_days} days before "
            f"(since {since.isoformat()}, HOTLINE_SCORECARD_WINDOW_DAYS) and every ticket still open for a unit.")


def render(history: dict[str, list[dict[str, Any]]], campaigns: CampaignBook, scores: list[dict[str, Any]],
           out: Path, source: str, *, as_of: datetime | None = None, window_days: int | None = None) -> Path:
    """``as_of`` and ``window_days``: the moment and the window of the scorecards, stated in the header."""
    out.mkdir(parents=True, exist_ok=True)
    scope = scorecard_scope(as_of, window_days)
    lines = ["# Campaigns and unit scorecards", "", f"Source: {source}", "", scope, "", "## Campaigns", "",
             "The rate is a share of the cohort: the tickets enrolled or, where the plan names how many tickets it "
             "covers (plan's tickets), that many if fewer are enrolled.", "",
             "| campaign | enrolled | plan's tickets | resolved | rate | target | projected | status | as of | plan |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    charts = []
    for campaign in campaigns.campaigns:
        points = history.get(campaign.id) or []
        if not points:
            lines.append(f"| {campaign.id} | 0 | {campaign.planned_cohort or '—'} | 0 | — | {campaign.target:.0%} | — | "
                         f"not evaluated | — | {campaign.citation.file} |")
            continue
        last = points[-1]
        lines.append(f"| {campaign.id} | {last['enrolled']} | {campaign.planned_cohort or '—'} | {last['resolved']} | "
                     f"{_pct(last['rate'])} | "
                     f"{campaign.target:.0%} | {_pct(last['projected_rate'])} | {last['status']} | "
                     f"{last['at'][:10]} | {campaign.citation.file} |")
        chart = burn_up_chart(campaign.id, points, campaign.target, campaign.deadline, out / f"campaign-{campaign.id}.png")
        charts.append((campaign, chart))
    for campaign, chart in charts:
        lines += ["", f"### {campaign.id}", "", f"{campaign.name}", "",
                  f"Plan: {campaign.citation.file} — {campaign.citation.clause}", "", f"![burn-up]({chart.name})"]
    lines += ["", "## Unit scorecards", "",
              "| jurisdiction | unit | dispatches | open | overdue | "
              + " | ".join(f"{RATIO_TITLES[r]} ({r})" for r in RATIOS) + " |",
              "|---|---|---|---|---|" + "---|" * len(RATIOS)]
    for s in sorted(scores, key=lambda s: (s["jurisdiction"], -s["dispatches"], s["unit"])):
        lines.append(f"| {s['jurisdiction']} | {s['unit']} | {s['dispatches']} | {s['open']} | {s['overdue']} | "
                     + " | ".join(_pct(s[f"{r}_ratio"]) for r in RATIOS) + " |")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def from_replay(directory: Path) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    history = json.loads((directory / "campaign_history.json").read_text(encoding="utf-8"))
    scores = json.loads((directory / "scorecards.json").read_text(encoding="utf-8"))
    return history, scores


def replay_scope(directory: Path) -> tuple[datetime | None, int | None]:
    """The moment (the replay's end: --until or its last input) and the window of a replay's scorecards."""
    summary = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
    until = summary.get("until")
    return (datetime.fromisoformat(until) if until else None), summary.get("scorecard_window_days")


async def from_database(dsn: str, now: datetime, window_days: int) -> tuple[dict[str, list[dict[str, Any]]],
                                                                            list[dict[str, Any]]]:
    import asyncpg

    from services.platform.db import _init
    from services.sla.store import unit_scores

    conn = await asyncpg.connect(dsn)
    await _init(conn)
    try:
        rows = await conn.fetch("SELECT campaign_id, report FROM campaign_evaluations ORDER BY campaign_id, at")
        history: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            history.setdefault(r["campaign_id"], []).append(r["report"])
        scores = await unit_scores(conn, now, now - timedelta(days=window_days))  # SQL over the stored unit facts
        return history, [s.as_dict() for s in scores]
    finally:
        await conn.close()
