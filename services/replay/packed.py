"""A dict of replay states in which settled ones are kept packed (as their JSON).

Most tickets of a long history are closed (archived after the callback), redirected or waiting at the triage desk:
nothing the replay's clock does changes them, and only a late input (a redelivered update, a repeat report) reads
them again. As pydantic objects a settled ticket's state takes about 10 KB of memory and its routing record about
4 KB; as JSON 1.6 and 0.8 KB (``benchmarks/replay_throughput.py --breakdown``).

``pack`` turns a stored state into bytes; reading it (``[]``, ``get``, ``values``, ``items``) gives the state back,
equal to what was packed; storing a state again keeps it unpacked until the next ``pack``. The order of the keys is
the order in which they were first stored, as in a dict.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Generic, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


class PackedStates(MutableMapping[str, M], Generic[M]):
    def __init__(self, model: type[M]) -> None:
        self._model = model
        self._items: dict[str, M | bytes] = {}
        self.packed = 0  # how many are packed now

    def pack(self, key: str) -> None:
        """Keep the state under ``key`` (if any) as its JSON until it is stored again."""
        item = self._items.get(key)
        if item is not None and not isinstance(item, bytes):
            self._items[key] = item.__pydantic_serializer__.to_json(item)  # model_dump_json(), as bytes
            self.packed += 1

    def is_packed(self, key: str) -> bool:
        return isinstance(self._items.get(key), bytes)

    def _unpacked(self, item: M | bytes) -> M:
        if isinstance(item, bytes):
            return self._model.model_validate_json(item)
        return item

    def __getitem__(self, key: str) -> M:
        return self._unpacked(self._items[key])

    def get(self, key: str, default: M | None = None) -> M | None:  # type: ignore[override]
        item = self._items.get(key)
        return default if item is None else self._unpacked(item)

    def __setitem__(self, key: str, value: M) -> None:
        if isinstance(self._items.get(key), bytes):
            self.packed -= 1
        self._items[key] = value

    def __delitem__(self, key: str) -> None:
        if isinstance(self._items.pop(key), bytes):
            self.packed -= 1

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
