"""Handlers' services in tests: each test gets its own, bound to its moto and settings.

A handler builds its service on first use and keeps it for the container's life (a cached
``service()`` provider). Under test, :func:`fresh_services` puts a provider of the test's own in
``app.dependency_overrides`` (Powertools' seam, honoured by ``Depends`` and by
:func:`calroute.http.resolver.provided`): it builds on first use, from the settings and boto3 resources of
that moment, and keeps the service for the rest of the test; monkeypatch removes it afterwards.
:func:`current` is the service a module's routes use now.
"""

from __future__ import annotations

import functools
from typing import Any


def fresh_services(monkeypatch, *mods: Any) -> None:
    for mod in mods:
        app = getattr(mod, "app", None)
        if app is not None and hasattr(app, "dependency_overrides"):
            monkeypatch.setitem(app.dependency_overrides, mod.service, functools.cache(mod.service.__wrapped__))
        else:  # not an HTTP function (no resolver): its own cache, emptied
            mod.service.cache_clear()


def current(mod: Any) -> Any:
    """The service ``mod``'s routes use (the test's override if there is one)."""
    from calroute.http.resolver import provided

    app = getattr(mod, "app", None)
    return provided(app, mod.service) if app is not None else mod.service()
