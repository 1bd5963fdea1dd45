"""``python -m bench.gate_stops --data DIR [--labelled K] [--max-events N] [--users a,b] [--out FILE]``: what
the gate memo saves (docs/training.md "A run the gates stopped is not repeated on the same labels").

Replays the ``llm_answers`` arm (``calroute_dev.replay.replay``: noisy:0.9, correction rate 0.5,
gates 10/2/5, the template's nightly schedule) twice — as it is, and with the planner's
:func:`calroute.retrain.gate_memo_holds` replaced by "never holds" (the policy before 2026-12-03)
— with few labelled events per calendar (``--labelled``, default 2: a user who imports little and
classifies with ``remember``), so that the gates stop runs. Reports, per user and pooled, the
TrainUser runs (``trainings`` + ``gate_stops``) and the LLM calls and accuracy of both, which must
be equal: the memo only skips runs the gates would stop. Prints one JSON object.
"""

from __future__ import annotations

import sys

from bench import emit, on_path, replay_parser

on_path("layers/core", "tools")
KEYS = ("llm_calls", "accuracy", "ml_answers", "trainings", "gate_stops", "promotions")


def _never(*_args, **_kwargs):
    return False, ""


def run(data: str, labelled: int = 2, max_events=None, users=None) -> dict:
    from calroute import retrain as plan_module
    from calroute_dev.replay import replay

    def arm() -> dict:
        a = replay(data, arms=["llm_answers"], k_labelled=labelled, max_events=max_events,
                   users=users)["arms"]["llm_answers"]
        return {**{k: a[k] for k in KEYS}, "users": {u: {k: v.get(k) for k in KEYS} for u, v in a["users"].items()}}

    memo = arm()
    real = plan_module.gate_memo_holds
    plan_module.gate_memo_holds = _never
    try:
        before = arm()
    finally:
        plan_module.gate_memo_holds = real
    same = all(memo["users"][u][k] == before["users"][u][k] for u in memo["users"]
               for k in ("llm_calls", "accuracy", "ml_answers", "trainings", "promotions"))
    return {"llm": "noisy:0.9", "labelled": labelled, "max_events": max_events,
            "without_memo": before, "with_memo": memo, "same_answers_and_models": same}


def main(argv=None) -> int:
    ap = replay_parser("python -m bench.gate_stops", __doc__)
    ap.add_argument("--labelled", type=int, default=2)
    a = ap.parse_args(argv)
    return emit(run(a.data, a.labelled, a.max_events, a.users), a.out)


if __name__ == "__main__":
    sys.exit(main())
