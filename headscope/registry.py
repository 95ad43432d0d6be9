"""`Registry[T]`: named variants (locality modes, schedules, tasks, strategies, tabs, models, ...).

One behaviour everywhere, as SAELens registers SAE architectures: registering a name twice is a bug and raises;
looking up an unknown name is the user's mistake and raises an `InputError` that lists the known names. A registry
is a read-only `Mapping`, so `name in R`, `list(R)`, `R[name]` and `R.items()` work as on a dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from headscope.errors import InputError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # what a name names, for messages: "locality mode", "strategy", ...
        self._items: dict[str, T] = {}

    def add(self, name: str, value: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = value
        return value

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form: `@REGISTRY.register("name")`."""

        def deco(value: T) -> T:
            return self.add(name, value)

        return deco

    def check(self, name: object, *, field: str | None = None) -> str:
        """`name` itself if registered, else an InputError naming the field and the known names."""
        if not isinstance(name, str) or name not in self._items:
            label = field or self.kind
            raise InputError(f"{label} must be one of {', '.join(self._items)}, got {name!r}")
        return name

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise InputError(f"unknown {self.kind} {name!r}; known: {', '.join(self._items)}") from None

    def get(self, name: str, default: T | None = None) -> T | None:  # type: ignore[override]
        return self._items.get(name, default) if isinstance(name, str) else default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
