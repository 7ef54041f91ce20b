"""An append-only list of replay outputs (work orders, escalations, …) kept as JSON lines in a temporary file.

A replay of a long history produces millions of outputs; as pydantic objects they took several kilobytes each in
memory (``docs/performance.md``, section 1). A ``Spool`` writes each one as its JSON line to an unnamed temporary
file when it is appended and keeps only where it ends (8 bytes) and, when the spool has a sort key, that key.
Iterating reads the models back in the order they were appended; ``sorted_lines`` gives the JSON lines in key
order for the output files, without parsing them again.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from array import array
from collections.abc import Callable, Iterator
from typing import IO, Generic, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_BLOCK = 1 << 20  # bytes read at a time when iterating
_PENDING = 4096  # lines gathered before one write to the file


class Spool(Generic[M]):
    """``append``, ``extend``, ``len``, iteration and ``[i]``, like the list it replaces; items are ``model`` instances,
    read back equal to what was appended (the JSON round trip of the wire contracts, as on the topics)."""

    def __init__(self, model: type[M], key: Callable[[M], tuple[object, ...]] | None = None) -> None:
        self._model = model
        self._key = key
        self._keys: list[tuple[object, ...]] = []
        self._ends = array("Q")  # byte offset after each item's line
        self._end = 0
        self._pending: list[bytes] = []  # lines not written to the file yet
        self._file: IO[bytes] | None = None

    def _written(self) -> IO[bytes] | None:
        """The file, with every appended line in it (None while nothing was appended)."""
        if self._pending:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="hotline-replay-")
                weakref.finalize(self, self._file.close)  # no ResourceWarning when the spool is dropped
            self._file.writelines(self._pending)
            self._file.flush()
            self._pending.clear()
        return self._file

    def append(self, item: M) -> None:
        line = item.__pydantic_serializer__.to_json(item) + b"\n"  # model_dump_json(), as bytes
        self._pending.append(line)
        self._end += len(line)
        self._ends.append(self._end)
        if self._key is not None:
            self._keys.append(self._key(item))
        if len(self._pending) >= _PENDING:
            self._written()

    def extend(self, items: list[M]) -> None:
        for item in items:
            self.append(item)

    def __len__(self) -> int:
        return len(self._ends)

    def __bool__(self) -> bool:
        return bool(self._ends)

    def _line(self, fd: int, i: int) -> bytes:
        """Item ``i``'s JSON line, without its newline, from the file (``_written``)."""
        start = self._ends[i - 1] if i else 0
        return os.pread(fd, self._ends[i] - start - 1, start)

    def __getitem__(self, index: int) -> M:
        """The item at ``index`` (negative from the end), read back from the file."""
        i = range(len(self._ends))[index]  # IndexError as a list raises it
        file = self._written()
        assert file is not None  # there is an item, so it was written
        return self._model.model_validate_json(self._line(file.fileno(), i))

    def __iter__(self) -> Iterator[M]:
        validate = self._model.model_validate_json
        for line in self.lines():
            yield validate(line)

    def lines(self) -> Iterator[bytes]:
        """The JSON lines (without their newline), in the order they were appended."""
        file = self._written()
        if file is None:
            return
        fd, end, offset, rest = file.fileno(), self._end, 0, b""
        while offset < end:
            block = os.pread(fd, min(_BLOCK, end - offset), offset)
            offset += len(block)
            *complete, rest = (rest + block).split(b"\n")
            yield from complete

    def sorted_lines(self) -> Iterator[bytes]:
        """The JSON lines in the order of the spool's key (ties: the order they were appended)."""
        if self._key is None:
            raise TypeError("this spool has no sort key")
        file = self._written()
        if file is None:
            return
        fd = file.fileno()
        for i in sorted(range(len(self._ends)), key=self._keys.__getitem__):
            yield self._line(fd, i)
