"""Serving figures: warm classify through the REAL predict handler, the same model through sklearn,
the seed's GradientBoosting(100, depth 5) on the 14 dense features through ONNX, cache-miss model
load, and batch classify of 100 events. Runs inside :func:`bench.aws_env.emulator`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from typing import Any

import numpy as np

from .aws_env import http_event, install_model, load_function, set_env
from .harness import bench, percentile, progress, ratio, summarize_ns, time_calls
from .users import real_users

USER = "d3_developer"  # 5 real calendars, 381 events: the hardest of the bundled users
VERSION = "v20260101000000-be0c01"


def _same_model(user_events):
    """The user's model from the Lambda's trainer, and the identical sklearn estimator."""
    from calroute.features import featurize
    from calroute.schema import sort_by_start
    from calroute.training import CalendarClassifier, TrainConfig, train_user_model

    cfg = TrainConfig()
    trained = train_user_model(user_events, cfg, user_id=USER, version=VERSION)
    labelled = sort_by_start([e for e in user_events if e.calendar_id])
    X = featurize(labelled)
    y = np.asarray([e.calendar_id for e in labelled])
    sk = CalendarClassifier(family=cfg.family, C=cfg.C, class_weight=cfg.class_weight,
                            dense_scale=cfg.dense_scale, random_state=cfg.random_state).fit(X, y)
    return trained, sk, X, y


def _gb14(events, y):
    """The seed's model: GradientBoostingClassifier(100, depth 5) on featurize_dense, as ONNX."""
    from sklearn.ensemble import GradientBoostingClassifier

    from calroute.features import N_DENSE, featurize_dense
    from calroute.onnx_export import to_onnx
    from calroute.runtime import OnnxModel

    Xd = featurize_dense(events)
    gb = GradientBoostingClassifier(n_estimators=100, max_depth=5, random_state=0).fit(Xd, y)
    labels = [str(c) for c in gb.classes_]
    data = to_onnx(gb, N_DENSE, labels, {"threshold": 0.5, "version": VERSION, "user": USER,
                                         "family": "gb_dense14", "trained_at": "2026-01-01T00:00:00Z",
                                         "metrics": {}})
    return gb, OnnxModel.from_bytes(data), len(data)


