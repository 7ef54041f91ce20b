"""Rulebook data model: the YAML files under services/router/rulebooks, validated with pydantic.

Everything that names a unit, a phrase, a weight or a threshold lives in the YAML; this module only
describes its shape and loads it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.common import Citation, Source

TERRITORY_LEAD = "@territory"  # a rule whose plan clause makes the street/town itself the lead


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Term(_Model):
    """A phrase and its weight; ``weight`` None means "derive from the phrase length"."""

    term: str = Field(min_length=1)
    weight: float | None = Field(default=None, gt=0)


def _terms(value: Any) -> Any:
    """Accept ``[违建, {term: 搭建, weight: 1}]`` as well as full objects."""
    if not isinstance(value, list):
        return value
    return [{"term": v} if isinstance(v, str) else v for v in value]


class Unit(_Model):
    code: str = Field(pattern=r"^[a-z0-9._-]+$")
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)


class Category(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    keywords: list[Term] = Field(default_factory=list)
    exclude: list[Term] = Field(default_factory=list)
    sources: list[Source] | None = None

    _norm = field_validator("keywords", "exclude", mode="before")(_terms)


class Rule(_Model):
    id: str = Field(pattern=r"^[a-z0-9._-]+$")
    category: str
    keywords: list[Term] = Field(default_factory=list, description="added to the category's keywords")
    inherit_keywords: bool = Field(default=True, description="False: only the rule's own keywords count")
    exclude: list[Term] = Field(default_factory=list, description="veto phrases, added to the category's")
    sources: list[Source] | None = Field(default=None, description="restricts the rule; default: category's")
    lead: str
    cooperating: list[str] = Field(default_factory=list)
    territory_cooperates: bool = Field(
        default=False,
        description="the report's 街镇 is added to cooperating_units. Basis: either the cited clause lists "
        "各镇、街道 / 各街镇 / 街道办事处 among its units, or the territorial practice 条块结合、以条为主、街镇托底 "
        "(shared/domain.md), and then `note` says so with the words 街镇托底. False: a line department's or "
        "utility's matter in which the 街镇 has no part (供水, 燃气, 公交, 信号灯 …)",
    )
    standard_unit: bool = Field(default=False, description="lead not named by the plan for this topic")
    citation: Citation = Field(
        description="plan file and clause reference; the clause text after the reference is our summary, not a "
        "quote (a quote inside it is written in corner brackets 「…」 and must be verbatim)"
    )
    evidence: str | None = Field(
        default=None,
        description="verbatim excerpt of citation.file, byte for byte (traditional characters and ASCII punctuation "
        "where the file has them); required unless standard_unit",
    )
    note: str | None = Field(default=None, description="why this lead / these units; 「…」 in it is a verbatim quote")

    _norm = field_validator("keywords", "exclude", mode="before")(_terms)


class Rulebook(_Model):
    jurisdiction: str
    name: str
    plans: list[str]
    triage_unit: str
    confidence_threshold: float | None = Field(default=None, ge=0, le=1)
    road_suffixes: list[str] | None = None
    units: list[Unit]
    territories: list[Unit]
    rules: list[Rule]


class EmergencyChannel(_Model):
    redirect_to: str
    name: str
    terms: list[Term]

    _norm = field_validator("terms", mode="before")(_terms)


class OutOfScope(_Model):
    reason: str = Field(pattern=r"^[a-z_]+$")
    name: str
    terms: list[Term]

    _norm = field_validator("terms", mode="before")(_terms)


class UrgentScreen(_Model):
    """Words of a risk to life or property in progress that is not an emergency to redirect: the router raises
    the ticket to urgent when the sender did not (hedged words do not count, as for emergencies)."""

    name: str
    terms: list[Term]

    _norm = field_validator("terms", mode="before")(_terms)


class Scoring(_Model):
    length_weights: dict[int, float]
    max_weight: float
    hint_bonus: float
    strength_k: float
    margin_floor: float
    confidence_threshold: float
    max_candidates: int
    review_min_score: float = Field(gt=0, description=(
        "a redirect goes to the desk for review when the report's best ownership rule, dispatched with confidence, "
        "scores at least this: two phrases, or one strong one (a place or symptom named in passing does not)"))


class Common(_Model):
    scoring: Scoring
    road_suffixes: list[str]
    emergency: list[EmergencyChannel]
    not_emergency: list[Term] = Field(description="phrases that contain an emergency word but are not one")
    hedge_markers: list[str] = Field(description="words near an emergency word that mean: not in progress")
    hedge_markers_before: list[str] = Field(
        default_factory=list, description="words that mean it only before the emergency word: a worry or a "
        "condition (担心起火, 万一着火); after it they describe what the emergency in progress may do (着火了，担心烧到楼上)")
    hedge_window_before: int
    hedge_window_after: int
    out_of_scope: list[OutOfScope]
    urgent: UrgentScreen
    emergency_citation: Citation
    out_of_scope_citation: Citation
    triage_citation: Citation
    urgent_citation: Citation

    _norm = field_validator("not_emergency", mode="before")(_terms)


class Library(_Model):
    """Everything loaded from one rulebook directory."""

    common: Common
    categories: dict[str, Category]
    books: dict[str, Rulebook]
    version: str


def default_dir() -> Path:
    """services/router/rulebooks, located relative to this package (not the working directory)."""
    return Path(__file__).resolve().parents[2] / "router" / "rulebooks"


# libyaml's safe loader when PyYAML has it (its wheels do): the same documents, read ~8x faster than the pure-Python
# one; the router and the SLA service (each jurisdiction's desk) both read the rulebooks at start-up
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_LOADER)


def content_version(directory: Path) -> str:
    """Short sha256 over the names and bytes of every YAML file in the directory."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.yaml")):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def load_library(directory: Path | str | None = None) -> Library:
    directory = Path(directory) if directory is not None else default_dir()
    common = Common.model_validate(_read(directory / "common.yaml"))
    cats = [Category.model_validate(c) for c in _read(directory / "categories.yaml")["categories"]]
    categories = {c.id: c for c in cats}
    if len(categories) != len(cats):
        raise ValueError("duplicate category id in categories.yaml")
    books: dict[str, Rulebook] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name in ("common.yaml", "categories.yaml"):
            continue
        book = Rulebook.model_validate(_read(path))
        if book.jurisdiction in books:
            raise ValueError(f"two rulebooks for {book.jurisdiction}")
        _check_book(book, categories)
        books[book.jurisdiction] = book
    codes = [u.code for book in books.values() for u in [*book.units, *book.territories]]
    if len(set(codes)) != len(codes):  # a unit's code names its work-order topic and its signing keys
        raise ValueError(f"unit codes used by two rulebooks: {sorted({c for c in codes if codes.count(c) > 1})}")
    return Library(common=common, categories=categories, books=books, version=content_version(directory))


