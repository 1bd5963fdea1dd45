"""Per-container caches that must forget a user at once when their data is deleted or erased.

The predict service's model cache and calendar directory register here when they are built
(:func:`calroute.wiring.predict_service`); :func:`forget_user` (called by
:mod:`calroute.services.lifecycle` after a calendar deletion or an erasure) makes every live one in
this process drop the user. Caches in other containers notice on their next revalidation
(``MODEL_REVALIDATE_SECONDS``): the ACTIVE pointer is gone, the calendar list changed.

Registration is weak: a cache that is no longer used is not kept alive by this module.

:data:`REMOVED_CHECK_SECONDS` is how stale another container's view of a user's deleted-calendar
tombstones may be (:class:`calroute.removed.LifecycleDirectory`); the calendar DELETE waits out what
is left of it before answering. It lives here, numpy-free, because the data function (no numpy)
needs it too.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

#: How stale a predict container's view of the deleted-calendar tombstones may be (seconds).
REMOVED_CHECK_SECONDS = 1.0

_live: "weakref.WeakSet[Any]" = weakref.WeakSet()
_lock = threading.Lock()


def register(cache: Any) -> Any:
    """Track ``cache`` (anything with ``invalidate(user)`` or ``forget(user)``); returns it."""
    with _lock:
        _live.add(cache)
    return cache


def forget_user(user_id: str) -> int:
    """Make every registered cache of this process drop ``user_id``; returns how many were told."""
    with _lock:
        caches = list(_live)
    for c in caches:
        drop = getattr(c, "invalidate", None) or getattr(c, "forget")
        drop(user_id)
    return len(caches)


__all__ = ["REMOVED_CHECK_SECONDS", "register", "forget_user"]
