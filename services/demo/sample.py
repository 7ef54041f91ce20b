"""A realistic, reproducible sample of events, unit updates and the dispatch desk's rulings over the four
jurisdictions.

Texts come from ``templates.yaml``; the units that post updates are the ones the rulebooks make
responsible (the generator asks the same router the service uses), so the updates fit the work orders.
The sample also carries what real feeds carry: duplicates, broken lines, late acknowledgements, tickets
nobody resolves, extensions (延期; the desk grants most and refuses some), returns and disputes, unsatisfied
callbacks, callers reporting a matter again after its ticket was closed (the desk reopens most of those tickets);
and the desk's rulings on most triaged tickets and disputes (dispatch by the best candidate rule, or close
when the matter is not the city's).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from schemas import IntakeEvent, RoutingDecision
from services.domain.clock import CHINA_TZ
from services.domain.dispatch import Routes

TEMPLATES = Path(__file__).resolve().parent / "templates.yaml"
JURISDICTION_WEIGHTS = {"qingpu": 0.4, "changning": 0.2, "chongming": 0.2, "zhalantun": 0.2}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
PROPERTY_CATEGORIES = frozenset({"property_management", "parking_resources"})


class SampleFiles(NamedTuple):
    events: Path
    updates: Path
    rulings: Path


@dataclass
class Sample:
    events: list[bytes] = field(default_factory=list)
    updates: list[bytes] = field(default_factory=list)
    rulings: list[bytes] = field(default_factory=list)  # the dispatch desk's, in time order
    start: datetime | None = None
    end: datetime | None = None  # the clock end: 20 days after the last report day, so deadlines run out
    reports: int = 0  # distinct reports (``n_events``)
    resent: int = 0  # lines a hotline system sent twice (the same event id): duplicates
    repeats: int = 0  # later reports of the same matter by someone else (candidates for 并单)
    repeats_after_close: int = 0  # ... of them, reports of a matter again after its ticket was closed
    reopened: int = 0  # ... after which the dispatch desk reopened the ticket for its unit (复核重办)
    broken: int = 0  # deliberately broken event lines (blank, not JSON, missing fields, bad time)
    impossible_updates: int = 0  # deliberately impossible unit updates (unknown ticket and action)
    late_reviews: int = 0  # extension reviews (延期审核) the dispatch desk makes 1.5 to 3 days later than usual

    def describe(self) -> str:
        """How the event lines add up, e.g. '441 event lines = 400 reports + 10 sent twice + …'."""
        return (f"{len(self.events)} event lines = {self.reports} reports + {self.resent} sent twice + "
                f"{self.repeats} repeat reports of the same matter ({self.repeats_after_close} of them after the "
                f"ticket was closed, {self.reopened} of those reopened by the desk) + {self.broken} broken lines; "
                f"{len(self.updates)} unit updates ({self.impossible_updates} impossible, "
                f"{self.late_reviews} reviews of an extension delayed by days); "
                f"{len(self.rulings)} rulings of the dispatch desk")

    def write(self, directory: Path) -> SampleFiles:
        directory.mkdir(parents=True, exist_ok=True)
        files = SampleFiles(directory / "events.jsonl", directory / "updates.jsonl", directory / "rulings.jsonl")
        for path, lines in zip(files, (self.events, self.updates, self.rulings), strict=True):
            path.write_bytes(b"".join(line + b"\n" for line in lines))
        return files


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def _fill(text: str, rnd: random.Random, place: dict[str, Any], town: str | None) -> str:
    values = {"community": rnd.choice(place["communities"]), "road": rnd.choice(place["roads"]),
              "building": str(rnd.randint(1, 60)), "town": town or rnd.choice(place["towns"]),
              "n": str(rnd.randint(2, 30)), "time": rnd.choice(["早上六点", "晚上十点", "凌晨一点", "中午", "傍晚"])}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def _campaigns(jurisdiction: str, source: str, template: dict[str, Any], rnd: random.Random) -> list[str]:
    if jurisdiction != "qingpu":
        return []
    hint = str(template.get("category_hint", ""))
    out = []
    if source == "iot_alert":
        out.append("qingpu-2025-iot-alert-push")
    elif source == "hotline_12345" and rnd.random() < 0.6:
        out.append("qingpu-2025-hotspots-12345")
    elif source == "petition" and rnd.random() < 0.8:
        out.append("qingpu-2025-hotspots-petitions")
    if hint in PROPERTY_CATEGORIES and source in ("hotline_12345", "petition"):  # the plan's two cohorts
        out.append("qingpu-2025-property-12345" if source == "hotline_12345" else "qingpu-2025-property-parking-petitions")
    return out


def _details(source: str, template: dict[str, Any], event_id: str, rnd: random.Random) -> dict[str, Any]:
    """The source's own fields (schemas/intake.py: HotlineDetails, PetitionDetails, InspectionDetails, IotDetails)."""
    if source == "hotline_12345":
        return {"hotline": {"ticket_no": f"12345-{event_id}", "channel": rnd.choice(["phone", "phone", "app", "wechat"])}}
    if source == "petition":
        return {"petition": {"petition_no": f"XF{event_id}"}}
    if source == "grid_inspection":
        return {"inspection": {"inspector_id": f"WG{rnd.randint(1, 300):04d}", "case_class": rnd.choice(["部件", "事件"]),
                               "photos": [f"oss://grid-photos/{event_id}/{k}.jpg" for k in range(rnd.randint(1, 3))]}}
    hint = str(template.get("category_hint", ""))
    if "elevator" in hint:
        return {"iot": {"device_type": "elevator", "device_id": f"EL-{rnd.randint(1000, 9999)}", "alert_type": "困人",
                        "readings": {"car_position_floor": float(rnd.randint(1, 30)), "door_open_s": 0.0}}}
    if "water_meter" in hint:
        return {"iot": {"device_type": "water_meter", "device_id": f"WM-{rnd.randint(1000, 9999)}",
                        "alert_type": "24h_zero_flow", "readings": {"flow_24h_l": 0.0}}}
    return {"iot": {"device_type": "other", "device_id": f"DV-{rnd.randint(1000, 9999)}", "alert_type": "alarm"}}


