"""JWT mode, both halves:

* the generated ``template.jwt.yaml`` (``infra/jwt/make_jwt_template.py``) lints clean, and after the
  SAM transform every route of the HTTP API is behind the JWT authorizer (issuer/audience from the
  ``JwtIssuer``/``JwtAudience`` parameters) while every function runs with ``AUTH_MODE=jwt``;
* ``calroute.http.auth.authorize_user`` in jwt mode on the real handlers, with API Gateway v2 events that
  carry ``requestContext.authorizer.jwt.claims.sub``: match → 2xx, mismatch / missing → 403 and
  nothing written; a spoofed dev header does not count.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from calroute.adapters.dynamo.events import DynamoEventStore
from calroute.adapters.dynamo.users import DynamoUserStore
from calroute.config import settings
from support.apigw import call
from support.handlers import fresh_services

from conftest import load_handler

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SAM = ROOT / ".venv-sam" / "bin" / "sam"


def _generator():
    spec = importlib.util.spec_from_file_location("make_jwt_template", ROOT / "infra" / "jwt" / "make_jwt_template.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _generator()


@pytest.fixture(scope="module")
def jwt_template(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("jwt") / "template.jwt.yaml"
    assert gen.main(["--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def transformed(jwt_template) -> dict:
    """The SAM transform of the JWT template (what CloudFormation would deploy)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    t = json.loads(json.dumps(gen.load(jwt_template)))
    for res in t["Resources"].values():  # local code paths → S3 URIs, as `sam package` would do
        props = res.get("Properties") or {}
        for k in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(k), str):
                props[k] = "s3://bucket/key"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(t, {"JwtIssuer": "https://issuer.example.com/pool", "JwtAudience": "client-123",
                         "AWS::Region": "us-east-1"}, NoManagedPolicies())


# ----------------------------------------------------------------------------- the template variant


def test_jwt_template_lints_clean(jwt_template):
    """cfn-lint (required) and `sam validate` (when the sam venv exists), run side by side."""
    procs = {"cfn-lint": subprocess.Popen([str(VENV_BIN / "cfn-lint"), str(jwt_template)],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)}
    if SAM.exists():
        procs["sam validate"] = subprocess.Popen(
            [str(SAM), "validate", "--region", "us-east-1", "-t", str(jwt_template)], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "SAM_CLI_TELEMETRY": "0"})
    for name, p in procs.items():
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, f"{name} failed:\n{out[-3000:]}"


def test_every_route_uses_the_jwt_authorizer(transformed):
    src_routes = {(p["Method"].upper(), p["Path"]) for _, _, p in gen.http_routes(gen.load(ROOT / "template.yaml"))}
    api = transformed["Resources"]["HttpApi"]
    assert api["Type"] == "AWS::ApiGatewayV2::Api"
    body = api["Properties"]["Body"]
    seen = set()
    for path, ops in body["paths"].items():
        for method, op in ops.items():
            seen.add((method.upper(), path))
            assert op.get("security") == [{gen.AUTHORIZER: []}], f"{method.upper()} {path}: {op.get('security')}"
    assert seen == src_routes and len(seen) >= 10
    schemes = body["components"]["securitySchemes"]
    assert set(schemes) == {gen.AUTHORIZER}  # no AWS_IAM scheme left
    az = schemes[gen.AUTHORIZER]["x-amazon-apigateway-authorizer"]
    assert az["type"] == "jwt"
    assert az["identitySource"] == "$request.header.Authorization"
    # resolved by CloudFormation at deploy time from the template parameters
    assert az["jwtConfiguration"] == {"issuer": {"Ref": "JwtIssuer"}, "audience": [{"Ref": "JwtAudience"}]}
    # no route/integration resource outside the API body could bypass the authorizer
    assert not [k for k, v in transformed["Resources"].items() if v["Type"] == "AWS::ApiGatewayV2::Route"]


def test_functions_run_in_jwt_mode_and_nothing_else_changes(jwt_template):
    src, jwt = gen.load(ROOT / "template.yaml"), gen.load(jwt_template)
    assert jwt["Globals"]["Function"]["Environment"]["Variables"]["AUTH_MODE"] == "jwt"
    for logical, res in jwt["Resources"].items():
        if res["Type"] == "AWS::Serverless::Function":
            env = ((res["Properties"].get("Environment") or {}).get("Variables") or {})
            assert env.get("AUTH_MODE", "jwt") == "jwt", logical
    assert jwt["Parameters"]["AuthMode"]["AllowedValues"] == ["jwt"]
    assert "Default" not in jwt["Parameters"]["JwtIssuer"] and "Default" not in jwt["Parameters"]["JwtAudience"]
    assert "JwtModeNeedsTemplateVariant" not in jwt["Rules"]
    # the same resources, and the same function policies / events as the IAM template
    assert set(jwt["Resources"]) == set(src["Resources"])
    for logical, res in src["Resources"].items():
        if logical != "HttpApi":
            assert jwt["Resources"][logical] == res, logical


