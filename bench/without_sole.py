"""``python -m bench.without_sole --data DIR [--max-events N] [--users a,b]``: what the LLM's own labels save,
measured apart from the sole-calendar labels (docs/learning.md "Where the reduction comes from").

Replays the ``llm_answers`` arm (``calroute_dev.replay.replay``, the same settings as the replay
figures: noisy:0.9, correction rate 0.5, K = 20, gates 10/2/5) with every remembered ``sole``
label read as ``llm`` — trained on at ``LABEL_WEIGHT_LLM``, never trusted, reviewable — by
replacing :func:`calroute.schema.resolve_sole_labels` in every loaded calroute module that imported
it (training and the review queue today; a new caller is covered without editing this file).
Nothing else changes, so the difference to corrections only is the LLM labels' own contribution,
and the difference to the real llm_answers arm the sole labels'. Prints one JSON object (pooled
and per user); ``--out FILE`` also writes it.
"""

from __future__ import annotations

import sys

from bench import emit, on_path, replay_parser

on_path("layers/core", "tools")


def read_sole_as_llm(events, provenance) -> list[str]:
    """The replacement: a sole label is the LLM's word, as before sole labels existed."""
    from calroute.schema import LABEL_LLM, LABEL_SOLE

    return [LABEL_LLM if p == LABEL_SOLE else p for p in provenance]


def _callers() -> list:
    """The loaded calroute modules holding the real rule under its name (its users)."""
    import calroute.services.review  # noqa: F401 - the two callers the replay reaches, loaded
    import calroute.services.training.common  # noqa: F401
    from calroute import schema

    return [m for name, m in list(sys.modules.items()) if name.startswith("calroute.") and m is not schema
            and getattr(m, "resolve_sole_labels", None) is schema.resolve_sole_labels]


def run(data: str, max_events=None, users=None) -> dict:
    from calroute import schema
    from calroute_dev.replay import replay

    callers = _callers()
    for m in callers:
        m.resolve_sole_labels = read_sole_as_llm
    try:
        arm = replay(data, arms=["llm_answers"], max_events=max_events, users=users)["arms"]["llm_answers"]
    finally:
        for m in callers:
            m.resolve_sole_labels = schema.resolve_sole_labels
    keys = ("llm_calls", "accuracy", "ml_answers", "ml_accuracy")
    return {**{k: arm[k] for k in keys}, "users": {u: {k: v.get(k) for k in keys} for u, v in arm["users"].items()}}


def main(argv=None) -> int:
    a = replay_parser("python -m bench.without_sole", __doc__).parse_args(argv)
    return emit(run(a.data, a.max_events, a.users), a.out)


if __name__ == "__main__":
    sys.exit(main())
