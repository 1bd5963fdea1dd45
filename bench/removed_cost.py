"""What the deleted-calendar guarantee costs a warm classify (``python -m bench.removed_cost [--repeat N]``).

Against the emulator (:func:`bench.aws_env.emulator`: moto over HTTP on 127.0.0.1, so a DynamoDB
read here is moto's latency, not AWS's), :class:`calroute.services.predict.PredictService` as
:func:`calroute.wiring.predict_service` builds it classifies one event of a user whose model is
cached, timed per call:

* ``hit``: model, calendar list and tombstones cached — every request of a user inside
  ``REMOVED_CHECK_SECONDS`` (1 s) of the last tombstone read, and every request before this change
  (tombstones cached for ``MODEL_REVALIDATE_SECONDS``, 60 s);
* ``tombstones_read``: the tombstone view expired first (one consistent Query of ``CALDEL#``): a
  request arriving more than 1 s after the user's previous one in that container. The same figure
  is what a strict per-request check (a read on every classify) would cost every request;
* ``pointer_read``: the model cache's revalidation expired first (one GetItem of ``ACTIVE``), for
  comparison: what every request more than 60 s after the previous one already pays.

Prints one JSON object (medians and p99 in ms, and the differences to ``hit``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "layers" / "core", ROOT / "tools", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

USER = "alice"
EVENT = {"event_id": "e-conf", "summary": "Sprint standup review", "start": "2026-03-03T10:00:00Z"}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=500, help="timed requests per case")
    args = ap.parse_args(argv)

    from bench.aws_env import emulator, install_model, set_env
    from bench.harness import summarize_ns, time_calls

    with contextlib.redirect_stdout(io.StringIO()), emulator():
        set_env(PREDICTION_LOG_SAMPLE_RATE="0", POWERTOOLS_METRICS_DISABLED="true")
        from calroute import wiring
        from calroute.config import settings
        from calroute.forget import REMOVED_CHECK_SECONDS
        from calroute.schema import CalendarInfo
        from support.models import build_onnx, version

        cfg = settings()
        stores = wiring.stores(cfg)
        install_model(USER, build_onnx(("work", "home"), model_version=version(1), user=USER),
                      version=version(1), threshold=0.6, labels=["work", "home"])
        for cal in ("work", "home"):
            stores.users.put_calendar(USER, CalendarInfo(calendar_id=cal, name=cal))
        stores.users.mark_calendar_removed(USER, "old", at="2026-01-01T00:00:00+00:00")  # one tombstone
        svc = wiring.predict_service(cfg, stores=stores, invoker=None)
        assert svc.classify(USER, EVENT)["method"] == "ml"
        directory, cache = svc.calendars, svc.cache

        def classify():
            svc.classify(USER, EVENT)

        cases = {
            "hit": None,
            "tombstones_read": lambda: directory._tombstones.forget(USER),
            "pointer_read": lambda: cache._entries[USER].__setattr__("checked_at", float("-inf")),
        }
        out: dict = {}
        for name, before in cases.items():
            out[name] = summarize_ns(time_calls(classify, repeat=args.repeat, warmup=20, before=before))
    hit = out["hit"]["p50_ms"]
    res = {"removed_check_seconds": REMOVED_CHECK_SECONDS, "model_revalidate_seconds": cfg.model_revalidate_seconds,
           "backend": "moto server on 127.0.0.1 (not AWS)",
           **{f"{k}_p50_ms": v["p50_ms"] for k, v in out.items()},
           **{f"{k}_p99_ms": v["p99_ms"] for k, v in out.items()},
           "tombstones_read_adds_ms": round(out["tombstones_read"]["p50_ms"] - hit, 3),
           "pointer_read_adds_ms": round(out["pointer_read"]["p50_ms"] - hit, 3),
           "requests_per_case": args.repeat}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
