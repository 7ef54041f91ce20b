"""``stream`` (the run-by-run merge read from the files) gives exactly the lines of ``merge`` (the in-memory sort,
the order the replay had before it streamed its input, kept here as the reference)."""

from __future__ import annotations

import gc
import os
import tempfile
import warnings
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.replay import inputs
from services.replay.inputs import Line, Merged, _runs, read_lines, stream


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


BASE = datetime(2025, 5, 6, 9, 0, tzinfo=UTC)
ZONES = [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))]


def _event(minute: int, zone: timezone, z: bool = False, micro: int = 0) -> bytes:
    at = (BASE + timedelta(minutes=minute, microseconds=micro)).astimezone(zone).isoformat()
    if z and zone is UTC:
        at = at.replace("+00:00", "Z")
    return b'{"event_id": "E-%d", "occurred_at": "%s"}' % (minute, at.encode())


# a few minutes only, so that equal instants (in several zones, in both files) are common
timed = st.builds(_event, st.integers(-3, 12), st.sampled_from(ZONES), st.booleans(),
                  st.sampled_from([0, 0, 1, 999999]))
untimed = st.sampled_from([
    b"", b"   ", b"\r", b"\t",  # blank
    b"not json", b'{"occurred_at": "2025-05-06T09:', b"{" * 40, b"\xff\xfe\x00", b'"a string"', b"[1, 2]",  # broken
    b'{"event_id": "E-x"}', b'{"occurred_at": null}', b'{"occurred_at": 1746500000}',  # no readable occurred_at
    b'{"occurred_at": "yesterday"}', b'{"occurred_at": "2025-05-06T09:00:00"}',  # unreadable, naive
    b'{"occurred_at": "2025-05-06T09:00:00+08:00"',  # truncated after a valid time
])


@st.composite
def file_bytes(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.one_of(timed, timed, untimed), max_size=40))
    if draw(st.booleans()):  # sorted by time (long runs), the unreadable lines where they fell
        times = {line: at for line in lines if (at := inputs.occurred_at(line)) is not None}
        order = iter(sorted((line for line in lines if line in times), key=times.__getitem__))
        lines = [next(order) if line in times else line for line in lines]
    ends = [draw(st.sampled_from([b"\n", b"\r\n"])) for _ in lines]
    data = b"".join(line + end for line, end in zip(lines, ends))
    if lines and draw(st.booleans()):
        data = data[: -len(ends[-1])]  # no newline after the last line
    return data


def _write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def _expected(*sources: tuple[Path, str]) -> list[inputs.Line]:
    return merge(*(read_lines(p, s) for p, s in sources))


@settings(max_examples=400, deadline=None)
@given(events=file_bytes(), updates=file_bytes(), cap=st.sampled_from([64, 64, 1, 2, 3]))
def test_stream_is_merge(events: bytes, updates: bytes, cap: int) -> None:
    with tempfile.TemporaryDirectory() as d, mock.patch.object(inputs, "MAX_RUNS_PER_FILE", cap):
        sources = [(_write(Path(d), "events.jsonl", events), "events"),
                   (_write(Path(d), "updates.jsonl", updates), "updates")]
        merged = stream(*sources)
        assert merged.counts == {"events": len(read_lines(*sources[0])), "updates": len(read_lines(*sources[1]))}
        assert list(merged) == _expected(*sources)
        # the same with the updates first: the stream index breaks ties between equal times
        assert list(stream(*reversed(sources))) == _expected(*reversed(sources))


def test_counts_follow_merge_edge_cases(tmp_path: Path) -> None:
    cases = {"empty": b"", "newline": b"\n", "two_blank": b"\n\n", "no_final_newline": b"a\nb", "crlf": b"a\r\n\r\n"}
    for name, data in cases.items():
        path = _write(tmp_path, name, data)
        merged = stream((path, name))
        assert merged.counts == {name: len(read_lines(path, name))}
        assert list(merged) == merge(read_lines(path, name))
    assert stream((tmp_path / "empty", "a"), (tmp_path / "crlf", "a")).counts == {"a": 2}  # shared name: summed


