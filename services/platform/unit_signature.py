"""A unit's signature on its updates (签收, 退单, 办结, 延期).

Every unit's system writes the same updates topic and the ``unit`` field is what the sender writes, so without a
signature one unit's system can acknowledge, return or close a ticket in another unit's name. With
``HOTLINE_UNIT_KEYS_FILE`` set, each unit listed in that file signs its updates with two Kafka headers:
``hotline_unit``, its code as in the rulebooks (``qingpu.cgzf``), and ``hotline_unit_signature``, ``sha256=`` and the
hex HMAC-SHA256 of the record's value bytes under one of that unit's keys (the desk's scheme: ``desk_signature``).

The SLA worker checks in two steps, because an update can arrive before its ticket is known (it is then held):

* ``verify``, as the update comes in and again each time a held update is tried, with the keys of the moment: a
  signature must match the message under the keys of the listed unit whose code it names, and that unit must be the
  one the update names. So a unit listed while its signed updates are held loses none of them, and an update held
  with a key that has since been removed (a replaced or compromised key) is refused.
* ``for_ticket``, once the ticket is known: a signed update must come from the ticket's jurisdiction (unit names
  repeat across districts), and an update in the name of a listed unit must be signed.

A unit not listed in the file is taken on trust, so that units can be brought on one by one (its system signs first,
then it is listed); the SLA worker logs at start how many are not listed yet. The dispatch desk's steps (回访, 延期审核, 复核重办) carry the desk's signature
instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from services.domain.validation import Rejection
from services.platform.desk_signature import matches, signature, values
from services.platform.settings import MIN_DESK_KEY_LENGTH

CODE_HEADER = "hotline_unit"
HEADER = "hotline_unit_signature"
REASON = "unit_signature"
_HOW = (f"a unit listed in HOTLINE_UNIT_KEYS_FILE names its code in the header {CODE_HEADER} and signs in "
        f"{HEADER}: 'sha256=' and the hex HMAC-SHA256 of the message's bytes under one of its keys")

Headers = Iterable[tuple[str, bytes | str | None]] | None


@dataclass(frozen=True)
class UnitKeys:
    """The units that sign their updates, with their keys, and every unit of the rulebooks."""

    keys: Mapping[str, tuple[str, ...]] = field(repr=False)  # unit code -> its keys (several while one is replaced)
    units: Mapping[str, tuple[str, str]]  # code -> (jurisdiction, name), every unit and territory of the rulebooks
    codes: Mapping[tuple[str, str], str]  # (jurisdiction, name) -> code

    @classmethod
    def load(cls, path: Path, units: Mapping[str, tuple[str, str]]) -> UnitKeys:
        """Read ``path`` (YAML: unit code -> a key or a list of keys). A ValueError names the file and every problem,
        never a key."""
        where = f"HOTLINE_UNIT_KEYS_FILE={path}"
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
        except OSError as exc:
            raise ValueError(f"{where}: cannot be read ({exc.strerror})") from None
        except _Duplicate as exc:
            raise ValueError(f"{where}: {exc} (list its keys on one line: [old, new])") from None
        except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            raise ValueError(f"{where}: not a YAML document" + (f" (line {line + 1})" if line is not None else "")
                             ) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"{where}: a mapping of unit code to its keys is expected")
        problems: list[str] = []
        keys: dict[str, tuple[str, ...]] = {}
        owner: dict[str, str] = {}
        for n, (raw_code, value) in enumerate(data.items(), 1):
            code = str(raw_code)
            listed = [value] if isinstance(value, str) else value if isinstance(value, list) else None
            if listed is None or not all(isinstance(k, str) for k in listed):
                problems.append(f"{code if code in units else f'entry {n}'}: a key or a list of keys is expected")
                continue
            own = tuple(k.strip() for k in listed if k.strip())
            if code not in units:  # not echoed: a file written the wrong way round would show a key here
                problems.append(f"entry {n}: its code is not a unit or territory of the rulebooks")
                continue
            if not own:
                problems.append(f"{code}: no key")
            short = sum(len(k) < MIN_DESK_KEY_LENGTH for k in own)
            if short:
                problems.append(f"{code}: {short} of its keys are shorter than {MIN_DESK_KEY_LENGTH} characters "
                                "(make one with: openssl rand -hex 32)")
            for k in own:
                if owner.setdefault(k, code) != code:
                    problems.append(f"{code}: has the same key as {owner[k]} (each unit needs its own)")
            keys[code] = own
        if problems:
            raise ValueError(f"{where}: " + "; ".join(problems))
        return cls(keys, dict(units), {unit: code for code, unit in units.items()})

    def unlisted(self) -> list[str]:
        """Codes of the units whose updates are still taken on trust."""
        return sorted(code for code in self.units if code not in self.keys)


class _Duplicate(ValueError):
    pass


class _Loader(yaml.SafeLoader):
    """YAML's safe loader that refuses a code written twice (PyYAML keeps the last silently, which would drop the
    old key of a unit whose key is being replaced)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if not isinstance(key, str):
                continue
            if key in seen:
                raise _Duplicate(f"line {key_node.start_mark.line + 1}: {key} is listed twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def signed_headers(code: str, key: str, raw: bytes) -> list[tuple[str, bytes]]:
    """The headers with which the unit ``code`` signs ``raw``."""
    return [(CODE_HEADER, code.encode()), (HEADER, signature(key, raw))]


def new_keys_file(units: Mapping[str, tuple[str, str]]) -> str:
    """A keys file (YAML) with a new random key for every unit code, each line saying which unit it is."""
    lines = ["# HOTLINE_UNIT_KEYS_FILE: unit code (as in the rulebooks) -> its keys. Give each unit its own line;",
             "# list two keys while one is replaced. Keep this file secret (mode 0600, a Kubernetes Secret).", ""]
    for code, (jurisdiction, name) in sorted(units.items()):
        lines.append(f"{code}: [{secrets.token_hex(32)}]  # {jurisdiction} {name}")
    return "\n".join(lines) + "\n"


def write_new_keys_file(path: Path, units: Mapping[str, tuple[str, str]]) -> None:
    """Create ``path`` (never over an existing file: FileExistsError), readable by its owner only, with
    ``new_keys_file``."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as file:
        file.write(new_keys_file(units))


def _code(found: list[bytes | str | None]) -> str | None:
    """The unit code of the ``hotline_unit`` header values ``found``, when there is exactly one and it is text."""
    if len(found) != 1 or found[0] is None:
        return None
    try:
        return found[0] if isinstance(found[0], str) else bytes(found[0]).decode()
    except UnicodeDecodeError:
        return None


def _not_its_name(code: str, name: str, unit: str) -> Rejection | None:
    """The unit ``code`` (named ``name``) signed an update written in the name of ``unit``."""
    if name == unit:
        return None
    return Rejection(REASON, "unit", f"signed by {code} ({name}) but written in the name of {unit}")


def verify(unit_keys: UnitKeys | None, raw: bytes, headers: Headers, unit: str) -> Rejection | None:
    """When an update is signed by a unit listed in the keys file, the signature must match under that unit's keys
    and the unit must be the one the update names. Anything else is judged as unsigned by ``for_ticket`` (a unit's
    system signs before its unit is listed: ignored until then, checked from then on, held updates included)."""
    if unit_keys is None:
        return None
    codes, signatures = values(headers, CODE_HEADER), values(headers, HEADER)
    if not codes:  # unsigned, or a signature that names no unit: judged as unsigned once the ticket is known
        return None
    code = _code(codes)
    if code is None:
        return Rejection(REASON, CODE_HEADER, f"a signed update names its unit's code in one {CODE_HEADER} header "
                                              f"(found {len(codes)}, or a value that is not text); {_HOW}")
    keys = unit_keys.keys.get(code)
    if keys is None:  # a unit that signs before it is listed: taken as unsigned (for_ticket)
        return None
    if len(signatures) != 1 or signatures[0] is None:
        return Rejection(REASON, HEADER, f"an update signed by {code} carries {len(signatures)} signature headers "
                                         f"with a value; one is expected")
    if not matches(keys, raw, signatures[0]):
        return Rejection(REASON, HEADER, f"the signature does not match the message under the keys of {code} "
                                         f"(another key, or bytes changed after signing); {_HOW}")
    return _not_its_name(code, unit_keys.units[code][1], unit)


def for_ticket(unit_keys: UnitKeys | None, headers: Headers, jurisdiction: str, unit: str) -> Rejection | None:
    """Once the ticket is known, after ``verify`` passed the update: a signed update must come from the unit it
    names, of the ticket's jurisdiction; an update in the name of a listed unit must be signed."""
    if unit_keys is None:
        return None
    code = _code(values(headers, CODE_HEADER))
    if code is not None and code in unit_keys.keys:
        signer_jurisdiction, name = unit_keys.units[code]
        refused = _not_its_name(code, name, unit)
        if refused is None and signer_jurisdiction != jurisdiction:
            refused = Rejection(REASON, CODE_HEADER, f"signed by {code} of {signer_jurisdiction}, but the ticket is "
                                                     f"{jurisdiction}'s")
        return refused
    expected = unit_keys.codes.get((jurisdiction, unit))
    if expected is not None and expected in unit_keys.keys:
        return Rejection(REASON, HEADER, f"{unit} ({expected}) signs its updates and this one carries no valid "
                                         f"signature; {_HOW}")
    return None
