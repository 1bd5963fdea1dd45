"""What Powertools' ``Depends`` adds to a warm classify (``python -m bench.depends_cost [--repeat N]``).

The REAL predict handler (``functions/predict/app.py``: Logger/Tracer/Metrics decorators, resolver,
validation, the service) classifies one event with its model cached, on in-memory stores (no
storage round trip: the difference is what is measured). The same route is then registered on a
second resolver with ``svc: Annotated[PredictService, Depends(service)]`` instead of
``provided(app, service)``, and both handlers are timed on the same events in alternating rounds;
the figure is the difference of the medians. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import time

from bench import on_path  # noqa: E402 - before the calroute imports below

ROOT = on_path("layers/core", "tools", "tests")

USER = "alice"
EVENT = {"event_id": "e-conf", "summary": "Sprint standup review", "start": "2026-03-03T10:00:00Z"}


def _handlers():
    os.environ.update(AUTH_MODE="none", POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_METRICS_DISABLED="true",
                      PREDICTION_LOG_SAMPLE_RATE="0", AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION",
                                                                                      "us-east-1"))
    from typing import Annotated

    from aws_lambda_powertools.event_handler import Depends

    from calroute import wiring
    from calroute.http.auth import authorize_user
    from calroute.http.observability import logger, metrics
    from calroute.http.resolver import check_body_size, json_response, make_handler, make_resolver
    from calroute.config import settings
    from calroute.features import FEATURE_SPEC_VERSION
    from calroute.ids import user_id as valid_user
    from conftest import load_handler
    from support.fakes import fake_stores
    from support.models import build_onnx, version

    settings.cache_clear()
    cfg = settings()
    stores = fake_stores()
    data = build_onnx(("work", "home"), model_version=version(1), user=USER)
    key, sha = stores.models.put(USER, version(1), data)
    record = {"version": version(1), "s3_key": key, "sha256": sha, "threshold": 0.6,
              "feature_spec": FEATURE_SPEC_VERSION, "labels": ["home", "work"]}
    stores.registry.put_version(USER, version(1), record)
    stores.registry.activate(USER, record, expected_version=None, actor="bench", reason="bench")
    svc = wiring.predict_service(cfg, stores=stores, sink=wiring.metrics_sink(metrics), logger=logger, invoker=None)

    mod = load_handler("predict")
    mod.app.dependency_overrides[mod.service] = lambda: svc  # the real handler, on the fakes
    plain = mod.lambda_handler

    other = make_resolver()
    # the annotations are strings (``from __future__ import annotations``, as in the handler modules):
    # resolved against this module's globals, as they would be against the handler's
    globals().update(Annotated=Annotated, Depends=Depends, UserIdPath=mod.UserIdPath, ClassifyBody=mod.ClassifyBody,
                     PredictService=mod.PredictService, service=mod.service)

    @other.post("/v1/users/<userId>/classify")
    def classify(userId: UserIdPath, body: ClassifyBody,  # noqa: F821
                 service: Annotated[PredictService, Depends(service)]):  # noqa: F821
        check_body_size(other)
        user = valid_user(userId)
        authorize_user(other, user)
        return json_response(service.classify(user, body.event))

    other.dependency_overrides[mod.service] = lambda: svc
    with_depends = make_handler(other)
    return plain, with_depends


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=2000, help="requests per handler per round")
    ap.add_argument("--rounds", type=int, default=11)
    args = ap.parse_args(argv)
    from calroute_dev.local.lambdas import LambdaContext
    from support.apigw import http_event

    plain, with_depends = _handlers()
    ctx = LambdaContext(name="calroute-bench", memory=1769)
    ev = http_event("POST", f"/v1/users/{USER}/classify", body={"event": EVENT})
    for h in (plain, with_depends):
        resp = h(ev, ctx)
        assert resp["statusCode"] == 200, resp
        assert json.loads(resp["body"])["method"] == "ml", resp["body"]
    rounds: dict[str, list[float]] = {"provided": [], "depends": []}
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(200):
            plain(ev, ctx), with_depends(ev, ctx)
        for _ in range(args.rounds):
            for name, h in (("provided", plain), ("depends", with_depends)):
                t0 = time.perf_counter_ns()
                for _ in range(args.repeat):
                    h(ev, ctx)
                rounds[name].append((time.perf_counter_ns() - t0) / args.repeat / 1000)
    med = {k: round(statistics.median(v), 1) for k, v in rounds.items()}
    out = {"warm_classify_us": med["provided"], "warm_classify_with_depends_us": med["depends"],
           "depends_adds_us": round(med["depends"] - med["provided"], 1),
           "rounds": args.rounds, "requests_per_round": args.repeat,
           "spread_us": {k: [round(min(v), 1), round(max(v), 1)] for k, v in rounds.items()}}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
