"""The one place services are built from :class:`~calroute.config.Settings`.

Handlers call these builders (once per container: each handler caches what it built) and never
construct adapters themselves; tests build the same services on in-memory fakes (``stores=``) or
swap a handler's service with Powertools' ``app.dependency_overrides``.

* :func:`stores` — the DynamoDB/S3 adapters (boto3, honouring ``AWS_ENDPOINT_URL``);
* :func:`ingest_service`, :func:`models_service`, :func:`stats_service`, :func:`lifecycle_service` —
  the HTTP use cases;
* :func:`predict_service` (with :func:`invoker` for the LLM fallback) and :func:`fallback_service`;
* :func:`parse_service` — words to an event draft, routed by :func:`predict_service` in-process;
* :func:`metrics_sink` — the EMF sink on a Powertools ``Metrics``.

Building does no I/O: boto3 resources are created on first use and shared by the process
(:func:`calroute.adapters.dynamo.base.shared_tables`).
"""

from __future__ import annotations

import os
import random
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from .config import Settings
from .ports import AfterResponse, Immediately, MetricsSink, NullSink, Stores

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .adapters.dynamo.base import Tables
    from .adapters.invoke import Invoker
    from .services.llm_fallback import FallbackService
    from .services.ingest import IngestService
    from .services.lifecycle import LifecycleService
    from .services.models import ModelsService
    from .services.parse import ParseService
    from .services.predict import PredictService
    from .services.stats import StatsService


def stores(cfg: Settings, *, tables: Optional["Tables"] = None) -> Stores:
    """Every store on DynamoDB/S3 (``tables``: the boto3 resources; default the process's)."""
    from .adapters.dynamo.events import DynamoEventStore
    from .adapters.dynamo.predictions import DynamoPredictionLog
    from .adapters.dynamo.registry import DynamoRegistry
    from .adapters.dynamo.usage import DynamoUsageLedger
    from .adapters.dynamo.users import DynamoUserStore
    from .adapters.s3_models import S3ModelBlobs

    return Stores(
        events=DynamoEventStore(cfg.events_table, tables),
        users=DynamoUserStore(cfg.users_table, tables),
        registry=DynamoRegistry(cfg.registry_table, tables),
        models=S3ModelBlobs(cfg.model_bucket, tables),
        predictions=DynamoPredictionLog(cfg.predictions_table, cfg.prediction_ttl_days, tables),
        usage=DynamoUsageLedger(cfg.usage_table, tables),
    )


_aws_stores = stores  # the builders' ``stores=`` argument shadows the function's name


def metrics_sink(metrics: Any) -> MetricsSink:
    """CloudWatch EMF through a Powertools ``Metrics`` (its namespace, service and switch)."""
    from .adapters.emf import EmfSink

    return EmfSink(metrics)


# ----------------------------------------------------------------------------- HTTP use cases


def ingest_service(cfg: Settings, *, stores: Optional[Stores] = None) -> "IngestService":
    from .services.ingest import IngestService
    from .services.lifecycle import LifecycleService

    return IngestService(stores if stores is not None else _aws_stores(cfg), cfg)


def models_service(cfg: Settings, *, stores: Optional[Stores] = None, sfn: Any = None) -> "ModelsService":
    """``sfn``: a boto3 Step Functions client (default: created on the first training request)."""
    from .services.models import ModelsService

    def sfn_client():  # from the process's one boto3 session (its loader, credentials, config)
        from .adapters.dynamo.base import shared_tables

        return shared_tables().session.client("stepfunctions")

    return ModelsService(stores if stores is not None else _aws_stores(cfg), cfg, sfn=sfn, sfn_factory=sfn_client)


def lifecycle_service(cfg: Settings, *, stores: Optional[Stores] = None,
                      sink: Optional[MetricsSink] = None) -> "LifecycleService":
    """List, delete, export and erase a user's data (:mod:`calroute.services.lifecycle`)."""
    from .services.lifecycle import LifecycleService

    return LifecycleService(stores if stores is not None else _aws_stores(cfg), cfg, sink=sink)


def stats_service(cfg: Settings, *, stores: Optional[Stores] = None) -> "StatsService":
    from .services.stats import StatsService

    s = stores if stores is not None else _aws_stores(cfg)
    return StatsService(s.predictions, s.usage, cfg=cfg)


# ----------------------------------------------------------------------------- classification


def fallback_service(cfg: Settings, *, sink: Optional[MetricsSink] = None, logger: Any = None,
                     stores: Optional[Stores] = None, client_factory: Any = None) -> "FallbackService":
    """The LLM fallback on the stores and the OpenAI SDK client (created on first use;
    ``client_factory`` replaces it)."""
    from .llm.types import LlmClient
    from .services.llm_fallback import FallbackService

    def openai_client() -> LlmClient:
        from .adapters.llm_openai import OpenAIChatClient

        return OpenAIChatClient.from_settings(cfg)

    s = stores if stores is not None else _aws_stores(cfg)
    return FallbackService(cfg, client_factory=client_factory or openai_client, users=s.users, events=s.events,
                           registry=s.registry, usage=s.usage, metrics=sink, logger=logger)


