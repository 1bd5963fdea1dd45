"""The OpenAI Chat Completions adapter behind :class:`calroute.llm.types.LlmClient` (it depends on
those types only).

Works with any OpenAI-compatible server (``OPENAI_BASE_URL``, default ``https://api.openai.com/v1``).
The key comes from ``OPENAI_API_KEY`` locally, or from SSM Parameter Store / Secrets Manager through
Powertools parameters (cached ``KEY_MAX_AGE`` seconds per container) when ``LLM_API_KEY_PARAM`` is
set: ``/calroute/openai-api-key`` (SSM SecureString) or ``secretsmanager:calroute/openai``.

One ``POST {base_url}/chat/completions`` per answer over urllib3 (already loaded by botocore; a pooled
keep-alive connection per container), not the ``openai`` SDK: importing the SDK builds its ~700
pydantic response models, about half a second of the LLM function's cold start for the one call it
makes (docs/serving.md, "Cold start"). What the SDK did is kept: timeout
``Settings.llm_timeout_seconds`` per attempt and ``Settings.llm_max_retries`` retries of timeouts,
connection errors and HTTP 408/409/429/5xx, with exponential backoff (0.5 s doubling, at most 8 s,
jittered) or the server's ``retry-after-ms`` / ``retry-after`` when it is at most 60 s, and its
``x-should-retry`` when present. Faults become :class:`calroute.llm.types.LlmError` codes.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any, Callable, Optional

from ..llm.types import LlmError, LlmReply

KEY_MAX_AGE = 300
SECRETS_PREFIX = "secretsmanager:"


def resolve_api_key(cfg) -> str:
    """The API key: from the configured SSM parameter / secret (cached), else the env value."""
    name = cfg.llm_api_key_param
    if name:
        try:
            if name.startswith(SECRETS_PREFIX):
                from aws_lambda_powertools.utilities.parameters import get_secret

                value = get_secret(name[len(SECRETS_PREFIX):], max_age=KEY_MAX_AGE)
            else:
                from aws_lambda_powertools.utilities.parameters import get_parameter

                value = get_parameter(name, decrypt=True, max_age=KEY_MAX_AGE)
        except Exception as exc:  # missing parameter, no permission, SSM down: the fallback is off
            raise LlmError("not_configured", f"the API key parameter could not be read ({type(exc).__name__})") from exc
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        return str(value).strip()
    # OpenAI-compatible local servers accept any key; the Bearer header needs a non-empty one
    return cfg.openai_api_key or "not-needed"


DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
INITIAL_BACKOFF, MAX_BACKOFF, MAX_RETRY_AFTER = 0.5, 8.0, 60.0


class _Retryable(Exception):
    """One failed attempt worth another (timeout, connection error, 408/409/429/5xx)."""

    def __init__(self, error: LlmError, retry_after: Optional[float] = None):
        super().__init__(error.code)
        self.error, self.retry_after = error, retry_after


def _retry_after(headers: Any) -> Optional[float]:
    """The server's wait in seconds (``retry-after-ms``, or ``retry-after`` in seconds or as an
    HTTP date), when it is positive and at most 60 s; else None (exponential backoff)."""
    value: Optional[float] = None
    try:
        if headers.get("retry-after-ms"):
            value = float(headers["retry-after-ms"]) / 1000.0
        elif headers.get("retry-after"):
            raw = headers["retry-after"]
            try:
                value = float(raw)
            except ValueError:
                from email.utils import parsedate_to_datetime

                value = parsedate_to_datetime(raw).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    return value if value is not None and 0 < value <= MAX_RETRY_AFTER else None


class OpenAIChatClient:
    """``complete()`` = one Chat Completions request with a strict ``json_schema`` response format."""

    def __init__(self, *, base_url: Optional[str], api_key: str, timeout: float, max_retries: int,
                 sleep: Callable[[float], Any] = time.sleep, pool: Any = None):
        import urllib3

        self._urllib3 = urllib3
        self.url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.max_retries = max(0, int(max_retries))
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                         "Accept": "application/json", "User-Agent": "calroute"}
        self._sleep = sleep
        self.pool = pool if pool is not None else urllib3.PoolManager(num_pools=2, maxsize=8, retries=False)

    @classmethod
    def from_settings(cls, cfg) -> "OpenAIChatClient":
        return cls(base_url=cfg.openai_base_url or None, api_key=resolve_api_key(cfg),
                   timeout=cfg.llm_timeout_seconds, max_retries=cfg.llm_max_retries)

    def complete(self, *, model: str, messages: list[dict], response_format: dict) -> LlmReply:
        body = json.dumps({"model": model, "messages": messages, "response_format": response_format,
                           "temperature": 0, "max_completion_tokens": 300}, ensure_ascii=False).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            try:
                return self._attempt(body)
            except _Retryable as failed:
                if attempt == self.max_retries:
                    raise failed.error from failed
                wait = failed.retry_after
                if wait is None:
                    wait = min(INITIAL_BACKOFF * 2.0 ** attempt, MAX_BACKOFF) * (1 - 0.25 * random.random())
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, body: bytes) -> LlmReply:
        exc = self._urllib3.exceptions
        try:
            resp = self.pool.request("POST", self.url, body=body, headers=self._headers, timeout=self.timeout,
                                     retries=False, redirect=False)
        except exc.NewConnectionError as e:  # refused, DNS (first: urllib3 1.26 derives it from a timeout)
            raise _Retryable(LlmError("unreachable", "the LLM endpoint is unreachable")) from e
        except exc.TimeoutError as e:  # connect or read timeout
            raise _Retryable(LlmError("timeout", "the LLM did not answer in time")) from e
        except exc.HTTPError as e:  # reset, TLS, protocol errors
            raise _Retryable(LlmError("unreachable", "the LLM endpoint is unreachable")) from e
        status = resp.status
        if status >= 300:
            err = (LlmError("rate_limited", "the LLM is rate limiting") if status == 429
                   else LlmError("upstream_error", f"the LLM answered HTTP {status}"))
            should = (resp.headers.get("x-should-retry") or "").lower()
            if should == "true" or (should != "false" and status in RETRY_STATUSES):
                raise _Retryable(err, _retry_after(resp.headers))
            raise err
        try:
            data = json.loads(resp.data)
        except (ValueError, TypeError) as e:  # a non-JSON body from a misbehaving server
            raise LlmError("upstream_error", type(e).__name__) from e
        return _reply(data)


def _reply(data: Any) -> LlmReply:
    """The answer's text and token counts (empty text for a refusal or no choice)."""
    if not isinstance(data, dict):
        raise LlmError("upstream_error", "the LLM answered a non-object")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    in_tok = int(usage.get("prompt_tokens") or 0)
    out_tok = int(usage.get("completion_tokens") or 0)
    choices = data.get("choices") if isinstance(data.get("choices"), list) else []
    msg = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    if not isinstance(msg, dict) or msg.get("refusal"):
        return LlmReply("", in_tok, out_tok)
    content = msg.get("content")
    return LlmReply(content if isinstance(content, str) else "", in_tok, out_tok)
