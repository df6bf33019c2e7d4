"""Objects every session of a running app shares, each made once: galleries and built searchers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class SharedObjects:
    """A bounded map of shared objects, each made once per key even when sessions ask at the same time.

    The slow ``make`` (embedding a gallery) runs under a per-key lock, not the map's
    lock: two sessions wanting the same searcher wait for one build; sessions
    wanting different ones do not wait for each other.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[Hashable, threading.Lock] = {}

    def peek(self, key: Hashable) -> object | None:
        with self._lock:
            return self._items.get(key)

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._making.setdefault(key, threading.Lock())
        with key_lock:
            found = self.peek(key)
            if found is not None:
                return found
            value = make()
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
                self._making.pop(key, None)
            return value