def test_runs_split_where_the_time_goes_back(tmp_path: Path) -> None:
    lines = [_event(m, UTC) for m in (1, 2, 3)]
    sorted_file = _write(tmp_path, "sorted.jsonl", b"broken\n" + b"\n".join(lines) + b"\n")
    assert _runs(sorted_file, 64) == (4, [inputs._Run(0, 1)])

    # one late line (minute 0 after minute 3) starts a second run; the broken line after it stays in that run
    late = [lines[0], lines[1], lines[2], _event(0, ZONES[1]), b"{broken", _event(4, UTC)]
    path = _write(tmp_path, "late.jsonl", b"\n".join(late))
    count, runs = _runs(path, 64)
    assert count == 6 and runs is not None
    assert runs == [inputs._Run(0, 1), inputs._Run(sum(len(line) + 1 for line in late[:3]), 4)]
    # one early line (minute 9 among minutes 1..4): a line that jumps ahead also splits once
    early = [lines[0], _event(9, UTC), lines[1], lines[2]]
    count, runs = _runs(_write(tmp_path, "early.jsonl", b"\n".join(early) + b"\n"), 64)
    assert count == 4 and runs is not None and [r.number for r in runs] == [1, 3]
    # descending: a run per line, and above the cap no runs at all, only the count
    down = _write(tmp_path, "down.jsonl", b"\n".join(_event(m, UTC) for m in range(10, 0, -1)))
    assert len(_runs(down, 64)[1] or []) == 10
    assert _runs(down, 10)[0] == 10 and _runs(down, 9) == (10, None)
    assert _runs(_write(tmp_path, "empty.jsonl", b""), 64) == (0, [])


def test_above_the_cap_one_file_is_sorted_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    down = _write(tmp_path, "events.jsonl", b"\n".join(_event(m, ZONES[1]) for m in range(12, -3, -1)) + b"\nbad\n")
    up = _write(tmp_path, "updates.jsonl", b"\r\n".join(_event(m, UTC, z=True) for m in (-1, 0, 0, 5, 4, 11)))
    sources = [(down, "events"), (up, "updates")]
    read = []
    real = inputs.read_lines
    monkeypatch.setattr(inputs, "read_lines", lambda p, s: read.append(p.name) or real(p, s))
    monkeypatch.setattr(inputs, "MAX_RUNS_PER_FILE", 3)
    merged = stream(*sources)
    assert merged.counts == {"events": 16, "updates": 6}
    assert list(merged) == _expected(*sources)
    assert read == ["events.jsonl"]  # the updates (2 runs) are still read run by run

    read.clear()
    monkeypatch.setattr(inputs, "MAX_RUNS_PER_FILE", 64)
    assert list(stream(*sources)) == _expected(*sources) and read == []


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_files_are_closed_when_the_iteration_ends_or_stops(tmp_path: Path) -> None:
    data = b"\n".join(_event(m, UTC) for m in (5, 6, 1, 2, 0, 9))  # 3 runs
    path = _write(tmp_path, "events.jsonl", data)
    other = _write(tmp_path, "updates.jsonl", b"\n".join(_event(m, UTC) for m in (3, 4)))
    sources = [(path, "events"), (other, "updates")]
    before = _open_fds()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        merged = stream(*sources)
        assert _open_fds() == before  # the first pass closed its handles
        assert next(merged).number == 5
        assert _open_fds() == before + 4  # a handle per run
        merged.close()
        assert _open_fds() == before
        with pytest.raises(StopIteration):
            next(merged)

        assert len(list(stream(*sources))) == 8 and _open_fds() == before

        with stream(*sources) as lines:
            for _ in lines:
                break
        assert _open_fds() == before

        lines = iter(Merged(*sources))
        next(lines)
        del lines
        gc.collect()
        assert _open_fds() == before


def test_a_file_that_shrinks_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.jsonl", b"\n".join(_event(m, UTC) for m in (1, 2, 3)) + b"\n")
    merged = stream((path, "events"))
    path.write_bytes(_event(1, UTC) + b"\n")
    with pytest.raises(RuntimeError, match="changed"):
        list(merged)
