"""The LLM client port (:class:`LlmClient`), its reply and its fault: all an adapter needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class LlmError(Exception):
    """An LLM fault, mapped to an ``{"error": code}`` answer (never raised to the predict caller).

    Codes: ``timeout``, ``rate_limited``, ``upstream_error``, ``unreachable``, ``invalid_answer``,
    ``refused``, ``budget``, ``not_configured``, ``no_calendars``, ``invalid_input``.
    """

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code
        self.message = message or code


@dataclass(frozen=True)
class LlmReply:
    content: str
    input_tokens: int
    output_tokens: int


class LlmClient(Protocol):
    def complete(self, *, model: str, messages: list[dict], response_format: dict) -> LlmReply: ...

