"""Reading replay input files and merging the two streams by ``occurred_at``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from services.domain.validation import parse_json


class Line(NamedTuple):
    stream: str  # "events" | "updates"
    path: str
    number: int  # 1-based line number
    raw: bytes
    at: datetime | None  # occurred_at, when it could be read


def _occurred_at(raw: bytes) -> datetime | None:
    try:
        value = parse_json(raw).get("occurred_at")
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except (ValueError, AttributeError, TypeError, RecursionError):
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def read_lines(path: Path, stream: str) -> list[Line]:
    data = path.read_bytes()
    chunks = data.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()  # the newline that ends the last line is not another line
    return [Line(stream, path.name, i, chunk.rstrip(b"\r"), _occurred_at(chunk)) for i, chunk in enumerate(chunks, 1)]


def merge(*streams: list[Line]) -> list[Line]:
    """Merge by occurred_at. A line without a readable time keeps its place after the line before it in its
    own file, so a broken line is still processed (and rejected) where it stood."""
    keyed = []
    for order, lines in enumerate(streams):
        last: datetime | None = None
        for line in lines:
            if line.at is not None:
                last = line.at
            keyed.append(((last.timestamp() if last else float("-inf")), order, line.number, line))
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]
