"""ModelsFunction (HTTP API): a user's model status, versions, training, promotion and rollback,
and the OpenAPI document.

* ``GET  /v1/users/<userId>/model``                     status, active version, metrics, threshold,
  calendar profiles, the gates' verdict and the retraining policy's reason
* ``POST /v1/users/<userId>/train``                     202: a one-user state machine execution
* ``GET  /v1/users/<userId>/models``                    versions, metrics, status, audit trail
* ``POST /v1/users/<userId>/models/<version>/promote``  conditional, audited (body ``{"reason"}``)
* ``POST /v1/users/<userId>/models/rollback``           to the previous active version; conditional, audited
* ``GET  /v1/docs``                                     the Swagger UI of the whole API (``SWAGGER_UI``)
* ``GET  /v1/openapi.json``                             this API's OpenAPI document (merged with the
  other HTTP functions' when their code is next to this one, as in the repository / local stack)
"""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

import functools
import importlib.util
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

from aws_lambda_powertools.event_handler import Depends, Response
from pydantic import BaseModel, Field

from calroute import ids, wiring
from calroute.http.auth import authorize_user, caller_identity, require_operator
from calroute.http.observability import metrics
from calroute.http.resolver import UserIdPath, VersionPath, make_handler, make_resolver, parse_json_body
from calroute.config import settings
from calroute.errors import InvalidInput
from calroute.services.models import ModelsService, clean_reason

app = make_resolver()
_ERRORS: dict = {400: {"description": "Bad request"}, 403: {"description": "Forbidden"},
                 404: {"description": "Not found"}, 409: {"description": "Conflict"},
                 422: {"description": "Validation error"}}
API_TITLE = "calroute"
API_VERSION = "1.0.0"


@functools.cache
def service() -> ModelsService:
    """The models service on the AWS adapters, built from the settings on first use and kept for the
    container's life; routes receive it with ``Depends`` (tests: ``app.dependency_overrides``)."""
    return wiring.models_service(settings())


Service = Annotated[ModelsService, Depends(service)]


class Gate(BaseModel):
    ok: bool
    reason: str


class Need(BaseModel):
    needed: bool
    reason: str


class ModelStatus(BaseModel):
    user_id: str
    status: str = Field(..., description="active | no_model")
    active_version: Optional[str] = None
    promoted_at: Optional[str] = None
    previous_version: Optional[str] = None
    threshold: Optional[float] = Field(None, description="The per-user confidence threshold")
    labels: list[str] = Field(default_factory=list, description="Calendar ids the model knows")
    metrics: dict[str, Any] = Field(default_factory=dict)
    risk: Optional[dict[str, Any]] = Field(None, description=(
        "The threshold's guarantee: Learn-then-Test at level delta over the out-of-fold rows "
        "(rows, kept, errors, Clopper-Pearson upper bound on the kept error, certified)"))
    feature_spec: Optional[int] = Field(None, description="The featurizer version the model was trained with")
    unmet_calendars: list[str] = Field(default_factory=list, description=(
        "The user's calendars the active model has not met (their events go to the LLM until retraining)"))
    profiles: dict[str, Any] = Field(default_factory=dict, description="Per-calendar profiles")
    events_total: int
    labelled_events: int
    corrections_total: int
    confident_misses_total: int = Field(0, description=(
        "Corrections of the model's own answers; one since the last training retrains the user at the next "
        "run (RETRAIN_CONFIDENT_MISSES)"))
    labels_total: int = Field(0, description=(
        "Writes that may change which of the user's labels are trusted (labels ingested or imported, "
        "corrections, confirmations, sole answers, moved or deleted events)"))
    gates_stopped: Optional[dict[str, Any]] = Field(None, description=(
        "The last training run the data gates stopped (reason, at, labels_total then): the nightly run "
        "waits for a new label (or retrain_max_age_days)"))
    can_train: Gate = Field(..., description="The data gates' verdict")
    needs_training: Need = Field(..., description="The retraining policy's verdict")
    last_training: Optional[dict[str, Any]] = None
    drifted: Optional[bool] = None


class TrainStarted(BaseModel):
    execution_arn: str
    run_id: str


class ModelVersions(BaseModel):
    user_id: str
    active_version: Optional[str] = None
    versions: list[dict[str, Any]]
    audit: list[dict[str, Any]]


class ActiveChanged(BaseModel):
    user_id: str
    active_version: str
    previous_version: Optional[str] = None
    rolled_back_from: Optional[str] = None
    changed: bool = True


def _reason() -> str:
    """The optional ``{"reason": "..."}`` body of promote/rollback."""
    body = parse_json_body(app) if (app.current_event.body or "").strip() else {}
    if not isinstance(body, dict):
        raise InvalidInput('the body must be a JSON object like {"reason": "..."}', field="body")
    return clean_reason(body.get("reason"))


@app.get("/v1/users/<userId>/model", summary="The user's model: status, metrics, gates, retraining reason",
         tags=["models"], responses={200: {"description": "OK"}, **_ERRORS})
def get_model(userId: UserIdPath, models: Service) -> ModelStatus:
    user = ids.user_id(userId)
    authorize_user(app, user)
    return models.status(user)  # type: ignore[return-value]


@app.post("/v1/users/<userId>/train", summary="Train this user's model now (asynchronous)", tags=["models"],
          description="Starts a one-user execution of the training state machine; the new model becomes "
          "active only if it passes the gates, the parity gate and champion/challenger.",
          responses={202: {"description": "Started"}, 503: {"description": "Training not configured"}, **_ERRORS})