def generate(router: Routes, n_events: int = 400, seed: int = 12345,
             start: datetime = datetime(2025, 4, 1, tzinfo=CHINA_TZ), days: int = 80) -> Sample:
    rnd = random.Random(seed)
    data = yaml.safe_load(TEMPLATES.read_text(encoding="utf-8"))
    places, templates = data["jurisdictions"], data["templates"]
    sample = Sample(start=start, end=start + timedelta(days=days + 20))
    timed_events: list[tuple[datetime, bytes]] = []
    timed_updates: list[tuple[datetime, bytes]] = []
    timed_rulings: list[tuple[datetime, bytes]] = []
    counter = 0
    # callers who report a matter again after its ticket was closed; a stream of its own, so that the rest of the
    # sample is what it would be without them
    again_rnd = random.Random(seed + 1)
    late_rnd = random.Random(seed + 2)  # extension reviews the desk makes late; likewise a stream of its own
    reopen_rnd = random.Random(seed + 3)  # closed tickets the desk reopens after such a call; and again

    def story(event: IntakeEvent, unit: str, at: datetime, may_return: bool = True) -> datetime | None:
        """Add the units' updates of one ticket; the time of the return that left it disputed, if it did."""
        nonlocal counter
        timed, disputed = _story(rnd, router, event, unit, at, may_return, late_rnd)
        asked: str | None = None
        for when, update in timed:
            sample.late_reviews += bool(update.pop("late", False))
            counter += 1
            update["event_id"] = f"U{counter:06d}"
            if update["action"] == "extend":
                asked = update["event_id"]
            elif update["action"] == "review_extension":
                update["extension_id"] = asked  # the desk names the request it reviews
            timed_updates.append((when, _dumps(update)))
        closed = [when for when, u in timed if u["action"] == "callback" and u.get("satisfied")]
        # within the merge window (repeats.yaml: 72 h from the first report), so that the report joins the ticket
        if closed and closed[-1] <= event.occurred_at + timedelta(hours=60) and again_rnd.random() < 0.5:
            again_at, raw = _called_again(event, closed[-1], again_rnd)
            timed_events.append((again_at, raw))
            sample.repeats += 1
            sample.repeats_after_close += 1
            if reopen_rnd.random() < 0.75:  # the desk checks the call and reopens the ticket (复核重办)
                resolver = next(u["unit"] for _, u in reversed(timed) if u["action"] == "resolve")
                for when, update in _reopened(event, router, resolver, again_at, reopen_rnd):
                    counter += 1
                    timed_updates.append((when, _dumps({**update, "event_id": f"U{counter:06d}"})))
                sample.reopened += 1
        return disputed

    def rule(event: IntakeEvent, at: datetime, **ruling: Any) -> datetime:
        when = at + timedelta(hours=rnd.uniform(0.5, 6))
        timed_rulings.append((when, _dumps({"ruling_id": f"R{len(timed_rulings) + 1:06d}", "ticket_id": event.event_id,
                                            "desk": router.triage_unit(event.jurisdiction.value),
                                            "occurred_at": when.isoformat(), **ruling})))
        return when
    for i in range(n_events):
        jurisdiction = rnd.choices(list(JURISDICTION_WEIGHTS), weights=list(JURISDICTION_WEIGHTS.values()))[0]
        choices = [t for t in templates if jurisdiction in t["jurisdictions"]]
        template = rnd.choice(choices)
        source = rnd.choice(template["sources"])
        place = places[jurisdiction]
        town = rnd.choice(place["towns"]) if rnd.random() < 0.85 else None
        address = f"{place['prefix']}{town or ''}{rnd.choice(place['roads'])}{rnd.randint(1, 999)}号"
        day = start + timedelta(days=rnd.randint(0, days - 1))
        at = day.replace(hour=rnd.randint(7, 21), minute=rnd.randint(0, 59))
        event_id = f"{jurisdiction[:2].upper()}{at:%Y%m%d}{i:05d}"
        event: dict[str, Any] = {
            "event_id": event_id, "source": source, "jurisdiction": jurisdiction, "occurred_at": at.isoformat(),
            "content": _fill(template["text"], rnd, place, town), "address": address,
            "urgency": template.get("urgency", "normal"),
            "campaigns": _campaigns(jurisdiction, source, template, rnd),
            **_details(source, template, event_id, rnd),
        }
        if source == "hotline_12345":
            event["caller"] = {"name": rnd.choice(SURNAMES) + rnd.choice(["先生", "女士"]),
                               "phone": f"13{rnd.randint(0, 9)}{rnd.randint(10_000_000, 99_999_999)}"}
        raw = _dumps(event)
        timed_events.append((at, raw))
        if rnd.random() < 0.03:  # the hotline system sends it again
            timed_events.append((at, raw))
            sample.resent += 1
        if rnd.random() < 0.06:  # someone else reports the same matter (并单)
            later = at + timedelta(hours=rnd.uniform(1, 40))
            again = {**event, "event_id": f"{event_id}R", "occurred_at": later.isoformat(),
                     "source": rnd.choice(template["sources"]), "campaigns": [],
                     "content": _fill(template["text"], rnd, place, town) + rnd.choice(["", "，还是没人管", "，请尽快处理"])}
            for name in ("caller", "hotline", "petition", "inspection", "iot"):
                again.pop(name, None)
            again.update(_details(again["source"], template, again["event_id"], rnd))
            if again["source"] == "hotline_12345":
                again["caller"] = {"name": rnd.choice(SURNAMES) + "女士",
                                   "phone": f"15{rnd.randint(0, 9)}{rnd.randint(10_000_000, 99_999_999)}"}
            timed_events.append((later, _dumps(again)))
            sample.repeats += 1
        parsed = IntakeEvent.model_validate(event)
        decision = router.route(parsed)
        if decision.outcome == "triage" and rnd.random() < 0.8:  # the desk rules; the rest wait in its queue
            lead = _desk_choice(decision)
            if lead is None:
                rule(parsed, at, action="close", reason="非本级政府职责，已告知诉求人法定渠道")
            else:
                when = rule(parsed, at, action="dispatch", rule_id=lead[0], reason="经核实，按职责清单派单")
                story(parsed, lead[1], when)
        elif decision.outcome == "redirect" and decision.needs_triage and rnd.random() < 0.8:
            lead = _desk_choice(decision)  # the desk reviews the redirect's civic matter: half get a work order
            if lead is None or rnd.random() < 0.5:
                rule(parsed, at, action="close", reason="紧急情况已转出并处置，无需另行派单")
            else:
                when = rule(parsed, at, action="dispatch", rule_id=lead[0], reason="紧急情况已转出；另涉及的事项按职责派单")
                story(parsed, lead[1], when)
        if decision.outcome != "dispatch" or decision.lead_unit is None:
            continue
        disputed = story(parsed, decision.lead_unit, at)
        if disputed is not None and rnd.random() < 0.8:  # the desk rules the dispute: the first unit leads
            when = rule(parsed, disputed, action="dispatch", rule_id=decision.rule_id,
                        reason="权属争议裁定：按规则由首派单位牵头办理")
            story(parsed, decision.lead_unit, when, may_return=False)
    broken = [b"", b"{not json", b'{"event_id": "X1", "source": "fax"}', "\u4e2d".encode()[:2],
              _dumps({"event_id": "BAD-TIME", "source": "hotline_12345", "jurisdiction": "qingpu",
                      "occurred_at": "2025-05-01 10:00", "content": "路灯不亮", "address": "上海市青浦区"})]
    for k, raw in enumerate(broken):
        timed_events.insert(rnd.randint(0, len(timed_events)), (timed_events[min(k, len(timed_events) - 1)][0], raw))
    sample.reports, sample.broken = n_events, len(broken)
    timed_events.sort(key=lambda x: x[0])
    timed_updates.sort(key=lambda x: x[0])
    timed_rulings.sort(key=lambda x: x[0])
    sample.events = [raw for _, raw in timed_events]
    sample.updates = [raw for _, raw in timed_updates]
    sample.rulings = [raw for _, raw in timed_rulings]
    sample.updates.append(_dumps({"event_id": "U-BAD", "ticket_id": "NOPE", "action": "teleport", "unit": "x",
                                  "occurred_at": (start + timedelta(days=days)).isoformat()}))
    sample.impossible_updates = 1
    return sample


