"""Deleted calendars at serving time: a model trained before a calendar was deleted never answers
with it.

``DELETE /v1/users/{userId}/calendars/{calendarId}`` (:mod:`calroute.services.lifecycle`) writes a
tombstone ``CALDEL#<calendarId>`` with ``removed_at`` and queues a retrain; until the new model is
active, the old one still has the calendar among its labels. :func:`serving_view` wraps such a model
so that its probabilities over the deleted calendars are dropped and the rest renormalised (each row
sums to 1 again): the calendar is never the answer, never an alternative, never a candidate offered
to the LLM, and the routing threshold applies to the renormalised confidence. A model trained after
the deletion is served as it is (a calendar created again under the same id is a new calendar).

:class:`LifecycleDirectory` is the predict service's :class:`~calroute.calendars.CalendarDirectory`
with the tombstones cached alongside the calendar list, but re-read every
:data:`REMOVED_CHECK_SECONDS` (1 s) rather than every ``MODEL_REVALIDATE_SECONDS``: one consistent
Query of the ``CALDEL#`` items per user and second, in a container that serves that user (on a hit
inside the second, nothing: the hot path is a dict lookup). The lifecycle service answers a calendar
DELETE only once that interval has passed since the tombstone was written
(:meth:`~calroute.services.lifecycle.LifecycleService.delete_calendar`), so from the moment the
DELETE answers, every predict container's view holds the tombstone: no container answers with the
calendar, whichever served the DELETE (docs/security.md, "Deleting"). When the tombstones change,
the cached calendar list is dropped too (re-read with them). ``forget(user)`` drops both (the
lifecycle service calls it in its own container through :mod:`calroute.forget`). numpy only; no I/O
here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Optional

import numpy as np

from .calendars import CalendarDirectory
from .forget import REMOVED_CHECK_SECONDS


def version_time(version: Optional[str]) -> Optional[datetime]:
    """When a version was trained: ``v<YYYYmmddHHMMSS>-<hex>`` → UTC datetime (None if unparsable)."""
    if not version or not version.startswith("v"):
        return None
    try:
        return datetime.strptime(version[1:15], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _at(value: str) -> Optional[datetime]:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def dropped_labels(labels: list[str], version: Optional[str], removed: dict[str, str]) -> set[str]:
    """The model's labels deleted after it was trained (all tombstoned labels when the version's time
    is unknown: when in doubt, never answer with a deleted calendar)."""
    if not removed or removed.keys().isdisjoint(labels):  # the hot path: no strptime per request
        return set()
    trained = version_time(version)
    out = set()
    for lab in labels:
        if lab in removed:
            at = _at(removed[lab])
            if trained is None or at is None or trained <= at:
                out.add(lab)
    return out


class RestrictedModel:
    """A served model without some of its labels: ``labels`` and ``predict_proba`` columns are the
    kept ones (rows renormalised); everything else is the wrapped model's."""

    def __init__(self, model: Any, keep: list[int]):
        self._model = model
        self._keep = np.asarray(keep, dtype=np.intp)
        self.labels = [model.labels[i] for i in keep]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return renormalise(self._model.predict_proba(X), self._keep)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def renormalise(probs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The ``keep`` columns of ``probs``, each row rescaled to sum to 1 (uniform when a row had no
    mass left on them)."""
    p = np.asarray(probs, dtype=np.float32)[:, keep]
    total = p.sum(axis=1, keepdims=True)
    uniform = np.full_like(p, 1.0 / max(p.shape[1], 1))
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform).astype(np.float32)


def serving_view(model: Any, version: Optional[str], directory: Any, user_id: str) -> Any:
    """``model`` as the predict service may use it: unchanged when none of its calendars was
    deleted after its training, a :class:`RestrictedModel` without them, or None when every one of
    its calendars was deleted (then no model answers)."""
    if model is None:
        return None
    removed_of = getattr(directory, "removed", None)
    if removed_of is None:
        return model
    drop = dropped_labels(model.labels, version, removed_of(user_id))
    if not drop:
        return model
    keep = [i for i, lab in enumerate(model.labels) if lab not in drop]
    return RestrictedModel(model, keep) if keep else None


class LifecycleDirectory(CalendarDirectory):
    """The user's calendars (``ttl``) and their deleted-calendar tombstones (``removed_ttl``,
    :data:`REMOVED_CHECK_SECONDS`), cached per container."""

    def __init__(self, fetch: Callable[[str], list], fetch_removed: Callable[[str], dict], *,
                 removed_ttl: float = REMOVED_CHECK_SECONDS, **kw: Any):
        super().__init__(fetch, **kw)
        kw.pop("ttl", None)
        self._tombstones = CalendarDirectory(lambda u: sorted(fetch_removed(u).items()), ttl=removed_ttl, **kw)
        self._seen: dict[str, list] = {}  # the tombstones the cached calendar list was read with

    def get(self, user_id: str) -> list:
        """The calendar list, read again when the user's tombstones changed since it was read."""
        tomb = self._tombstones.get(user_id)
        if self._seen.get(user_id) != tomb:
            super().forget(user_id)
            cals = super().get(user_id)
            self._seen[user_id] = tomb
            if len(self._seen) > 2 * self.max_users:
                self._seen.clear()
            return cals
        return super().get(user_id)

    def removed(self, user_id: str) -> dict[str, str]:
        """``{calendar_id: removed_at}`` (a failed read keeps the last known answer)."""
        return dict(self._tombstones.get(user_id))

    def forget(self, user_id: str) -> None:
        super().forget(user_id)
        self._tombstones.forget(user_id)
        self._seen.pop(user_id, None)


__all__ = ["REMOVED_CHECK_SECONDS", "version_time", "dropped_labels", "RestrictedModel", "renormalise", "serving_view", "LifecycleDirectory"]
