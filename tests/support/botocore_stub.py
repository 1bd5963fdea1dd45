"""What a botocore ``before-call`` handler returns to short-circuit a request: ``(http_response,
parsed)``. The fault-injection tests answer with an injected error or a crafted result this way."""

from __future__ import annotations


class StubHttp:
    """The minimal HTTP response botocore reads from a ``before-call`` answer."""

    def __init__(self, status: int):
        self.status_code = status
        self.headers: dict = {}
        self.content = b""
        self.text = ""


__all__ = ["StubHttp"]