def _called_again(event: IntakeEvent, closed: datetime, rnd: random.Random) -> tuple[datetime, bytes]:
    """A caller reporting the matter again a few hours after its ticket was closed (并单 joins the closed ticket,
    when it is within the merge window of the first report)."""
    when = closed + timedelta(hours=rnd.uniform(1, 12))
    event_id = f"{event.event_id}C"
    again = {"event_id": event_id, "source": "hotline_12345", "jurisdiction": event.jurisdiction.value,
             "occurred_at": when.isoformat(), "content": event.content + "，处理完又出现了", "address": event.address,
             "urgency": event.urgency.value, "campaigns": [], **_details("hotline_12345", {}, event_id, rnd),
             "caller": {"name": rnd.choice(SURNAMES) + "先生",
                        "phone": f"18{rnd.randint(0, 9)}{rnd.randint(10_000_000, 99_999_999)}"}}
    return when, _dumps(again)


def _reopened(event: IntakeEvent, router: Routes, unit: str, called: datetime,
              rnd: random.Random) -> list[tuple[datetime, dict[str, Any]]]:
    """The dispatch desk reopens a closed ticket after a caller reported the matter again at ``called``; the unit
    that resolved it handles it again and the desk calls back."""
    desk = router.triage_unit(event.jurisdiction.value)
    reopen = called + timedelta(hours=rnd.uniform(1, 4))
    resolve = reopen + timedelta(days=rnd.uniform(0.5, 3))
    callback = resolve + timedelta(days=rnd.uniform(0.5, 1.5))
    return [(when, {"ticket_id": event.event_id, "action": action, "unit": who, "occurred_at": when.isoformat(),
                    **extra})
            for when, action, who, extra in (
                (reopen, "reopen", desk, {"reason": "回访复核：市民再次来电反映问题又出现"}),
                (resolve, "resolve", unit, {"note": "重办完成"}),
                (callback, "callback", desk, {"satisfied": True}))]


