"""The documentation names every rejection reason and every setting the code has."""

from __future__ import annotations

import re

from services.domain import validation
from services.platform.settings import Settings
from tests.conftest import REPO


def _reasons_in_code() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "services").rglob("*.py"):
        found |= set(re.findall(r'Rejection\(\s*"([a-z0-9_]+)"', path.read_text(encoding="utf-8")))
    found |= set(validation._TYPE_REASONS.values()) | set(validation._FIELD_REASONS.values())
    return found | {"wrong_type", "invalid_value"}


def test_every_rejection_reason_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", (REPO / "docs" / "rejections.md").read_text(encoding="utf-8"),
                                re.MULTILINE))
    reasons = _reasons_in_code()
    assert len(reasons) > 15
    assert reasons <= documented, reasons - documented


def test_readme_settings_table_is_the_settings() -> None:
    """The README's configuration table lists every setting, in order, with its real default and description."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `HOTLINE_([A-Z0-9_]+)` \| `([^`]*)` \| (.+?) \|$", readme, re.MULTILINE)
    expected = [(name.upper(), str(field.default), field.description) for name, field in Settings.model_fields.items()]
    assert rows == expected


# Environment variables that are not settings: test and benchmark knobs, and the compose file's image name.
NOT_SETTINGS = {"FAULT_EVENTS", "FAULT_DB_PAUSE", "PROMETHEUS", "IMAGE"}


def test_every_hotline_variable_named_anywhere_exists() -> None:
    """A misspelt HOTLINE_* variable in the docs or the deploy files would silently do nothing."""
    settings = {name.upper() for name in Settings.model_fields}
    paths = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(p for p in (REPO / "deploy").rglob("*") if p.is_file())]
    for path in paths:
        for name in re.findall(r"HOTLINE_([A-Z0-9_]*[A-Z0-9])", path.read_text(encoding="utf-8", errors="replace")):
            assert name in settings or name in NOT_SETTINGS, f"{path.relative_to(REPO)}: HOTLINE_{name}"


def test_readme_opens_with_the_two_commands() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    block = lines[lines.index("```bash") + 1: lines.index("```bash") + 3]
    assert block[0].startswith("bash scripts/demo.sh") and block[1].startswith("bash scripts/test.sh")
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_routing_doc_lists_every_standard_unit_rule() -> None:
    from services.domain.routing import Router

    doc = (REPO / "docs" / "routing.md").read_text(encoding="utf-8")
    router = Router.load()
    for jurisdiction in ("qingpu", "chongming", "changning", "zhalantun"):
        for rule in router.rulebook(jurisdiction).rules:
            if rule.standard_unit:
                assert f"`{rule.id}` → {rule.lead}" in doc, rule.id
