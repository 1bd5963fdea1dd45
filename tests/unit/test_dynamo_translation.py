"""The DynamoDB adapters' error translation (:mod:`calroute.adapters.dynamo.base`): ``@translated`` on a
method and ``@translated_methods`` on a class apply the same :func:`storage_errors` (throttling that
outlived boto3's retries → :class:`ServiceUnavailable`, anything else unchanged). The moto cases for
every registry method are in tests/integration/test_registry_contract.py."""

from __future__ import annotations

import inspect

import pytest
from botocore.exceptions import ClientError

from calroute.adapters.dynamo.base import THROTTLE_CODES, translated, translated_methods
from calroute.adapters.dynamo.registry import DynamoRegistry
from calroute.adapters.dynamo.usage import DynamoUsageLedger
from calroute.errors import ServiceUnavailable


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "PutItem")


class Base:
    def inherited(self, code):
        raise _error(code)


@translated_methods
class Adapter(Base):
    def public(self, code, *, twice=False):
        """Doc kept."""
        raise _error(code)

    def returns(self, x, *, y=1):
        return (self, x, y)

    def _private(self, code):
        raise _error(code)

    @staticmethod
    def static(code):
        raise _error(code)

    @classmethod
    def klass(cls, code):
        raise _error(code)

    @property
    def prop(self):
        raise _error("ThrottlingException")

    LIMIT = 3


@pytest.mark.parametrize("code", sorted(THROTTLE_CODES))
def test_public_methods_translate_every_throttle_code(code):
    with pytest.raises(ServiceUnavailable) as err:
        Adapter().public(code)
    assert err.value.retry_after == 2 and err.value.status == 503
    assert isinstance(err.value.__cause__, ClientError) and err.value.__cause__.response["Error"]["Code"] == code


def test_other_errors_pass_unchanged_and_results_are_returned():
    with pytest.raises(ClientError) as err:
        Adapter().public("ValidationException")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    a = Adapter()
    assert a.returns(1, y=2) == (a, 1, 2)


def test_only_public_functions_of_the_class_body_are_wrapped():
    a = Adapter()
    for call in (lambda: a._private("ThrottlingException"), lambda: a.static("ThrottlingException"),
                 lambda: Adapter.klass("ThrottlingException"), lambda: a.prop,
                 lambda: a.inherited("ThrottlingException")):
        with pytest.raises(ClientError):
            call()
    assert Adapter.LIMIT == 3
    assert Adapter.public.__name__ == "public" and Adapter.public.__doc__ == "Doc kept."
    assert Adapter.public.__wrapped__ is not None  # functools.wraps: the original stays reachable


def test_class_and_method_decorator_translate_alike():
    class One:
        @translated
        def f(self, code):
            raise _error(code)

    for obj in (One(), Adapter()):
        method = obj.f if isinstance(obj, One) else obj.public
        with pytest.raises(ServiceUnavailable) as err:
            method("ProvisionedThroughputExceededException")
        assert err.value.message == "storage is throttling; retry the request"


@pytest.mark.parametrize("cls", [DynamoRegistry, DynamoUsageLedger])
def test_the_adapters_public_methods_carry_the_translation(cls):
    public = {n: v for n, v in vars(cls).items() if not n.startswith("_") and inspect.isfunction(v)}
    assert len(public) >= 4
    assert all(getattr(v, "__wrapped__", None) is not None for v in public.values()), public
