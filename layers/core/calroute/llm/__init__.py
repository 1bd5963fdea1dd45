"""The LLM fallback's domain pieces: the client port and its types (:mod:`.types`), the prompt,
structured-output schema and answer validation (:mod:`.prompt`), similar past events
(:mod:`.similar`), cost and budgets (:mod:`.cost`). The use case that puts them together is
:class:`calroute.services.llm_fallback.FallbackService`.

Used by the LLM fallback Lambda (``functions/llm_fallback``), which the predict function invokes
for events its model is unsure about (or for users without a model). This package never imports
``openai``: the client is an adapter (``adapters/llm_openai.py``, which depends on :mod:`.types`
only) behind :class:`~calroute.llm.types.LlmClient`.

Guardrails:

* Event text, calendar names/descriptions and similar past events are **untrusted data**. They are
  serialised as JSON (``<`` and ``>`` escaped) inside a ``<data-NONCE>…</data-NONCE>`` block whose
  nonce is random per request, so text cannot close the block or forge instructions; the system
  message tells the model to treat everything inside as data only.
* The answer is constrained by a strict JSON schema whose ``calendar_id`` is an ``enum`` of the
  caller's own calendar ids, and validated again here: an id outside that list, a non-object, or
  anything not JSON is a failure (the caller falls back), never passed on.
* Only the caller's data is read: calendars, profiles and similar events are all queried under the
  validated user id of the request.
* Cost: token usage × ``Settings.llm_prices`` (USD per 1M tokens; an unknown model is charged the
  most expensive listed price) is added to the per-user and global daily ledger; beyond
  ``llm_user_daily_budget_usd`` or ``llm_daily_budget_usd`` the call is skipped (``budget``).
"""