def invoker(cfg: Settings, *, sink: Optional[MetricsSink] = None, logger: Any = None,
            stores: Optional[Stores] = None) -> Optional["Invoker"]:
    """The LLM fallback invoker for ``cfg``: the Lambda function (``LLM_FUNCTION_NAME``), or the
    fallback service in-process (``LAMBDA_INVOKE_MODE=inprocess`` with an LLM configured), or None."""
    from .adapters.invoke import CallableInvoker, LambdaInvoker

    if cfg.lambda_invoke_mode == "inprocess":
        if not cfg.llm_configured:
            return None
        return CallableInvoker(fallback_service(cfg, sink=sink, logger=logger, stores=stores).handle)
    if cfg.llm_function_name:
        timeout = cfg.llm_timeout_seconds * (cfg.llm_max_retries + 1) + 3.0
        from .adapters.dynamo.base import shared_tables

        return LambdaInvoker(cfg.llm_function_name, read_timeout=timeout, session=shared_tables().session)
    return None


_invoker = invoker  # shadowed by predict_service's ``invoker=`` argument


def stdout_lines(text: str) -> None:
    """Write prediction record lines to the process's current stdout (CloudWatch Logs in Lambda)."""
    sys.stdout.write(text)


def predict_service(cfg: Settings, *, sink: Optional[MetricsSink] = None, logger: Any = None,
                    stores: Optional[Stores] = None, invoker: Any = "auto",
                    lines: Optional[Callable[[str], Any]] = None,
                    after: Optional[AfterResponse] = None) -> "PredictService":
    """The classification service: model cache on the registry and the model blobs, the LLM
    fallback invoker (``"auto"``: :func:`invoker` for ``cfg``), the prediction log, the usage ledger
    (budgets), the ML kill switch and, with ``lines`` (e.g. :func:`stdout_lines`), one JSON
    prediction record line per answer. ``after`` (:func:`after_response`): where the log's
    DynamoDB write runs; None: inside the request."""
    from .cache import ModelCache
    from .calendars import CalendarDirectory
    from . import forget
    from .policy import flag_provider
    from .removed import LifecycleDirectory
    from .services.predict import PredictService

    sink = sink or NullSink()
    s = stores if stores is not None else _aws_stores(cfg)
    if invoker == "auto":
        invoker = _invoker(cfg, sink=sink, logger=logger, stores=s)
    cache = ModelCache.from_settings(cfg, s.registry, s.models, metrics=sink)
    # the user's calendars: calendars the model has not met, and the check of the LLM's answer;
    # with the deleted-calendar tombstones (calroute.removed). Both forget a user on deletion/erasure.
    directory = LifecycleDirectory(s.users.calendars, s.users.removed_calendars, ttl=cfg.model_revalidate_seconds,
                                   on_error=lambda exc: sink.add_metric("CalendarReadFailures", "Count", 1))
    # the user's settings (remember by default), read only for requests that do not say remember
    user_settings = CalendarDirectory(lambda u: [s.users.settings(u)], ttl=cfg.model_revalidate_seconds,
                                      on_error=lambda exc: sink.add_metric("SettingsReadFailures", "Count", 1))
    forget.register(cache)
    forget.register(directory)
    forget.register(user_settings)
    return PredictService(cfg, cache=cache, invoker=invoker, predictions=s.predictions, usage=s.usage,
                          flags=flag_provider(cfg), sink=sink, logger=logger, calendars=directory,
                          lines=lines, events=s.events, users=s.users, after=after, settings=user_settings)


def parse_service(cfg: Settings, *, sink: Optional[MetricsSink] = None, logger: Any = None,
                  stores: Optional[Stores] = None, invoker: Any = "auto", warm: bool = True) -> "ParseService":
    """Words to an event (:mod:`calroute.services.parse`): the slot rules, the LLM fallback's slot
    task (``invoker``, ``"auto"``: :func:`invoker` for ``cfg``), and the draft routed by the same
    classification service as ``/classify`` (:func:`predict_service`: the user's ONNX model through
    the model cache, the calendar fallback), called in-process. No prediction-log record is
    written for a draft. ``warm``: load dateparser's data now (a container's first parse would
    otherwise pay ~0.5 s)."""
    import dataclasses

    from .services.parse import ParseService
    from .slots import when

    sink = sink or NullSink()
    s = stores if stores is not None else _aws_stores(cfg)
    if invoker == "auto":
        invoker = _invoker(cfg, sink=sink, logger=logger, stores=s)
    predict = predict_service(cfg, sink=sink, logger=logger, stores=dataclasses.replace(s, predictions=None),
                              invoker=invoker, lines=None)

    def timezone_of(user: str) -> Optional[str]:
        tz = (s.users.profile(user) or {}).get("timezone")
        return tz if isinstance(tz, str) else None

    if warm:
        when.warm()
    return ParseService(cfg, classify=predict.classify_events, invoker=invoker, timezone_of=timezone_of,
                        sink=sink, logger=logger)



