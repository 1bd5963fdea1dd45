"""The models API's use cases: a user's model status (with the gates' and the retraining policy's
reasons), versions and audit trail, starting a one-user training run, manual promotion and rollback.

Every change of the ACTIVE pointer is a conditional write (``Registry.activate`` with the version
read just before): a concurrent change makes the request fail with 409 instead of overwriting it,
and is audited with the caller's identity.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from ..config import Settings
from ..gates import check_gates
from ..errors import Conflict, InvalidInput, ModelIntegrityError, NotFound, ServiceUnavailable
from ..ports import ModelRegistry, Stores
from ..retrain import latest_training, needs_training
from ..schema import TRUSTED_LABELS
from .training.common import load_training_labels, new_run_id

#: registry fields too big or too internal for API answers
_HIDDEN = {"holdout_event_ids", "user_id", "sk", "profiles"}
#: a version may be (re)activated by an operator only if it passed validation
_PROMOTABLE = {"validated", "archived", "rejected", "conflict", "rolled_back", "active"}


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in _HIDDEN}


def _gates(events: list, cfg: Settings) -> tuple[bool, str]:
    """The trainer's data gates (numpy-free: this runs on the core layer only)."""
    return check_gates(events, cfg)


class ModelsService:
    """``stores``: :func:`calroute.wiring.stores`; ``sfn``: a boto3 Step Functions client, or
    ``sfn_factory`` that makes one on the first training request."""

    def __init__(self, stores: Stores, cfg: Settings, *, sfn: Any = None,
                 sfn_factory: Optional[Callable[[], Any]] = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.stores, self.cfg, self._sfn, self.now = stores, cfg, sfn, now
        self._sfn_factory = sfn_factory

    @property
    def registry(self) -> ModelRegistry:
        return self.stores.registry

    # --- reads ---
    def status(self, user_id: str) -> dict:
        """GET /v1/users/<userId>/model."""
        reg = self.registry
        active = reg.active(user_id)
        versions = reg.versions(user_id)
        last = latest_training(versions)
        record = next((v for v in versions if active and v["version"] == active["version"]), None)
        profile = self.stores.users.profile(user_id)
        events, provenance = load_training_labels(user_id, self.stores, self.cfg)
        # the gates count the user's own labels, as the trainer does
        can, can_reason = _gates([e for e, p in zip(events, provenance) if p in TRUSTED_LABELS], self.cfg)
        stopped = reg.gate_skip(user_id)
        needs, needs_reason = needs_training(profile=profile, active=active, last=last, cfg=self.cfg,
                                             now=self.now(), can_train=(can, can_reason), gate_memo=stopped)
        out: dict[str, Any] = {
            "user_id": user_id,
            "status": "active" if active else "no_model",
            "active_version": active["version"] if active else None,
            "promoted_at": (active or {}).get("promoted_at"),
            "previous_version": (active or {}).get("previous_version") or None,
            "threshold": (active or {}).get("threshold"),
            "labels": (active or {}).get("labels") or [],
            "metrics": (record or {}).get("metrics") or {},
            # the threshold's guarantee and the out-of-fold rows it rests on (calroute.risk); None for
            # models trained before feature spec 2
            "risk": ((record or {}).get("metrics") or {}).get("risk"),
            "feature_spec": (record or active or {}).get("feature_spec"),
            "unmet_calendars": sorted({c.calendar_id for c in self.stores.users.calendars(user_id)}
                                      - set((active or {}).get("labels") or [])) if active else [],
            "profiles": (record or {}).get("profiles") or {},
            "events_total": int(profile.get("events_total") or 0),
            "labelled_events": len(events),
            "labels_by_provenance": {p: provenance.count(p) for p in sorted(set(provenance))},
            "corrections_total": int(profile.get("corrections_total") or 0),
            # corrections of the model's own answers: one since the last training retrains (calroute.retrain)
            "confident_misses_total": int(profile.get("confident_misses_total") or 0),
            # writes that may change the trusted labels (calroute.retrain "A run the data gates stopped")
            "labels_total": int(profile.get("labels_total") or 0),
            "gates_stopped": {k: stopped.get(k) for k in ("reason", "at", "labels_total")} if stopped else None,
            "can_train": {"ok": can, "reason": can_reason},
            "needs_training": {"needed": needs, "reason": needs_reason},
            "last_training": None,
        }
        if last is not None:
            out["last_training"] = {k: last.get(k) for k in (
                "version", "status", "status_reason", "trained_at", "run_id")}
        if active and active.get("drifted"):
            out["drifted"] = True
        return out

    def versions(self, user_id: str) -> dict:
        """GET /v1/users/<userId>/models: versions (newest first), the active one, the audit trail."""
        active = self.registry.active(user_id)
        versions = [_public(v) for v in reversed(self.registry.versions(user_id))]
        audit = sorted(self.registry.audit_trail(user_id), key=lambda a: a.get("sk", ""), reverse=True)
        return {"user_id": user_id, "active_version": active["version"] if active else None,
                "versions": versions, "audit": [_public(a) for a in audit]}

    # --- training ---
    @property
    def sfn(self):
        if self._sfn is None:
            if self._sfn_factory is None:  # a service never builds an AWS client itself: wiring does
                raise ServiceUnavailable("training is not configured (no Step Functions client)", retry_after=60)
            self._sfn = self._sfn_factory()
        return self._sfn

    def start_training(self, user_id: str, *, actor: str = "") -> dict:
        """POST /v1/users/<userId>/train: a one-user execution of the training state machine."""
        arn = self.cfg.state_machine_arn
        if not arn:
            raise ServiceUnavailable("training is not configured (STATE_MACHINE_ARN is empty)", retry_after=60)
        run_id = new_run_id(self.now())
        body = {"trigger": "api", "user_ids": [user_id], "run_id": run_id}
        from botocore.exceptions import ClientError

        try:
            resp = self.sfn.start_execution(stateMachineArn=arn, name=run_id, input=json.dumps(body))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ExecutionLimitExceeded", "ThrottlingException"):
                raise ServiceUnavailable("too many training runs right now; retry later", retry_after=30) from exc
            raise
        self.registry.audit(user_id, action="train_requested", actor=actor or "anonymous", run_id=run_id,
                            execution_arn=resp["executionArn"])
        return {"execution_arn": resp["executionArn"], "run_id": run_id}

    # --- ACTIVE pointer changes ---
    def _check_object(self, record: dict) -> None:
        try:
            self.stores.models.get(record["s3_key"], record.get("sha256"))
        except ModelIntegrityError as exc:
            raise Conflict(f"version {record['version']} cannot be activated: {exc}", field="version",
                           code="model_unavailable") from None

    def _activate(self, user_id: str, record: dict, *, expected: Optional[str], actor: str, reason: str,
                  action: str) -> dict:
        """``Registry.activate``; a lost race (409) is audited too: who tried what, when and why."""
        try:
            return self.registry.activate(user_id, record, expected_version=expected, actor=actor, reason=reason,
                                          action=action)
        except Conflict:
            self.registry.audit(user_id, action=f"{action}_conflict", actor=actor, reason=reason,
                                version=record["version"], expected_version=expected or "")
            raise

    def promote(self, user_id: str, version: str, *, reason: str, actor: str) -> dict:
        """POST /v1/users/<userId>/models/<version>/promote (operator override of champion/challenger;
        never of the parity gate)."""
        record = self.registry.get_version(user_id, version)
        if record is None:
            raise NotFound(f"model version {version} not found", field="version")
        if not record.get("validated") or record.get("status") not in _PROMOTABLE:
            raise Conflict(f"version {version} has not passed validation (status {record.get('status')!r})",
                           field="version", code="not_validated")
        active = self.registry.active(user_id, consistent=True)
        if active and active["version"] == version:
            return {"user_id": user_id, "active_version": version, "previous_version": active.get("previous_version"),
                    "changed": False}
        self._check_object(record)
        pointer = self._activate(user_id, record, expected=active["version"] if active else None, actor=actor,
                                 reason=reason or "manual promote", action="manual_promote")
        return {"user_id": user_id, "active_version": pointer["version"],
                "previous_version": pointer.get("previous_version") or None, "changed": True}

    def rollback(self, user_id: str, *, reason: str, actor: str) -> dict:
        """POST /v1/users/<userId>/models/rollback: back to the most recently active version before
        this one that was not itself rolled back. Walks the history: two rollbacks go two versions
        back (never a round trip), and with nothing older left it refuses (409)."""
        active = self.registry.active(user_id, consistent=True)
        if active is None:
            raise NotFound("the user has no active model", field="userId")
        record = self._rollback_target(user_id, active)
        if record is None:
            raise Conflict("there is no earlier version to roll back to (none was active before this one, "
                           "or every one was rolled back)", code="no_previous_version")
        self._check_object(record)
        pointer = self._activate(user_id, record, expected=active["version"], actor=actor,
                                 reason=reason or "rollback", action="rollback")
        try:
            self.registry.set_status(user_id, active["version"], "rolled_back", f"rolled back by {actor}: {reason}")
        except Exception:  # noqa: BLE001 - the pointer (the part that matters) is already switched
            pass
        return {"user_id": user_id, "active_version": pointer["version"], "rolled_back_from": active["version"]}

    def _rollback_target(self, user_id: str, active: dict) -> Optional[dict]:
        """The version record a rollback re-activates: among versions that were active once
        (``promoted_at``), not the current one and not rolled back, the most recently promoted."""
        history = [v for v in self.registry.versions(user_id)
                   if v.get("version") != active["version"] and v.get("promoted_at")
                   and v.get("status") != "rolled_back"]
        return max(history, key=lambda v: (str(v["promoted_at"]), v["version"]), default=None)


def clean_reason(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("reason must be a string", field="reason")
    value = " ".join(value.split())
    if len(value) > 500:
        raise InvalidInput("reason is at most 500 characters", field="reason")
    return value


__all__ = ["ModelsService", "clean_reason"]
