"""What an LLM call costs (token usage × ``Settings.llm_prices``) and whether today's budget allows one."""

from __future__ import annotations

from typing import Optional

from ..ports import GLOBAL_PK, UsageLedger


def cost_usd(model: str, input_tokens: int, output_tokens: int, prices: dict[str, dict[str, float]]) -> float:
    """USD for a call (prices per 1M tokens); an unknown model is charged the most expensive price."""
    price = prices.get(model)
    if price is None:
        price = {"input": max((p.get("input", 0.0) for p in prices.values()), default=0.0),
                 "output": max((p.get("output", 0.0) for p in prices.values()), default=0.0)}
    return (input_tokens * float(price.get("input", 0.0)) + output_tokens * float(price.get("output", 0.0))) / 1e6


def budget_exceeded(usage: UsageLedger, user_id: str, cfg) -> Optional[str]:
    """``"user_budget"``/``"global_budget"`` when today's spend reached a budget, else None."""
    if usage.spent(user_id) >= cfg.llm_user_daily_budget_usd:
        return "user_budget"
    if usage.spent(GLOBAL_PK) >= cfg.llm_daily_budget_usd:
        return "global_budget"
    return None

