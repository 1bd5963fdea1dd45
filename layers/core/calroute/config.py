"""One typed configuration model for every calroute function, read from the environment.

Each field maps to the upper-cased environment variable of the same name (``events_table`` ->
``EVENTS_TABLE``). Functions read ``settings()`` once per container; tests build ``Settings(...)``
directly or call ``settings.cache_clear()`` after changing the environment.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: production default of PREDICTION_LOG_CONFIDENT_SAMPLE_RATE: the share of confident model answers
#: (method ml) written to the DynamoDB prediction log (docs/serving.md; the template's default too).
#: Below 1 % so the synchronous write (~3-5 ms from Lambda, ~10 ms to the emulator) stays out of the
#: warm classify p99; every unsure / LLM answer is kept.
PREDICTION_LOG_CONFIDENT_DEFAULT = 0.005

#: environment variables the template sets for the process rather than for :class:`Settings` (which
#: never reads them): OpenBLAS's thread count, read by numpy when it is imported, and
#: ``COLD_START_GC``, read by :mod:`calroute.startup` before anything else is imported
#: (docs/serving.md, "Cold start").
LIBRARY_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "COLD_START_GC")

# USD per 1M tokens (input, output). Overridable with LLM_PRICES (JSON object of the same shape).
DEFAULT_LLM_PRICES: dict[str, dict[str, float]] = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
}


class Settings(BaseModel):
    """Every knob calroute has. Defaults are the production defaults."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # --- resources (names come from template.yaml) ---
    events_table: str = "calroute-events"
    users_table: str = "calroute-users"
    registry_table: str = "calroute-registry"
    predictions_table: str = "calroute-predictions"
    usage_table: str = "calroute-usage"
    model_bucket: str = "calroute-models"
    state_machine_arn: str = ""
    llm_function_name: str = ""
    # "lambda" invokes the LLM function through the Lambda API; "inprocess" calls its handler directly
    # (local stack, tests).
    lambda_invoke_mode: Literal["lambda", "inprocess"] = "lambda"

    # --- training gates and policy ---
    # the gates count the user's own labels (user/confirmed/sole; docs/learning.md "Models sooner": with the
    # certified threshold a model from few rows answers only what it is sure of; was 50 / 2 / 10)
    min_events: int = Field(10, ge=2)
    min_calendars: int = Field(2, ge=2)
    min_per_calendar: int = Field(5, ge=1)
    target_precision: float = Field(0.95, gt=0, le=1)
    default_threshold: float = Field(0.85, ge=0, le=1)
    threshold_min: float = Field(0.30, ge=0, le=1)
    threshold_max: float = Field(0.99, ge=0, le=1)
    # the threshold's guarantee: the kept out-of-fold error is certified below 1 - target_precision
    # with probability at least 1 - risk_delta (calroute.risk, Learn-then-Test)
    risk_delta: float = Field(0.1, gt=0, lt=1)
    champion_tolerance: float = Field(0.01, ge=0, le=1)
    # the champion is scored on the candidate's holdout events written after it was trained; with fewer
    # than this many, the two models' recorded out-of-sample holdout accuracies are compared instead
    champion_min_rows: int = Field(10, ge=1, le=10_000)
    retrain_max_age_days: int = Field(30, ge=1)
    retrain_new_events: int = Field(50, ge=1)
    retrain_corrections: int = Field(10, ge=1)
    # corrections of the model's own (confident) answers since the last training that retrain at once
    retrain_confident_misses: int = Field(1, ge=1)
    max_train_events: int = Field(20000, ge=100)
    # training weight of a remembered label (docs/learning.md "Labels with provenance"): the LLM's
    # answer (``llm``) and the model's own answer (``ml``); a user's or confirmed label weighs 1.
    # Never certified on: threshold, calibration and holdouts use trusted labels only (user/confirmed/sole).
    label_weight_llm: float = Field(0.5, ge=0, le=1)
    label_weight_ml: float = Field(0.5, ge=0, le=1)
    # a remembered label is trained on as its recurring series' label when this share of the series'
    # labels agree (docs/learning.md "Series vote"; calroute.training.series_labels); 0: off
    label_series_share: float = Field(0.75, ge=0, le=1)
    # model family of calroute.training (see docs/model-selection.md); MODEL_FAMILY env var
    model_family: Literal["logreg", "sgd", "linsvc", "gb_dense", "gb_all"] = "logreg"

    # --- serving ---
    model_cache_mb: int = Field(512, ge=16)
    model_cache_max_models: int = Field(5000, ge=1)
    model_revalidate_seconds: float = Field(60, ge=0)
    # a model that failed integrity is not retried (no S3 GET) for this long
    model_failure_ttl_seconds: float = Field(30, ge=0)
    ml_enabled: bool = True
    # SSM parameter overriding ML_ENABLED at runtime ("true"/"false"), re-read every
    # flag_max_age_seconds; empty: the environment value only (local)
    ml_enabled_param: str = ""
    flag_max_age_seconds: float = Field(30, ge=0)
    experiment_name: str = "hybrid-vs-llm"
    experiment_control_percent: float = Field(0, ge=0, le=100)
    # prediction log (DynamoDB; docs/serving.md "Prediction log"): every answer is kept with
    # probability PREDICTION_LOG_SAMPLE_RATE (0 = no DynamoDB log), a confident model answer (method
    # ml) with PREDICTION_LOG_SAMPLE_RATE x PREDICTION_LOG_CONFIDENT_SAMPLE_RATE; deterministic by
    # event id (crc32), each item carries the rate it was kept with (readers weight it by 1/rate)
    prediction_log_sample_rate: float = Field(1.0, ge=0, le=1)
    prediction_log_confident_sample_rate: float = Field(PREDICTION_LOG_CONFIDENT_DEFAULT, ge=0, le=1)
    # one compact JSON line per answer on stdout (CloudWatch Logs; hashed user, no text)
    prediction_log_lines: bool = True
    # opt-in: the DynamoDB log write after the response, through a Lambda internal extension
    # (predict only; in the request under SnapStart, outside Lambda, or when false — the default:
    # the extension's wake-ups at every invoke cost more than the sampled writes they take off the
    # response; docs/serving.md): calroute.adapters.lambda_extension
    prediction_log_after_response: bool = False
    prediction_ttl_days: int = Field(90, ge=1)
    batch_max_events: int = Field(100, ge=1, le=1000)
    llm_max_concurrency: int = Field(8, ge=1, le=64)

    # --- LLM fallback ---
    llm_model: str = "gpt-4o-mini"
    openai_base_url: str = ""
    openai_api_key: str = ""
    # Name of an SSM SecureString parameter ("/calroute/openai-api-key") or a Secrets Manager secret
    # ("secretsmanager:calroute/openai") holding the API key; read with Powertools parameters, cached.
    llm_api_key_param: str = ""
    llm_timeout_seconds: float = Field(3.0, gt=0, le=60)
    llm_max_retries: int = Field(1, ge=0, le=5)
    llm_prices: dict[str, dict[str, float]] = Field(default_factory=lambda: dict(DEFAULT_LLM_PRICES))
    llm_daily_budget_usd: float = Field(50.0, ge=0)
    llm_user_daily_budget_usd: float = Field(0.50, ge=0)
    llm_similar_examples: int = Field(5, ge=0, le=20)
    # the fallback keeps each user's labelled events (token sets) per container for this long, at most
    # this many events over all users (least recently used users go first); 0 seconds = no cache
    llm_examples_cache_seconds: float = Field(300.0, ge=0, le=3600)
    llm_examples_cache_events: int = Field(20_000, ge=0, le=1_000_000)
    # --- event parsing (POST .../events/parse, calroute.services.parse) ---
    # a rules value below this confidence (or none) is asked of the LLM fallback's slot task
    slot_confidence: float = Field(0.9, ge=0, le=1)

    # --- operations (docs/operations.md) ---
    # drift: a training run compares each user's logged requests of the last drift_window_days
    # (at most drift_max_items, since the active model's promotion) with the training reference
    drift_window_days: int = Field(14, ge=1, le=90)
    drift_max_items: int = Field(2000, ge=30, le=100_000)
    # fewer recent requests conclude nothing: PSI is biased upwards on small samples (measured on a
    # stable synthetic user: 80% false "drifted" at 30 requests, 25% at 60, 2.5% at 100, 0 at 200)
    drift_min_samples: int = Field(100, ge=10, le=100_000)
    # GET /v1/stats and /v1/experiments/{name}: a bounded Scan of the prediction log
    stats_max_days: int = Field(7, ge=1, le=90)
    stats_max_items: int = Field(50_000, ge=100, le=1_000_000)

    # --- API ---
    auth_mode: Literal["iam", "jwt", "dev", "none"] = "iam"
    max_body_bytes: int = Field(1_000_000, ge=1024)
    ingest_max_events: int = Field(500, ge=1, le=5000)
    ics_max_bytes: int = Field(5_000_000, ge=1024)
    ics_max_occurrences: int = Field(5000, ge=1)
    ics_window_days_back: int = Field(730, ge=1)
    ics_window_days_forward: int = Field(365, ge=1)
    operator_ids: tuple[str, ...] = ()
    # GET /v1/docs: Powertools' Swagger UI of the whole API (on in the local stack; opt-in when deployed)
    swagger_ui: bool = False

    # --- data lifecycle (docs/security.md "Retention and erasure") ---
    # the key of the HMAC that stands for the user id in erasure audit records: an SSM SecureString
    # ("/calroute/erasure-hmac-key") or "secretsmanager:<name>" (read with Powertools parameters), else
    # the plain value (local use; with neither, dev/none auth use a fixed development key)
    erasure_hmac_key_param: str = ""
    erasure_hmac_key: str = ""

    @field_validator("llm_prices", mode="before")
    @classmethod
    def _parse_prices(cls, v: object) -> object:
        if isinstance(v, str):
            v = json.loads(v) if v.strip() else {}
            return {**DEFAULT_LLM_PRICES, **v}
        return v

    @field_validator("operator_ids", mode="before")
    @classmethod
    def _parse_csv(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(x.strip() for x in v.split(",") if x.strip())
        return v

    @property
    def llm_configured(self) -> bool:
        """True when an LLM endpoint/key is available to the fallback."""
        return bool(self.openai_api_key or self.llm_api_key_param or self.openai_base_url)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        """Build settings from environment variables (upper-cased field names)."""
        env = os.environ if environ is None else environ
        values = {}
        for name in cls.model_fields:
            raw = env.get(name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        try:
            return cls(**values)
        except ValidationError as exc:  # pragma: no cover - configuration error at cold start
            raise RuntimeError(f"invalid calroute configuration: {exc}") from exc


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings.from_env()
