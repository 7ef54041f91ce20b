"""Reading replay input files and merging the two streams by ``occurred_at`` (``stream``).

The order: by the time of each line; a line without a readable time keeps its place after the line before it in
its own file (its key is the last readable time before it there), so a broken line is still processed (and
rejected) where it stood; at the same time, the events file before the updates file, then by line number."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, NamedTuple, Self

from schemas.common import in_service_years
from services.domain.validation import parse_json


class Line(NamedTuple):
    stream: str  # "events" | "updates" | "rulings"
    path: str
    number: int  # 1-based line number
    raw: bytes
    at: datetime | None  # occurred_at, when it could be read


def occurred_at(raw: bytes) -> datetime | None:
    """The line's time, if it is one the contracts accept (with a UTC offset, in their years); otherwise None,
    and the line, which validation will reject, does not move the replay's clock."""
    try:
        value = parse_json(raw).get("occurred_at")
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except (ValueError, AttributeError, TypeError, RecursionError):
        return None
    if moment is None or moment.tzinfo is None or not in_service_years(moment):
        return None
    return moment


def read_lines(path: Path, stream: str) -> list[Line]:
    data = path.read_bytes()
    chunks = data.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()  # the newline that ends the last line is not another line
    return [Line(stream, path.name, i, chunk.rstrip(b"\r"), occurred_at(chunk)) for i, chunk in enumerate(chunks, 1)]


# --- streaming merge --------------------------------------------------------------------------------------------

MAX_RUNS_PER_FILE = 64  # above this many sorted runs, a file is sorted in memory instead (see ``Merged``)
_BUFFER = 1 << 16  # bytes read at a time by each open handle

_Key = tuple[float, int, int]  # (last readable time's timestamp or -inf, stream index, line number)


class _Run(NamedTuple):
    """Where a stretch of a file whose keys do not decrease starts. A run starts at the first line or at a line
    whose time is readable (only a readable time can make the key go down), so no time is carried into it."""

    offset: int  # byte offset of its first line
    number: int  # 1-based line number of its first line


def _runs(path: Path, cap: int) -> tuple[int, list[_Run] | None]:
    """One streaming pass over ``path``: its number of lines, and its natural runs (the lines split where the key
    decreases), or None when it has more than ``cap`` runs (the rest of the file is then only counted)."""
    runs: list[_Run] = []
    last = float("-inf")
    offset = number = 0
    with path.open("rb", buffering=_BUFFER) as f:
        for chunk in f:
            number += 1
            at = occurred_at(chunk[:-1] if chunk.endswith(b"\n") else chunk)
            key = at.timestamp() if at is not None else last
            if number == 1 or key < last:
                if len(runs) == cap:
                    return number + sum(1 for _ in f), None
                runs.append(_Run(offset, number))
            last = key
            offset += len(chunk)
    return number, runs


def _keyed(lines: Iterable[Line], order: int) -> Iterator[tuple[_Key, Line]]:
    """The lines of stream number ``order`` with their keys; ``lines`` start at line 1 or at a readable time."""
    last = float("-inf")
    for line in lines:
        if line.at is not None:
            last = line.at.timestamp()
        yield (last, order, line.number), line


def _run_lines(f: BinaryIO, stream: str, name: str, run: _Run, count: int) -> Iterator[Line]:
    """The ``count`` lines of one run, read from ``f`` (a handle of its own)."""
    f.seek(run.offset)
    for number in range(run.number, run.number + count):
        chunk = f.readline()
        if not chunk:
            raise RuntimeError(f"{name} ended at line {number}, before the {run.number + count - 1} lines it had: "
                               "the file changed while it was replayed")
        if chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        yield Line(stream, name, number, chunk.rstrip(b"\r"), occurred_at(chunk))


def _sorted_lines(path: Path, order: int, stream: str) -> list[tuple[_Key, Line]]:
    """The fallback for a file with too many runs: all its lines in memory, sorted by key."""
    return sorted(_keyed(read_lines(path, stream), order), key=itemgetter(0))


class Merged(Iterator[Line]):
    """The lines of the ``(path, stream name)`` sources, in the order of their keys (the module's docstring), read
    from the files as they are consumed.

    Construction reads each file once, line by line, to find its natural runs (stretches where the key does not
    decrease) and count its lines: ``counts`` (stream name -> lines, summed if two sources
    share a name; 0 for an empty file) is complete as soon as the object exists. Iterating reads each file a
    second time: every run through a handle of its own, and ``heapq.merge`` interleaves the runs. Keys are
    unique (stream index, line number) and each run is sorted by them, so this k-way merge gives the same
    sequence as a sort of all the lines by key (the tests compare the two). Memory holds one line per run, and the run offsets.

    A file with more than ``MAX_RUNS_PER_FILE`` runs (badly out of order) would need that many open handles:
    that file is read whole with ``read_lines`` and sorted in memory instead, when the iteration starts, so
    memory is then proportional to that file; it is still merged lazily with the others.

    Files are closed when the iteration ends, when ``close()`` is called (or the ``with`` block exits), or when
    the iterator is garbage collected. The files must not change between construction and the end of the
    iteration (a file found shorter raises RuntimeError)."""

    def __init__(self, *sources: tuple[Path, str]) -> None:
        self.counts: dict[str, int] = {}
        self._plans: list[tuple[Path, str, int, list[_Run] | None]] = []
        for path, name in sources:
            lines, runs = _runs(path, MAX_RUNS_PER_FILE)
            self.counts[name] = self.counts.get(name, 0) + lines
            self._plans.append((path, name, lines, runs))
        self._lines = self._merge()

    def _merge(self) -> Iterator[Line]:
        with ExitStack() as stack:
            parts: list[Iterable[tuple[_Key, Line]]] = []
            for order, (path, name, lines, runs) in enumerate(self._plans):
                if runs is None:
                    parts.append(_sorted_lines(path, order, name))
                    continue
                ends = [run.number for run in runs[1:]] + [lines + 1]
                for run, end in zip(runs, ends):  # a run starts at line 1 or at a readable time (``_Run``)
                    f = stack.enter_context(path.open("rb", buffering=_BUFFER))
                    parts.append(_keyed(_run_lines(f, name, path.name, run, end - run.number), order))
            for _, line in heapq.merge(*parts, key=itemgetter(0)):
                yield line

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Line:
        return next(self._lines)

    def close(self) -> None:
        """Stop early: close the files now."""
        self._lines.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream(*sources: tuple[Path, str]) -> Merged:
    """``Merged(*sources)``: iterate it for the lines in order; ``.counts`` has each stream's lines."""
    return Merged(*sources)
