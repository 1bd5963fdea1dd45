"""The OpenAI SDK adapter behind :class:`calroute.llm.types.LlmClient` (it depends on those types only).

Works with any OpenAI-compatible server (``OPENAI_BASE_URL``). The key comes from
``OPENAI_API_KEY`` locally, or from SSM Parameter Store / Secrets Manager through Powertools
parameters (cached ``KEY_MAX_AGE`` seconds per container) when ``LLM_API_KEY_PARAM`` is set:
``/calroute/openai-api-key`` (SSM SecureString) or ``secretsmanager:calroute/openai``.

Timeout ``Settings.llm_timeout_seconds`` and ``Settings.llm_max_retries`` retries (the SDK retries
429/5xx/connection errors with backoff, honouring ``Retry-After``). SDK exceptions become
:class:`calroute.llm.types.LlmError` codes. ``openai`` is imported here only — never on the predict path —
and only the modules the chat-completions call needs (:mod:`calroute.adapters.openai_sdk`).
"""

from __future__ import annotations

from typing import Optional

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
    # OpenAI-compatible local servers accept any key; the SDK insists on a non-empty one
    return cfg.openai_api_key or "not-needed"


class OpenAIChatClient:
    """``complete()`` = one ``chat.completions.create`` with a strict ``json_schema`` response format."""

    def __init__(self, *, base_url: Optional[str], api_key: str, timeout: float, max_retries: int):
        from .openai_sdk import load_sdk

        sdk = load_sdk()  # the client and its exceptions, not the SDK's ~1,000 other models
        self._errors = sdk.errors
        self.client = sdk.OpenAI(base_url=base_url or None, api_key=api_key, timeout=timeout,
                                    max_retries=max_retries)

    @classmethod
    def from_settings(cls, cfg) -> "OpenAIChatClient":
        return cls(base_url=cfg.openai_base_url or None, api_key=resolve_api_key(cfg),
                   timeout=cfg.llm_timeout_seconds, max_retries=cfg.llm_max_retries)

    def complete(self, *, model: str, messages: list[dict], response_format: dict) -> LlmReply:
        oa = self._errors
        try:
            resp = self.client.chat.completions.create(model=model, messages=messages,
                                                       response_format=response_format, temperature=0,
                                                       max_completion_tokens=300)
        except oa.APITimeoutError as exc:
            raise LlmError("timeout", "the LLM did not answer in time") from exc
        except oa.RateLimitError as exc:
            raise LlmError("rate_limited", "the LLM is rate limiting") from exc
        except oa.APIStatusError as exc:
            raise LlmError("upstream_error", f"the LLM answered HTTP {exc.status_code}") from exc
        except oa.APIConnectionError as exc:
            raise LlmError("unreachable", "the LLM endpoint is unreachable") from exc
        except oa.OpenAIError as exc:  # response validation and other SDK errors
            raise LlmError("upstream_error", type(exc).__name__) from exc
        except (ValueError, TypeError) as exc:  # a non-JSON body from a misbehaving server
            raise LlmError("upstream_error", type(exc).__name__) from exc
        usage = getattr(resp, "usage", None)
        in_tok = int(getattr(usage, "prompt_tokens", 0) or 0)
        out_tok = int(getattr(usage, "completion_tokens", 0) or 0)
        choices = getattr(resp, "choices", None) or []
        if not choices:
            return LlmReply("", in_tok, out_tok)
        msg = choices[0].message
        if getattr(msg, "refusal", None):
            return LlmReply("", in_tok, out_tok)
        return LlmReply(msg.content or "", in_tok, out_tok)
