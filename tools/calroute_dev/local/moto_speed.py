"""Two costs of moto's DynamoDB that DynamoDB does not have, removed with the same answers.

Measured in the 100-user training run (docs/benchmarks.md, "Training state machine"): the handlers'
wall time was mostly the moto server answering their calls in the same process, not the handlers.

* **Query scans the whole table.** ``moto.dynamodb.models.table.Table.query`` (moto 5.2) builds
  ``all_items()`` — every item of the table, sorted — and keeps those whose hash key matches: a query
  for one user's ~80 events walked every user's events (hundreds of ms per call once a few hundred
  users are in the table; DynamoDB reads one partition). :func:`install` makes a query on the table
  itself (not on an index) hand moto only that partition's items: the same items, which moto then
  sorts, pages, filters and projects exactly as before. Index queries are untouched.
* **Responses are serialized attribute by attribute through the service model.** moto 5.2's generic
  JSON serializer resolves every member of every ``AttributeValue`` through its attribute picker
  (several candidate spellings per member): ~50 ms for one registry record, ~100 ms for a user's
  events. :class:`FastDynamoJSONSerializer` writes an ``AttributeValue`` (and whatever it nests) directly
  in DynamoDB's wire format — ``S``/``N`` as strings, ``B``/``BS`` base64, ``SS``/``NS`` lists of
  strings, ``M``/``L`` recursively, ``BOOL``/``NULL`` as they are — and hands anything else (or a
  value it does not recognise) to moto's serializer. ``tests/unit/test_moto_speed.py`` checks the
  output is byte-identical to moto's on every attribute type.

Both patches are process-global (like moto's state); the last :func:`uninstall` of as many as there
were :func:`install` calls restores moto. The emulator
(:mod:`calroute_dev.local.moto_server`) installs them on start. Nothing here is shipped in a layer.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

_LOCK = threading.Lock()
_ORIGINAL: dict[str, Any] = {}
_USERS = [0]  # install() calls not yet undone: two emulators in one process share the patches
_PARTITION = threading.local()  # (table id, hash key) of the table query running in this thread


class _NotAnAttributeValue(Exception):
    pass


def _b64(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray)):
        raise _NotAnAttributeValue
    return base64.b64encode(value).strip().decode("utf-8")


def _string(value: Any) -> str:
    if value is None or value == {} or value == []:  # moto keeps these as they are: not ours
        raise _NotAnAttributeValue
    return str(value)


def attribute_value(value: Any) -> dict:
    """``value`` (moto's ``{type: value}`` of one attribute, binaries as bytes) in DynamoDB's JSON
    wire format. Raises :class:`_NotAnAttributeValue` for anything but exactly one known type key."""
    if not isinstance(value, dict) or len(value) != 1:
        raise _NotAnAttributeValue
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return {kind: _string(inner)}
    if kind in ("BOOL", "NULL"):
        if not isinstance(inner, bool):
            raise _NotAnAttributeValue
        return {kind: inner}
    if kind == "M":
        if not isinstance(inner, dict):
            raise _NotAnAttributeValue
        return {kind: {str(k): attribute_value(v) for k, v in inner.items()}}
    if not isinstance(inner, (list, tuple)):
        if kind == "B":
            return {kind: _b64(inner)}
        raise _NotAnAttributeValue
    if kind == "L":
        return {kind: [attribute_value(v) for v in inner]}
    if kind in ("SS", "NS"):
        return {kind: [_string(v) for v in inner]}
    if kind == "BS":
        return {kind: [_b64(v) for v in inner]}
    raise _NotAnAttributeValue


def _serializer_class():
    from moto.core.serialize import JSONSerializer

    class FastDynamoJSONSerializer(JSONSerializer):
        """moto's JSON serializer, with ``AttributeValue`` shapes written directly (see the module)."""

        def _serialize_type_structure(self, serialized, value, shape, key):  # noqa: ANN001 - moto's
            if shape.name == "AttributeValue" and key:
                try:
                    fast = attribute_value(value)
                except _NotAnAttributeValue:
                    pass
                else:
                    self._default_serialize(serialized, fast, shape, key)
                    return
            super()._serialize_type_structure(serialized, value, shape, key)

    return FastDynamoJSONSerializer


def _patched_query(original):
    def query(self, hash_key, *args, **kwargs):  # noqa: ANN001 - moto's signature
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name or hash_key is None:
            return original(self, hash_key, *args, **kwargs)
        _PARTITION.key = (id(self), hash_key)
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            _PARTITION.key = None

    return query


def _patched_all_items(original):
    def all_items(self):  # noqa: ANN001 - moto's signature
        key = getattr(_PARTITION, "key", None)
        if key is None or key[0] != id(self):
            return original(self)
        hash_key = key[1]
        if hash_key not in self.items:
            return []
        part = self.items[hash_key]
        items = list(part.values()) if self.range_key_attr else [part]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    return all_items


def install() -> None:
    """Patch moto (idempotent): partition-only table queries, direct AttributeValue serialization."""
    from moto.core import serialize
    from moto.dynamodb.models.table import Table

    with _LOCK:
        _USERS[0] += 1
        if _ORIGINAL:
            return
        _ORIGINAL["query"] = Table.__dict__["query"]
        _ORIGINAL["all_items"] = Table.__dict__["all_items"]
        _ORIGINAL["serializers"] = serialize.SERVICE_SPECIFIC_SERIALIZERS.get("dynamodb")
        Table.query = _patched_query(_ORIGINAL["query"])  # type: ignore[method-assign]
        Table.all_items = _patched_all_items(_ORIGINAL["all_items"])  # type: ignore[method-assign]
        serialize.SERVICE_SPECIFIC_SERIALIZERS["dynamodb"] = {
            **(_ORIGINAL["serializers"] or {}), "json": _serializer_class()}


def uninstall() -> None:
    """Undo one :func:`install`; moto is restored when the last one is undone."""
    from moto.core import serialize
    from moto.dynamodb.models.table import Table

    with _LOCK:
        _USERS[0] = max(0, _USERS[0] - 1)
        if not _ORIGINAL or _USERS[0]:
            return
        Table.query = _ORIGINAL.pop("query")  # type: ignore[method-assign]
        Table.all_items = _ORIGINAL.pop("all_items")  # type: ignore[method-assign]
        previous = _ORIGINAL.pop("serializers")
        if previous is None:
            serialize.SERVICE_SPECIFIC_SERIALIZERS.pop("dynamodb", None)
        else:
            serialize.SERVICE_SPECIFIC_SERIALIZERS["dynamodb"] = previous


def installed() -> bool:
    return bool(_ORIGINAL)


__all__ = ["attribute_value", "install", "uninstall", "installed"]
