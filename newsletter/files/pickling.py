"""Pickling frozen dataclasses cheaply: what crosses the pipes to and from the rendering
workers, and the profile cache."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

_Class = TypeVar("_Class", bound=type)


def pickled_as_tuple(cls: _Class) -> _Class:
    """Pickle a frozen dataclass as its class and field values: what the rendering workers
    send back crosses a pipe 20,000 times a run, and dataclasses' own ``__setstate__`` of a
    slotted class (``fields()`` each time) was ~1 s of the parent's CPU (bench/pipeline.py).
    Fields not passed to ``__init__`` are made again by it."""
    names = [f.name for f in fields(cls) if f.init]
    values: Callable[[Any], Any] = operator.attrgetter(*names)
    if len(names) == 1:  # (attrgetter of one name gives the value itself)
        values = lambda self: (getattr(self, names[0]),)  # noqa: E731

    def __reduce__(self: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign,assignment]
    return cls