def unit_directory(library: Library) -> dict[str, tuple[str, str]]:
    """Every unit and territory of the library by its code: (jurisdiction, name)."""
    return {u.code: (j, u.name) for j, book in library.books.items() for u in [*book.units, *book.territories]}


def _check_book(book: Rulebook, categories: dict[str, Category]) -> None:
    """Fail at load time on dangling references, so a bad rulebook never routes anything."""
    names = {u.name for u in book.units}
    territory_names = {t.name for t in book.territories}
    codes = [u.code for u in book.units] + [t.code for t in book.territories]
    if len(set(codes)) != len(codes):
        raise ValueError(f"{book.jurisdiction}: duplicate unit codes")
    if len(names | territory_names) != len(codes):  # an update names its unit: the name must say which one
        raise ValueError(f"{book.jurisdiction}: two units or territories with the same name")
    if book.triage_unit not in names:
        raise ValueError(f"{book.jurisdiction}: triage unit {book.triage_unit} not in units")
    seen: set[str] = set()
    for rule in book.rules:
        if rule.id in seen:
            raise ValueError(f"{book.jurisdiction}: duplicate rule id {rule.id}")
        seen.add(rule.id)
        if rule.category not in categories:
            raise ValueError(f"{rule.id}: unknown category {rule.category}")
        if rule.lead != TERRITORY_LEAD and rule.lead not in names:
            raise ValueError(f"{rule.id}: lead {rule.lead} not in units")
        for unit in rule.cooperating:
            if unit not in names and unit not in territory_names:
                raise ValueError(f"{rule.id}: cooperating unit {unit} not in units")