# ----------------------------------------------------------------------------- SnapStart

#: Lambda sets it while it initialises an environment: ``on-demand``, ``provisioned-concurrency``, or
#: ``snap-start`` (the init whose memory is snapshotted when a version is published with SnapStart).
INIT_TYPE_ENV = "AWS_LAMBDA_INITIALIZATION_TYPE"


def snapstart_init(prime: Callable[[], Any]) -> bool:
    """In a SnapStart init (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``): run ``prime`` (build
    the service and what its first request needs, without network I/O and without reading a
    secret) so that the snapshot holds it, and register :func:`after_restore`. Anywhere else
    (on-demand cold starts, tests, the local stack) it does nothing: the handler stays lazy and its
    import does no work a request does not need. Returns whether it primed."""
    if os.environ.get(INIT_TYPE_ENV) != "snap-start":
        return False
    prime()
    try:  # in every Lambda Python managed runtime (snapshot-restore-py), not in the venv
        from snapshot_restore_py import register_after_restore
    except ImportError:  # pragma: no cover - only outside Lambda
        register_after_restore = None
    if register_after_restore is not None:
        register_after_restore(after_restore)
    return True


#: where the Lambda runtime serves the Runtime and Extensions APIs (``host:port``), in Lambda only
RUNTIME_API_ENV = "AWS_LAMBDA_RUNTIME_API"


def after_response(cfg: Settings, *, logger: Any = None, environ: Optional[Mapping[str, str]] = None) -> AfterResponse:
    """Where work after the response runs (the prediction log's write): a Lambda internal extension
    (:class:`calroute.adapters.lambda_extension.AfterResponseExtension`) when this is a Lambda
    environment's on-demand or provisioned-concurrency init and ``PREDICTION_LOG_AFTER_RESPONSE``
    is on; else :class:`calroute.ports.Immediately` (inside the request): outside Lambda (tests,
    the local stack, scripts), under SnapStart (a snapshot must not hold the extension's open
    request), or when the registration fails (logged; the function still serves).

    Must be called during the init phase (at import of the function module): the Extensions API
    takes registrations only then."""
    env = os.environ if environ is None else environ
    api = env.get(RUNTIME_API_ENV)
    if not cfg.prediction_log_after_response or not api or env.get(INIT_TYPE_ENV) == "snap-start":
        return Immediately()
    from .adapters.lambda_extension import AfterResponseExtension, ExtensionError

    try:
        return AfterResponseExtension(api)
    except (OSError, ExtensionError) as exc:
        if logger is not None:
            logger.warning("after-response extension not registered; the log is written in the request",
                           extra={"error": type(exc).__name__})
        return Immediately()


def prime_aws() -> None:
    """Create the process's boto3 resources (DynamoDB, S3) now, connections closed (SnapStart init)."""
    from .adapters.dynamo.base import shared_tables

    shared_tables().create_clients()


def prime_llm_sdk() -> None:
    """Import the OpenAI SDK now (SnapStart init of the LLM fallback): module code only, no client
    (the client reads the API key, which never goes into a snapshot) and no connection."""
    import openai  # noqa: F401 - imported for the snapshot

    del openai


def prime_predict() -> None:
    """SnapStart init of the predict function: the boto3 resources and onnxruntime."""
    from .runtime import preload

    prime_aws()
    preload()


def after_restore() -> None:
    """Once in every environment restored from a snapshot, before its first request.

    * ``random`` is reseeded from the OS: every restored copy would otherwise draw the same
      sequence (the retry jitter of the batch writes). The LLM prompt's nonce comes from
      ``secrets`` and generated ids from ``uuid4`` (OS entropy): unaffected by the snapshot.
    * The shared boto3 clients drop their pooled connections (none is opened before the snapshot,
      but a connection must never cross one); the clients themselves stay: their loaded service
      models are what the snapshot saves. Credentials are not frozen: under SnapStart the SDK reads
      the container credentials endpoint and refreshes them.
    """
    random.seed()
    from .adapters.dynamo.base import shared_tables

    shared_tables().close_connections()


__all__ = ["stores", "metrics_sink", "ingest_service", "lifecycle_service", "models_service", "stats_service",
           "fallback_service", "invoker", "predict_service", "parse_service", "stdout_lines", "snapstart_init", "prime_aws",
           "prime_llm_sdk", "prime_predict", "after_restore", "after_response"]