def _desk_choice(decision: RoutingDecision) -> tuple[str, str] | None:
    """The rule and lead the desk picks for a triaged matter: its best candidate with a named lead; None (close)
    for a matter outside the city's remit or without a candidate."""
    if (decision.triage_reason or "").startswith("out_of_scope"):
        return None
    named = [c for c in decision.candidates if not c.lead_unit.startswith("@")]
    return (named[0].rule_id, named[0].lead_unit) if named else None


def _story(rnd: random.Random, router: Routes, event: IntakeEvent, unit: str, at: datetime,
           may_return: bool, late: random.Random) -> tuple[list[tuple[datetime, dict[str, Any]]], datetime | None]:
    """What the units do with one ticket, as timed updates; and the time of the return that left it disputed
    (two returns, or one with no other unit to take it), if it did. ``late`` decides which extension reviews the
    desk delays by 1.5 to 3 days (marked ``late`` for the caller's count), mostly past its review deadline."""
    out: list[tuple[datetime, dict[str, Any]]] = []
    tid = event.event_id
    desk = router.triage_unit(event.jurisdiction.value)  # calls the citizen back and reviews extensions

    def u(when: datetime, action: str, who: str, **extra: Any) -> None:
        out.append((when, {"ticket_id": tid, "action": action, "unit": who, "occurred_at": when.isoformat(), **extra}))

    fate = rnd.random() if may_return else 0.08 + 0.92 * rnd.random()
    t = at + timedelta(hours=rnd.uniform(0.5, 20))
    nxt = router.route(event, exclude_units=frozenset({unit})) if fate < 0.08 else None
    has_next = nxt is not None and nxt.outcome == "dispatch" and nxt.lead_unit is not None
    if fate < 0.015 or (fate < 0.08 and not has_next and fate < 0.03):  # returned with nobody left: a dispute
        u(t, "return", unit, reason="不属于本单位职责")
        return out, None if has_next else t  # with another candidate the router re-dispatches (and nobody works)
    if fate < 0.08 and has_next and nxt is not None and nxt.lead_unit is not None:  # returned, the next unit works
        u(t, "return", unit, reason="不属于本单位职责，建议改派")
        unit, t = nxt.lead_unit, t + timedelta(hours=rnd.uniform(1, 30))
        if fate < 0.03:  # and returned again: an ownership dispute
            u(t, "return", unit, reason="该事项应由属地或其他部门处置")
            return out, t
    elif fate < 0.12:  # nobody picks it up
        return out, None
    elif fate < 0.2:  # acknowledged late
        t = at + timedelta(days=rnd.uniform(1.6, 4))
    u(t, "acknowledge", unit, note="已签收")
    if rnd.random() < 0.08:  # acknowledged, never resolved
        return out, None
    if rnd.random() < 0.06 and event.source != "petition":  # petitions already have 60 days
        t2 = t + timedelta(hours=2)  # requested within the limit (after it: extension_after_due)
        u(t2, "extend", unit, reason="需协调多个部门", new_due=(t2 + timedelta(days=12)).isoformat())
        t = t2 + timedelta(hours=rnd.uniform(1, 6))  # the dispatch desk reviews it (延期审核), mostly granting it
        slow = late.random() < 0.3  # ... a third of the time days later
        if slow:
            t += timedelta(days=late.uniform(1.5, 3))
        granted = rnd.random() < 0.8
        u(t, "review_extension", desk, approved=granted, reason=None if granted else "理由不充分，请按期办结",
          **({"late": True} if slow else {}))
    t = t + timedelta(days=rnd.uniform(0.3, 8.5))
    u(t, "resolve", unit, note="已现场处置")
    t = t + timedelta(days=rnd.uniform(0.5, 3))
    satisfied = rnd.random() < 0.85
    u(t, "callback", desk, satisfied=satisfied, reason=None if satisfied else "问题仍未解决")
    if not satisfied:
        t = t + timedelta(days=rnd.uniform(0.5, 4))
        u(t, "resolve", unit, note="重办完成")
        u(t + timedelta(days=1), "callback", desk, satisfied=True)
    return out, None
