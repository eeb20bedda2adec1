"""Policies, registered by name (`--policy NAME`)."""

from __future__ import annotations

from collections.abc import Callable

from suanli.errors import UserError
from suanli.scheduling.state import Policy

_REGISTRY: dict[str, Callable[[], Policy]] = {}


def register(name: str):
    """Decorator on a policy class or factory: make it selectable by `name`."""
    def wrap(factory):
        _REGISTRY[name] = factory
        return factory
    return wrap


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def make(name: str) -> Policy:
    _load_builtins()
    if name not in _REGISTRY:
        raise UserError(f"--policy: unknown policy {name!r} (choose from {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]()


def _load_builtins() -> None:
    # each module registers its policies on import
    from suanli.scheduling.policies import baselines, fifo, optimal, suanli  # noqa: F401
