"""The tenant boundary: who is calling, may they act for the path's user, are they an operator."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from ..config import settings
from ..errors import Forbidden


def caller_identity(app: APIGatewayHttpResolver) -> str:
    """Who is calling: JWT ``sub``, IAM user ARN, the dev header, or ``anonymous``."""
    ev = app.current_event
    rc = ev.raw_event.get("requestContext") or {}
    auth = rc.get("authorizer") or {}
    jwt = (auth.get("jwt") or {}).get("claims") or {}
    if jwt.get("sub"):
        return f"jwt:{jwt['sub']}"
    iam = auth.get("iam") or {}
    if iam.get("userArn"):
        return f"iam:{iam['userArn']}"
    dev = (ev.headers or {}).get("x-calroute-user")
    if dev:
        return f"dev:{dev}"
    return "anonymous"


def authorize_user(app: APIGatewayHttpResolver, user_id: str) -> None:
    """Enforce the tenant boundary for the path's ``userId``.

    * ``iam``: API Gateway already authenticated the SigV4 caller (a trusted backend).
    * ``jwt``: the token's ``sub`` must equal the path's user id.
    * ``dev`` (local stack): the ``x-calroute-user`` header plays the part of ``sub``.
    * ``none``: no check (tests, benchmarks).
    """
    mode = settings().auth_mode
    if mode in ("iam", "none"):
        return
    who = caller_identity(app)
    expected = {"jwt": "jwt:", "dev": "dev:"}[mode] + user_id
    if who != expected:
        raise Forbidden("the caller may not act for this user", field="userId")


def require_operator(app: APIGatewayHttpResolver) -> str:
    """Operator-only endpoints: IAM callers, or identities listed in OPERATOR_IDS."""
    cfg = settings()
    who = caller_identity(app)
    if cfg.auth_mode in ("iam", "none") and not who.startswith(("jwt:", "dev:")):
        return who
    if who.split(":", 1)[-1] in cfg.operator_ids:
        return who
    raise Forbidden("operators only")