def run(quick: bool) -> dict:
    from calroute.features import featurize, featurize_dense
    from calroute.runtime import OnnxModel
    from calroute.schema import sort_by_start

    rep = 30 if quick else 2000
    rep_slow = 10 if quick else 200
    events = real_users()[USER]
    progress(f"serving: training {USER}'s model ({len(events)} events)")
    trained, sk, X, y = _same_model(events)
    onnx_model = OnnxModel.from_bytes(trained.onnx_bytes)
    parity = float(np.max(np.abs(onnx_model.predict_proba(X) - sk.predict_proba(X))))
    install_model(USER, trained.onnx_bytes, version=VERSION, threshold=trained.threshold, labels=trained.labels)

    ordered = sort_by_start(events)
    flat = [e.to_flat() for e in ordered]
    for f in flat:
        f.pop("calendar_id", None)
    single = [http_event("POST", f"/v1/users/{USER}/classify", {"event": f}) for f in flat]
    batch = [http_event("POST", f"/v1/users/{USER}/classify/batch", {"events": flat[i:i + 100]})
             for i in range(0, len(flat) - 100, 100)]
    from calroute_dev.local.lambdas import LambdaContext

    ctx = LambdaContext(name="calroute-bench", memory=1769)
    app = load_function("predict")

    def handler_timer(events_cycle, repeat, warmup=20):
        it = itertools.cycle(events_cycle)
        statuses = []

        def call():
            resp = app.lambda_handler(next(it), ctx)
            statuses.append(resp["statusCode"])

        out = bench(call, repeat=repeat, warmup=warmup)
        out["non_200"] = sum(s != 200 for s in statuses)
        return out

    def default_tail(bound, repeat, warmup=20):
        """The production default's p99 taken apart, on as many calls again (new event ids, never
        logged before): the calls that wrote to DynamoDB, the call right after each write, and the
        p99 of every other call."""
        from calroute.sampling import kept

        more = [hashlib.blake2b(f"bench-default-tail-{i}".encode(), digest_size=10).hexdigest()
                for i in range(repeat + warmup)]
        evs = [http_event("POST", f"/v1/users/{USER}/classify",
                          {"event": {**flat[i % len(flat)], "event_id": eid}}) for i, eid in enumerate(more)]
        it = iter(evs)
        ns = time_calls(lambda: app.lambda_handler(next(it), ctx), repeat=repeat, warmup=warmup)
        wrote = [kept(eid, bound) for eid in more[warmup:]]
        after = [t for i, t in enumerate(ns) if i > 0 and wrote[i - 1] and not wrote[i]]
        rest = [t for i, t in enumerate(ns) if not wrote[i] and not (i > 0 and wrote[i - 1])]
        ms = lambda xs, q: round(percentile([x / 1e6 for x in xs], q), 4) if xs else None  # noqa: E731
        return {"n": len(ns), "writes": sum(wrote), "after_write": len(after),
                "share_write_or_after": round((sum(wrote) + len(after)) / len(ns), 4),
                "p99_ms": ms(ns, 99), "write_p50_ms": ms([t for t, w in zip(ns, wrote) if w], 50),
                "after_write_p50_ms": ms(after, 50), "others_p50_ms": ms(rest, 50), "others_p99_ms": ms(rest, 99)}

    def extension_timer(events_cycle, repeat, warmup=20):
        """Each call as one Lambda invoke with the predict function's after-response extension
        registered (``AFTER``) on a local stand-in of the Extensions API, served by another process
        as Lambda's is: the response's latency (the handler) and the invoke phase until the
        extension asked for its next event (billed)."""
        from calroute_dev.local.extensions_api import RemoteExtensionsApi

        it = itertools.cycle(events_cycle)
        statuses, response, done = [], [], []
        with RemoteExtensionsApi() as api:
            set_env(AWS_LAMBDA_RUNTIME_API=api.address, AWS_LAMBDA_INITIALIZATION_TYPE="on-demand")
            from calroute import wiring
            from calroute.config import settings as _s

            set_env(PREDICTION_LOG_AFTER_RESPONSE="true")  # the opt-in
            before_after = app.AFTER
            app.AFTER = ext = wiring.after_response(_s())
            app.service.cache_clear()
            try:
                def one(rid):
                    ctx.aws_request_id = rid
                    return app.lambda_handler(next(it), ctx)["statusCode"]

                for i in range(warmup + repeat):
                    inv = api.invoke(one)
                    if i >= warmup:
                        statuses.append(inv.result)
                        response.append(int(inv.response_ms * 1e6))
                        done.append(int(inv.done_ms * 1e6))
            finally:
                set_env(AWS_LAMBDA_RUNTIME_API=None, AWS_LAMBDA_INITIALIZATION_TYPE=None,
                        PREDICTION_LOG_AFTER_RESPONSE=None)
                app.AFTER = before_after
                app.service.cache_clear()
        out = summarize_ns(response)
        out["non_200"] = sum(s != 200 for s in statuses)
        out["invoke_phase"] = summarize_ns(done)
        out["after_response"] = {"mechanism": "internal extension (calroute.adapters.lambda_extension) on a "
                                              "local Extensions API stand-in (another process)", "deferred_calls": ext.ran,
                                 "failures": ext.failures}
        return out

    res: dict[str, Any] = {"model": {"user": USER, "family": trained.family, "calendars": len(trained.labels),
                                     "train_events": len(events), "onnx_bytes": len(trained.onnx_bytes),
                                     "threshold": round(trained.threshold, 4),
                                     "onnx_vs_sklearn_max_abs_diff": parity}}
    # --- the REAL handler, model cached, no LLM configured ------------------------------------------
    with open("/dev/null", "w") as devnull, contextlib.redirect_stdout(devnull):
        set_env(PREDICTION_LOG_SAMPLE_RATE="0", OPENAI_BASE_URL=None, OPENAI_API_KEY=None,
                LAMBDA_INVOKE_MODE="inprocess")
        app.service.cache_clear()
        progress(f"serving: warm classify through the predict handler ×{rep}")
        res["handler_warm"] = handler_timer(single, rep)
        res["handler_warm"]["prediction_log"] = "off (PREDICTION_LOG_SAMPLE_RATE=0; record lines on)"
        # the same calls, each one Lambda invoke with the after-response extension registered and
        # nothing to defer: what the extension's wake-ups cost a request
        progress(f"serving: warm classify, log off, after-response extension registered ×{rep}")
        res["handler_warm_extension"] = extension_timer(single, rep)
        # where the handler's time goes: the resolver without the Logger/Tracer/Metrics decorators,
        # and the service alone (parse, cache hit, featurize, ONNX, routing, EMF) without the resolver
        it_r = itertools.cycle(single)
        res["resolver_only"] = bench(lambda: app.app.resolve(next(it_r), ctx), repeat=rep, warmup=20)
        it_f = itertools.cycle(flat)
        svc = app.service()
        res["service_classify"] = bench(lambda: svc.classify(USER, next(it_f)), repeat=rep, warmup=20)
        res["batch100"] = handler_timer(batch, rep_slow, warmup=3)
        res["batch100"]["per_event_ms"] = round(res["batch100"]["p50_ms"] / 100, 4)
        # the production logging default (calroute.config: every unsure answer, a crc32 share of the
        # confident ones, and one JSON record line per answer): what a deployed stack serves
        set_env(PREDICTION_LOG_SAMPLE_RATE=None, PREDICTION_LOG_CONFIDENT_SAMPLE_RATE=None,
                PREDICTION_LOG_LINES=None)
        app.service.cache_clear()
        from calroute.config import settings as _settings

        dflt = _settings()
        # each call a distinct (deterministic) event id, as a stream of new events: the crc32 sample
        # then writes its real share of the calls, not whatever share of the 381 cycled ids it holds
        fresh_ids = [hashlib.blake2b(f"bench-default-{i}".encode(), digest_size=10).hexdigest()
                     for i in range(rep + 20)]  # random-looking, as calendar event ids are
        fresh = [http_event("POST", f"/v1/users/{USER}/classify",
                            {"event": {**flat[i % len(flat)], "event_id": eid}}) for i, eid in enumerate(fresh_ids)]
        progress(f"serving: warm classify with the production logging default ×{rep}")
        res["handler_warm_default"] = handler_timer(fresh, rep)
        res["handler_warm_default"]["prediction_log"] = (
            f"production default: PREDICTION_LOG_SAMPLE_RATE={dflt.prediction_log_sample_rate}, "
            f"PREDICTION_LOG_CONFIDENT_SAMPLE_RATE={dflt.prediction_log_confident_sample_rate}, "
            f"record lines {'on' if dflt.prediction_log_lines else 'off'}")
        from calroute.sampling import CONFIDENT_METHODS, cut, kept

        # how many of the calls the DynamoDB log kept (every answer here is confident)
        bound = cut(dflt.prediction_log_sample_rate * dflt.prediction_log_confident_sample_rate)
        res["handler_warm_default"]["logged_share_of_calls"] = round(
            sum(kept(i, bound) for i in fresh_ids[20:]) / rep, 4)
        res["handler_warm_default"]["confident_methods"] = sorted(CONFIDENT_METHODS)
        res["handler_warm_default"]["tail"] = default_tail(bound, rep)
        res["batch100_default"] = handler_timer(batch, rep_slow, warmup=3)
        set_env(PREDICTION_LOG_SAMPLE_RATE="1", PREDICTION_LOG_CONFIDENT_SAMPLE_RATE="1")
        app.service.cache_clear()
        progress("serving: warm classify with the prediction-log write (DynamoDB in moto over HTTP)")
        res["handler_warm_logged"] = handler_timer(single, rep_slow)
        # every answer written, after the response (the extension): what the write costs the invoke
        res["handler_warm_logged_after_response"] = extension_timer(single, rep_slow)
        res["batch100_logged"] = handler_timer(batch, max(3, rep_slow // 4), warmup=2)
        methods = {}
        for ev in single[:200]:
            body = json.loads(app.lambda_handler(ev, ctx)["body"])
            methods[body["method"]] = methods.get(body["method"], 0) + 1
        res["handler_methods_sample"] = methods
        set_env(PREDICTION_LOG_SAMPLE_RATE="0", PREDICTION_LOG_CONFIDENT_SAMPLE_RATE=None)
        app.service.cache_clear()

    # --- the model alone: ONNX vs sklearn, linear vs the seed's GB on 14 features -------------------
    progress("serving: model-only timings (ONNX, sklearn, GB on 14 features)")
    rows = itertools.cycle(ordered)
    res["featurize"] = bench(lambda: featurize([next(rows)]), repeat=rep)
    # novelty of one event against the user's training tokens (the routing score's second input),
    # as the predict path pays it: the title tokens come from the featurizer's spec_tokens (one
    # tokenisation per event, already counted in "featurize"); and standalone (tokenising itself)
    from calroute.features import spec_tokens

    tok_rows = itertools.cycle([([e], [spec_tokens(e)]) for e in ordered])
    res["novelty"] = bench(lambda: onnx_model.novelty_of(*next(tok_rows)), repeat=rep)
    res["novelty"]["measures"] = "predict path: title tokens shared with the featurizer"
    res["novelty_standalone"] = bench(lambda: onnx_model.novelty_of([next(rows)]), repeat=rep)
    # time/shape anomaly against the predicted calendar (the veto of the routing score)
    first = onnx_model.labels[0]
    res["anomaly"] = bench(lambda: (lambda evs, toks: onnx_model.anomaly_of(evs, [first], toks))(*next(tok_rows)),
                           repeat=rep)
    res["anomaly"]["measures"] = "predict path: shape tokens read off the featurizer's time tokens"
    res["anomaly_standalone"] = bench(lambda: onnx_model.anomaly_of([next(rows)], [first]), repeat=rep)
    # what the routing score adds to the model per event (same run): novelty + anomaly p50
    res["novelty_anomaly_p50_ms"] = round(res["novelty"]["p50_ms"] + res["anomaly"]["p50_ms"], 4)
    res["featurize_v1"] = bench(lambda: featurize([next(rows)], spec=1), repeat=rep)
    res["onnx_featurize_predict"] = bench(lambda: onnx_model.predict_proba(featurize([next(rows)])), repeat=rep)
    res["sklearn_featurize_predict"] = bench(lambda: sk.predict_proba(featurize([next(rows)])), repeat=rep)
    Xc = itertools.cycle(X)
    res["onnx_predict_only"] = bench(lambda: onnx_model.predict_proba(next(Xc)[None, :]), repeat=rep)
    res["sklearn_predict_only"] = bench(lambda: sk.predict_proba(next(Xc)[None, :]), repeat=rep)
    gb, gb_onnx, gb_bytes = _gb14(ordered, np.asarray([e.calendar_id for e in ordered]))
    res["gb14_onnx_featurize_predict"] = bench(lambda: gb_onnx.predict_proba(featurize_dense([next(rows)])),
                                               repeat=rep)
    res["gb14_sklearn_featurize_predict"] = bench(lambda: gb.predict_proba(featurize_dense([next(rows)])),
                                                  repeat=rep)
    res["gb14_onnx_bytes"] = gb_bytes
    p = lambda k: res[k]["p50_ms"]  # noqa: E731
    res["ratios"] = {
        "sklearn_over_onnx_model_p50": ratio(p("sklearn_featurize_predict"), p("onnx_featurize_predict")),
        "sklearn_over_onnx_predict_only_p50": ratio(p("sklearn_predict_only"), p("onnx_predict_only")),
        "sklearn_model_over_handler_p50": ratio(p("sklearn_featurize_predict"), p("handler_warm")),
        "gb14_onnx_over_linear_onnx_p50": ratio(p("gb14_onnx_featurize_predict"), p("onnx_featurize_predict")),
        "gb14_sklearn_over_linear_onnx_p50": ratio(p("gb14_sklearn_featurize_predict"),
                                                   p("onnx_featurize_predict")),
    }

    # --- cache miss: registry GET + S3 GET + sha256 + session creation --------------------------------
    progress("serving: cache-miss model loads")
    from calroute.adapters.dynamo.registry import DynamoRegistry
    from calroute.adapters.s3_models import S3ModelBlobs
    from calroute.cache import ModelCache
    from calroute.config import settings

    cfg = settings()
    reg, store = DynamoRegistry(cfg.registry_table), S3ModelBlobs(cfg.model_bucket)
    cache = ModelCache.from_settings(cfg, reg, store)
    pointer = reg.active(USER)
    res["cache_miss"] = bench(lambda: cache.get(USER), repeat=rep_slow // 2 or 5, warmup=3,
                              before=lambda: cache.invalidate(USER))
    res["cache_miss"]["includes"] = "registry GetItem + S3 GetObject (moto server, HTTP on 127.0.0.1) + sha256 + session"
    res["s3_get"] = bench(lambda: store.get(pointer["s3_key"], pointer["sha256"]), repeat=rep_slow // 2 or 5, warmup=3)
    res["session_create"] = bench(lambda: OnnxModel.from_bytes(trained.onnx_bytes), repeat=rep_slow // 2 or 5,
                                  warmup=3)
    return res