def post_train(userId: UserIdPath, models: Service) -> Response[TrainStarted]:
    user = ids.user_id(userId)
    authorize_user(app, user)
    out = models.start_training(user, actor=caller_identity(app))
    metrics.add_metric(name="TrainingRequested", unit="Count", value=1)
    return Response(status_code=202, content_type="application/json", body=out)


@app.get("/v1/users/<userId>/models", summary="The user's model versions and audit trail", tags=["models"],
         responses={200: {"description": "OK"}, **_ERRORS})
def get_models(userId: UserIdPath, models: Service) -> ModelVersions:
    user = ids.user_id(userId)
    authorize_user(app, user)
    return models.versions(user)  # type: ignore[return-value]


@app.post("/v1/users/<userId>/models/rollback", summary="Roll back to the previous active model",
          tags=["models"], description="Operators only (OPERATOR_IDS, or IAM callers): back to the most recently active version "
          "that was not rolled back; 409 when there is none, or when the active version changed meanwhile.",
          responses={200: {"description": "Rolled back"}, **_ERRORS})
def post_rollback(userId: UserIdPath, models: Service) -> ActiveChanged:
    user = ids.user_id(userId)
    actor = require_operator(app)  # who may change a model: operators only (docs/security.md)
    return models.rollback(user, reason=_reason(), actor=actor)  # type: ignore[return-value]


@app.post("/v1/users/<userId>/models/<version>/promote", summary="Make a validated version active",
          tags=["models"], description="Operators only (OPERATOR_IDS, or IAM callers): override of champion/challenger (never "
          "of the parity gate or of validation); "
          "conditional on the active version not changing meanwhile (409 otherwise).",
          responses={200: {"description": "Promoted"}, **_ERRORS})
def post_promote(userId: UserIdPath, version: VersionPath, models: Service) -> ActiveChanged:
    user = ids.user_id(userId)
    actor = require_operator(app)  # who may change a model: operators only (docs/security.md)
    ver = ids.model_version(version)
    return models.promote(user, ver, reason=_reason(), actor=actor)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- OpenAPI

_HERE = Path(__file__).resolve().parent


def _sibling_resolvers() -> list:
    """The resolvers of the other HTTP functions whose code sits next to this one (repository, local
    stack). In a deployed ModelsFunction the package holds only this function: its own document."""
    out = []
    for path in sorted(_HERE.parent.glob("*/app.py")):
        if path.parent == _HERE:
            continue
        name = f"calroute_fn_{path.parent.name}"
        mod = sys.modules.get(name)
        if mod is None:
            try:
                spec = importlib.util.spec_from_file_location(name, path)
                mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                sys.modules[name] = mod
                spec.loader.exec_module(mod)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a function whose dependencies are absent is left out
                sys.modules.pop(name, None)
                continue
        other = getattr(mod, "app", None)
        if other is not None and hasattr(other, "get_openapi_json_schema") and other is not app:
            out.append(other)
    return out


_openapi_cache: Optional[str] = None


def openapi_document() -> dict:
    """This API's OpenAPI document merged with the sibling HTTP functions' (paths and schemas)."""
    global _openapi_cache
    if _openapi_cache is None:
        doc = json.loads(app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION))
        for other in _sibling_resolvers():
            try:
                part = json.loads(other.get_openapi_json_schema(title=API_TITLE, version=API_VERSION))
            except Exception:  # noqa: BLE001
                continue
            for p, ops in (part.get("paths") or {}).items():
                doc.setdefault("paths", {}).setdefault(p, {}).update(ops)
            for k, v in ((part.get("components") or {}).get("schemas") or {}).items():
                doc.setdefault("components", {}).setdefault("schemas", {}).setdefault(k, v)
        doc.get("paths", {}).pop("/v1/openapi.json", None)
        _openapi_cache = json.dumps(doc)
    return json.loads(_openapi_cache)


@app.get("/v1/openapi.json", summary="The OpenAPI document of the calroute API", tags=["meta"],
         include_in_schema=False)
def get_openapi() -> Response[dict]:
    return Response(status_code=200, content_type="application/json", body=openapi_document())


class _WholeApi:
    """The document Powertools' Swagger UI shows: the merged one of every HTTP function (Powertools
    reads an OpenAPI merge, when one is configured, through ``get_openapi_json_schema``)."""

    def get_openapi_json_schema(self) -> str:
        return json.dumps(openapi_document())


def _swagger_switch(app, next_middleware):  # noqa: ANN001 - Powertools middleware signature
    """``SWAGGER_UI`` off (the default when deployed): the route does not exist."""
    if not settings().swagger_ui:
        return Response(status_code=404, content_type="application/json",
                        body=json.dumps({"error": "not_found", "message": "the Swagger UI is off (SWAGGER_UI, "
                                         "template parameter SwaggerUi)"}))
    return next_middleware(app)


# GET /v1/docs: Powertools' Swagger UI (its JS/CSS are bundled with Powertools: no CDN, works offline)
app.enable_swagger(path="/v1/docs", title=API_TITLE, version=API_VERSION, middlewares=[_swagger_switch])
app._openapi_merge = _WholeApi()  # noqa: SLF001 - the hook enable_swagger reads for a merged document

lambda_handler = make_handler(app)