def test_generator_is_deterministic_and_refuses_route_auth_overrides(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert gen.main(["--out", str(a)]) == 0 and gen.main(["--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_text().startswith("# GENERATED")
    t = gen.load(ROOT / "template.yaml")
    fn = next(r for r in t["Resources"].values() if r["Type"] == "AWS::Serverless::Function"
              and any(e["Type"] == "HttpApi" for e in (r["Properties"].get("Events") or {}).values()))
    ev = next(e for e in fn["Properties"]["Events"].values() if e["Type"] == "HttpApi")
    ev["Properties"]["Auth"] = {"Authorizer": "NONE"}
    with pytest.raises(ValueError, match="overrides the API's authorizer"):
        gen.make_jwt(t)
    assert gen.main(["--template", str(ROOT / "template.yaml"), "--out", str(ROOT / "template.yaml")]) == 2


def test_makefile_has_build_jwt_target():
    text = (ROOT / "Makefile").read_text()
    assert "\nbuild-jwt:" in text and "infra/jwt/make_jwt_template.py" in text


# ----------------------------------------------------------------------------- authorize_user in jwt mode


@pytest.fixture
def jwt_mode(aws, monkeypatch, fresh_settings):
    monkeypatch.setenv("AUTH_MODE", "jwt")
    fresh_settings.cache_clear()
    mods = {name: load_handler(name) for name in ("ingest", "models", "predict")}
    fresh_services(monkeypatch, *mods.values())
    assert settings().auth_mode == "jwt"
    return mods


EV = {"event_id": "e1", "summary": "Sprint review", "start": "2026-03-02T10:00:00Z",
      "end": "2026-03-02T11:00:00Z", "calendar_id": "work"}


def test_jwt_sub_must_equal_the_path_user_on_ingest(jwt_mode):
    h = jwt_mode["ingest"].lambda_handler
    path = "/v1/users/alice/events"
    for kw in ({"jwt_sub": "mallory"}, {}, {"headers": {"x-calroute-user": "alice"}},
               {"jwt_sub": "ALICE"}, {"jwt_sub": "alice "}, {"iam_user_arn": "arn:aws:iam::123456789012:user/alice"}):
        status, _, body = call(h, "POST", path, body={"events": [EV]}, **kw)
        assert status == 403, (kw, body)
        assert body["error"] == "forbidden" and body["field"] == "userId"
    cfg = settings()
    assert DynamoEventStore(cfg.events_table).count_events("alice") == 0  # nothing half-written
    assert DynamoUserStore(cfg.users_table).calendars("alice") == []
    status, _, body = call(h, "POST", path, body={"events": [EV]}, jwt_sub="alice")
    assert status == 200 and body["upserted"] == 1, body


@pytest.mark.parametrize("name,method,path,kw", [
    ("models", "GET", "/v1/users/alice/model", {}),
    ("models", "GET", "/v1/users/alice/models", {}),
    ("predict", "POST", "/v1/users/alice/classify", {"body": {"event": {"summary": "x", "start": "2026-03-02T10:00:00Z"}}}),
    ("predict", "POST", "/v1/users/alice/classify/batch",
     {"body": {"events": [{"summary": "x", "start": "2026-03-02T10:00:00Z"}]}}),
    ("ingest", "PUT", "/v1/users/alice/calendars/work", {"body": {"name": "Work"}}),
])
def test_jwt_match_200_mismatch_and_missing_403(jwt_mode, name, method, path, kw):
    h = jwt_mode[name].lambda_handler
    status, _, body = call(h, method, path, jwt_sub="alice", **kw)
    assert status == 200, body
    status, _, body = call(h, method, path, jwt_sub="bob", **kw)
    assert status == 403 and body["error"] == "forbidden", body
    status, _, body = call(h, method, path, **kw)
    assert status == 403 and body["error"] == "forbidden", body


def test_iam_mode_trusts_the_signed_backend(aws, monkeypatch, fresh_settings):
    """Default mode: API Gateway verified SigV4; the backend acts for any user id in the path."""
    monkeypatch.setenv("AUTH_MODE", "iam")
    fresh_settings.cache_clear()
    mod = load_handler("models")
    fresh_services(monkeypatch, mod)
    status, _, body = call(mod.lambda_handler, "GET", "/v1/users/alice/model",
                           iam_user_arn="arn:aws:iam::123456789012:role/backend")
    assert status == 200 and body["user_id"] == "alice"
