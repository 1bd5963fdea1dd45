"""calroute.llm.cost: the price of a call from a (possibly partial) price table, the unknown-model
rule (charged the table's most expensive input AND output price), and the daily budgets' exact
codes at their boundary (spending exactly the budget exhausts it)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from calroute.llm.cost import budget_exceeded, cost_usd
from calroute.ports import GLOBAL_PK

M = 1_000_000


def test_a_known_model_is_charged_its_prices_per_million_tokens():
    prices = {"m": {"input": 0.5, "output": 2.0}}
    assert cost_usd("m", M, 0, prices) == pytest.approx(0.5)
    assert cost_usd("m", 0, M, prices) == pytest.approx(2.0)
    assert cost_usd("m", 2 * M, 3 * M, prices) == pytest.approx(7.0)


def test_a_price_the_table_leaves_out_is_free():
    assert cost_usd("m", M, M, {"m": {"output": 0.75}}) == pytest.approx(0.75)
    assert cost_usd("m", M, M, {"m": {"input": 0.25}}) == pytest.approx(0.25)


def test_an_unknown_model_pays_the_highest_input_and_the_highest_output_price():
    prices = {"cheap": {"input": 0.25, "output": 0.5}, "dear": {"input": 0.75, "output": 0.25}}
    assert cost_usd("mystery", M, 0, prices) == pytest.approx(0.75)
    assert cost_usd("mystery", 0, M, prices) == pytest.approx(0.5)


def test_an_unknown_model_with_partial_prices_takes_each_maximum_where_given():
    prices = {"a": {"output": 0.5}, "b": {"input": 0.25}}
    assert cost_usd("mystery", M, 0, prices) == pytest.approx(0.25)
    assert cost_usd("mystery", 0, M, prices) == pytest.approx(0.5)


def test_with_no_price_table_a_call_costs_nothing():
    assert cost_usd("mystery", M, M, {}) == 0.0


class Ledger:
    def __init__(self, **spent: float):
        self.by = {GLOBAL_PK if k == "global" else k: v for k, v in spent.items()}

    def spent(self, key: str) -> float:
        return self.by.get(key, 0.0)


CFG = SimpleNamespace(llm_user_daily_budget_usd=1.0, llm_daily_budget_usd=10.0)


@pytest.mark.parametrize("spent, code", [
    ({}, None),
    ({"alice": 0.99}, None),
    ({"alice": 1.0}, "user_budget"),
    ({"alice": 0.5, "global": 9.99}, None),
    ({"alice": 0.5, "global": 10.0}, "global_budget"),
    ({"alice": 2.0, "global": 20.0}, "user_budget"),
    ({"bob": 5.0}, None),
])
def test_budget_codes_at_the_boundary(spent, code):
    assert budget_exceeded(Ledger(**spent), "alice", CFG) == code
